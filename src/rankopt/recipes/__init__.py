"""Packaged training recipes: one YAML file per published setting, plus the Fashion-MNIST default
(image retrieval, this folder) and one per dataset × model × loss of the recommendation tables
(``recsys/``)."""

from __future__ import annotations

from importlib import resources

__all__ = ["names", "read"]


def _folder(task: str):
    root = resources.files(__name__)
    return root if task == "images" else root.joinpath(task)


def names(task: str = "images") -> list[str]:
    return sorted(p.name[:-5] for p in _folder(task).iterdir() if p.name.endswith(".yaml"))


def read(name: str, task: str = "images") -> str:
    return _folder(task).joinpath(f"{name}.yaml").read_text()
