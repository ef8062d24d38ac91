"""``rankopt ood RUN`` on a prompt run: the features every detector reads, made by the run's towers and
prompts — ``features`` the global image feature, ``logits`` the class cosines of the global prompts
(their mean), ``local_logits`` the class cosines of every local feature with the local prompts (their
mean; a run without local prompts reads its global prompts there, as the authors' code does) — so
that MCM, GL-MCM and the feature-space detectors (HEAT, Mahalanobis, k-NN, ...) score the same model.
The ID training set is the run's shots (their labels feed the class-conditional detectors)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from rankopt.ood.features import Features
from rankopt.prompts.config import PromptRunConfig
from rankopt.prompts.module import PromptModule
from rankopt.runs import RunFolder

__all__ = ["prompt_features", "ood_prompt_run"]

log = logging.getLogger(__name__)


def _trained_module(folder: RunFolder, cfg: PromptRunConfig):
    from rankopt.io import read_model_weights
    from rankopt.prompts.data import few_shot
    from rankopt.prompts.run import run_towers

    if cfg.prompts.method == "linear_probe":
        raise ValueError(
            f"{folder.path} is a linear-probe run: it has no prompts to score OOD images with (train gallop, "
            "coop, or score the zero-shot prompts: --set prompts.method=zero_shot)"
        )
    shots = few_shot(cfg)
    towers = run_towers(cfg)
    module = PromptModule(cfg, towers, shots.names)
    if cfg.trains_prompts:  # zero-shot: the learner at initialisation is the template
        state = read_model_weights(folder.selected_checkpoint(), prefix="")
        module.load_state_dict(state, strict=True)
    return module.eval(), shots, towers


@torch.no_grad()
def prompt_features(
    module: PromptModule, data, progress: Callable[[int, int], None] | None = None, batch_size: int = 64
) -> Features:
    """Features (global feature, global cosines, local cosines; labels where the data has them) of images."""
    learner, image = module.learner, module.towers.image
    rows = learner.prompt_rows()
    global_rows = rows[: learner.n_global]
    local_rows = rows[learner.n_global :] if learner.n_local else global_rows
    dataset = TensorDataset(data) if isinstance(data, torch.Tensor) else data
    feats, logits, local_logits, labels, done = [], [], [], [], 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        g, loc = image(batch[0])
        gn = torch.nn.functional.normalize(g, dim=-1)
        proj = learner.local_proj(loc) if learner.n_local else loc
        ln = torch.nn.functional.normalize(proj, dim=-1)
        logits.append(torch.einsum("bd,pcd->bpc", gn, global_rows).mean(1))
        local_logits.append(torch.einsum("bld,pcd->bplc", ln, local_rows).mean(1).flatten(1))
        feats.append(g)
        if len(batch) > 1:
            labels.append(batch[1])
        done += len(g)
        if progress is not None:
            progress(done, len(dataset))
    cat = lambda xs: torch.cat(xs).double().numpy()
    lab = torch.cat(labels).numpy() if labels else None
    return Features(cat(feats), logits=cat(logits), labels=lab, local_logits=cat(local_logits))


def ood_prompt_run(
    folder: RunFolder,
    cfg: PromptRunConfig,
    sets: list[str] | None,
    names: list[str],
    options: dict | None,
    seed: int,
    progress,
) -> dict:
    from rankopt.ood.extract import cached_features, file_digest
    from rankopt.ood.run import DEFAULT_SETS, evaluate_detectors
    from rankopt.ood.sets import load_ood_set

    module, shots, towers = _trained_module(folder, cfg)
    trained_classes = cfg.data.classes if cfg.data.name == "fashion-mnist" else None
    if sets is None:
        sets = list(DEFAULT_SETS) + (["heldout"] if trained_classes is not None else [])
    if "heldout" in sets and trained_classes is None:
        raise ValueError("the heldout OOD set needs a Fashion-MNIST run on some classes (data.classes)")
    checkpoint = file_digest(folder.selected_checkpoint()) if cfg.trains_prompts else "template"
    source = f"{towers.source}|prompts:{checkpoint}"
    cache = folder.file("ood") / "prompts"

    def features_of(name: str, data: Callable[[], object]) -> Features:
        def make():
            with progress(f"features: {name}", "image") as bar:
                return prompt_features(module, data(), bar)

        return cached_features(cache, name, source, make)

    with folder.lock():
        train = features_of("id_train", lambda: shots.train)
        id_test = features_of("id_test", lambda: shots.test)
        ood = {
            s: features_of(
                f"ood_{s}", lambda s=s: load_ood_set(s, seed, trained_classes=trained_classes, data_dir=cfg.data.root)
            )
            for s in sets
        }
        options = dict(options or {})
        if "knn" in names and "k" not in options.get("knn", {}) and len(train) < 50:
            options["knn"] = {**options.get("knn", {}), "k": len(train)}  # a few shots: fewer than k=50 neighbours
        return evaluate_detectors(
            train, id_test, ood, names, Path(folder.path), "ood", options, progress, extra={"backbone": "prompts"}
        )
