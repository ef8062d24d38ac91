"""Packaged training recipes: one YAML file per published setting, plus the Fashion-MNIST default."""

from __future__ import annotations

from importlib import resources

__all__ = ["names", "read"]


def names() -> list[str]:
    folder = resources.files(__name__)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text()
