"""``rankopt recsys train`` / ``evaluate``: a recommendation run on the one run engine.

The run folder is an image run's: config.yaml (task: recsys), checkpoints/ (best.ckpt: the best
validation epoch; last.ckpt after every epoch, atomically), logs/, metrics.json and
test_per_query.csv (one row per test user). metrics.json has the same shape — ``test``,
``selection`` (split, metric, value, epoch, epochs_run, checkpoint), ``valid``, ``history`` (epochs
from 1) — plus ``protocol`` (transductive / inductive, what is masked at test, refit, excluded users)
and ``timing``. A killed run continues with ``--resume RUN_DIR``.

Selection on the validation split, never on test; data without one (Last.fm's data1/test1) gets one
carved from each user's training items (``data.valid_ratio``; 0: the last epoch is kept). With
``train.refit`` a fresh model is then trained on train + valid for the selected number of epochs
(``RUN_DIR/refit/``) and tested instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch

from rankopt.metrics.names import parse_metrics
from rankopt.recsys.config import RecRunConfig
from rankopt.recsys.data import RecData, inductive_split, load_directory, ratio_split
from rankopt.recsys.models import RECOMMENDERS, Recommender
from rankopt.recsys.module import RecommendationData, RecommenderModule, known_items
from rankopt.train.checkpoint import read_model_weights
from rankopt.train.engine import fit
from rankopt.train.run import load_run, open_run, save_config, save_results

__all__ = ["build_model", "load_data", "train_recsys", "evaluate_run", "trainer_device"]


def trainer_device(device: str) -> tuple[str, object]:
    """Lightning's (accelerator, devices) for a torch device string; an absent CUDA device is an error."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpu", 1
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={device}: no CUDA device is available here (use cpu)")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"train.device={device}: only {torch.cuda.device_count()} CUDA device(s) here")
        return "gpu", [index]
    raise ValueError(f"train.device={device}: use cpu or cuda[:N]")


def build_model(cfg: RecRunConfig, n_users: int, n_items: int, graph) -> Recommender:
    m = cfg.model
    entry = RECOMMENDERS.entry(m.name)
    layers = {"layers": m.layers} if entry.meta["graph"] else {}
    return entry.factory(n_users, n_items, graph, dim=m.dim, user_repr=cfg.users, **layers)


def load_data(cfg: RecRunConfig) -> RecData:
    d = cfg.data
    if d.root is None:
        raise ValueError("no data folder: give DATA_DIR, --data-dir DIR or --set data.root=DIR")
    # splits are seeded by data.split_seed, not train.seed: every training seed sees the same users' items
    data = load_directory(d.root, split=d.split, seed=d.split_seed, rating_threshold=d.rating_threshold)
    if data.valid is None and d.valid_ratio > 0:  # select on a validation split carved from train, never on test
        train, valid, _ = ratio_split(data.train, (1 - d.valid_ratio, d.valid_ratio, 0.0), seed=d.split_seed)
        data = dataclasses.replace(data, train=train, valid=valid)
    if d.protocol == "inductive":
        data = inductive_split(data, held_out=d.held_out, context=d.context, seed=d.split_seed)
    for spec in parse_metrics(list(cfg.train.metrics)):  # before training, not at the first validation
        if spec.k is not None and spec.k > data.n_items:
            raise ValueError(f"train.metrics: {spec.name}: K={spec.k} is larger than the {data.n_items} items of {d.root}")
    return data


def _module(cfg: RecRunConfig, data: RecData) -> RecommenderModule:
    """A fresh recommender on the graph of data.train (train + valid for a refit)."""
    torch.manual_seed(cfg.train.seed)  # the same initial weights for the same seed
    model = build_model(cfg, data.n_users, data.n_items, data.train)
    return RecommenderModule(model, cfg, data)


def _fit(cfg: RecRunConfig, module, data_module, run_dir: Path, epochs: int, resume, progress: bool) -> dict:
    accelerator, devices = trainer_device(cfg.train.device)
    t = cfg.train
    return fit(module, data_module, run_dir, epochs=epochs, eval_every=t.eval_every, resume=resume,
               accelerator=accelerator, devices=devices, progress=progress, patience=t.patience, time_limit=t.time_limit,
               min_epochs=t.min_epochs)


def train_recsys(cfg: RecRunConfig, run_dir: str | Path | None = None, resume: bool = False,
                 progress: bool = True) -> tuple[dict, Path]:
    """Train (or continue) the run, select on validation, test the selected (or refitted) model;
    returns (the metrics.json object, run folder). Resuming a finished run returns its metrics unchanged."""
    cfg.validate()
    trainer_device(cfg.train.device)
    run_dir, last, finished = open_run(cfg, run_dir, resume)
    if finished is not None:
        return finished, run_dir
    data = load_data(cfg)
    save_config(cfg, run_dir)
    module = _module(cfg, data)
    result = _fit(cfg, module, RecommendationData(cfg, data, data.train), run_dir, cfg.train.epochs, last, progress)
    selection, history = result["selection"], result["history"]
    refit = None
    if cfg.train.refit and selection["split"] is not None:
        epochs = selection["epoch"]
        known = known_items(data)
        refit_dir = run_dir / "refit"
        refit_last = refit_dir / "checkpoints" / "last.ckpt"
        both = dataclasses.replace(data, train=known)
        again = _fit(cfg, _module(cfg, both), RecommendationData(cfg, both, known, validate=False), refit_dir,
                     epochs, refit_last if refit_last.is_file() else None, progress)
        result["test"], result["test_per_query"] = again["test"], again["test_per_query"]
        refit = {"on": "train+valid", "epochs": epochs, "checkpoint": os.path.relpath(refit_dir / again["selection"]["checkpoint"], run_dir)}
    selected = [h for h in history if h["epoch"] <= selection["epoch"]]
    out = {
        "test": result["test"], "selection": selection, "valid": result["valid"], "history": history,
        "protocol": {"name": cfg.data.protocol, "masked_at_test": "train+valid" if cfg.data.protocol == "transductive" else "context",
                     "refit": refit, "excluded_users": data.excluded_users},
        "timing": {"seconds_per_epoch": float(np.mean([h.get("seconds", 0.0) for h in history])) if history else 0.0,
                   "seconds_to_best": float(sum(h.get("seconds", 0.0) for h in selected))},
        "run_dir": str(run_dir),
    }
    save_results(run_dir, out, result["test_per_query"])
    return out, run_dir


def evaluate_run(run_dir: str | Path, device: str | None = None) -> dict:
    """Re-evaluate a finished recommendation run on its test split, with the checkpoint it was tested with."""
    run_dir = Path(run_dir)
    cfg = load_run(run_dir, task="recsys")
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.json: the run has not finished (resume it with --resume)")
    saved = json.loads(metrics_file.read_text())
    refit = (saved.get("protocol") or {}).get("refit")
    checkpoint = run_dir / (refit["checkpoint"] if refit else saved["selection"]["checkpoint"])
    if device is not None:
        cfg.train.device = device
    trainer_device(cfg.train.device)
    data = load_data(cfg)
    if refit:  # the refitted model was trained on (and serves from) train + valid
        data = dataclasses.replace(data, train=known_items(data))
    module = _module(cfg, data)
    try:
        module.model.load_state_dict(read_model_weights(checkpoint))
    except RuntimeError as err:
        raise ValueError(f"checkpoint {checkpoint} does not fit the model of its config.yaml ({cfg.model.name}): "
                         f"{str(err).splitlines()[0]}") from None
    module.to(torch.device(cfg.train.device)).eval()
    with torch.no_grad():
        metrics, _ = module.evaluate_test()
    return metrics
