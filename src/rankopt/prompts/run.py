"""``rankopt prompt``: few-shot prompt learning (GalLoP, CoOp) or a baseline (zero-shot, linear probe) on
the frozen offline vision-language towers, into a run folder; its metrics.json holds the test top-1 of
the method and, beside it, the zero-shot top-1 of the same towers on the same test images."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rankopt.probe import fit_probe
from rankopt.progress import progress_bar
from rankopt.prompts.config import PromptRunConfig
from rankopt.prompts.data import few_shot, shared_cache_path, tower_features
from rankopt.prompts.module import PromptData, PromptModule
from rankopt.prompts.towers import build_towers
from rankopt.runs import RunFolder
from rankopt.train.engine import fit, test_only

__all__ = ["prompt_run", "run_towers"]

log = logging.getLogger(__name__)


def run_towers(cfg: PromptRunConfig):
    m = cfg.model
    return build_towers(m.towers, m.image_size, m.invert, m.align_classes, m.ridge)


def prompt_run(cfg: PromptRunConfig, folder: RunFolder, resume: Path | None = None, progress: bool = True) -> dict:
    """Draw the shots, cache their tower features, train the prompts (or fit the baseline), test once;
    write and return metrics.json."""
    shots = few_shot(cfg)
    towers = run_towers(cfg)  # a missing package fails here, before the folder is written
    shots.splits().record(folder, cfg, resume)
    torch.manual_seed(cfg.train.seed)
    module = PromptModule(cfg, towers, shots.names)

    def cached(name: str, dataset):
        with progress_bar(f"features: {name}", enabled=None if progress else False, unit="image") as bar:
            return tower_features(towers.image, towers.source, dataset, folder.file("features") / f"{name}.pt", bar)

    train = cached("train", shots.train)
    valid = cached("valid", shots.valid) if shots.valid is not None else None
    test = None
    if cfg.model.feature_cache:
        path = shared_cache_path(cfg.model.feature_cache, towers.source, shots.test)
        with progress_bar("features: test", enabled=None if progress else False, unit="image") as bar:
            test = tower_features(towers.image, towers.source, shots.test, path, bar, half=True)
    data = PromptData(train, valid, shots, cfg.data.batch_size, cfg.train.seed, test)
    t = cfg.train
    if cfg.trains_prompts:
        with folder.announced():
            result = fit(
                module,
                data,
                folder.path,
                epochs=t.epochs,
                resume=resume,
                accelerator=t.accelerator,
                devices=t.devices,
                precision=t.precision,
                progress=progress,
                patience=t.patience,
                time_limit=t.time_limit,
            )
    else:  # nothing to train: the template, or a probe on the shots' features, tested once
        if cfg.prompts.method == "linear_probe":
            module.probe = fit_probe(train.global_feat.numpy(), train.targets.numpy(), seed=t.seed)
        result = test_only(module, data, accelerator=t.accelerator, devices=t.devices, progress=progress)
    out = {
        "test": result["test"],
        "zero_shot": module.extra["zero_shot"],
        "method": cfg.prompts.method,
        "shots": cfg.data.shots,
        "selection": result["selection"],
        "valid": result["valid"],
        "history": result["history"],
        "protocol": shots.describe(),
        "towers": towers.source,
        "run_dir": str(folder.path),
    }
    if result["is_global_zero"]:
        folder.write_results(out, result["test_per_query"])
    return out
