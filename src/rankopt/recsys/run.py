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
import logging
from pathlib import Path

import numpy as np
import torch

from rankopt.recsys.config import RecRunConfig
from rankopt.recsys.data import RecData, inductive_split, load_directory, ratio_split
from rankopt.recsys.models import RECOMMENDERS, Recommender
from rankopt.recsys.module import RecommendationData, RecommenderModule, known_items
from rankopt.runs import RunFolder
from rankopt.train.checkpoint import read_model_weights
from rankopt.train.engine import fit
from rankopt.validation import check_device

log = logging.getLogger(__name__)

__all__ = ["build_model", "load_data", "train_recsys", "evaluate_run", "trainer_device", "run_data"]


def trainer_device(device: str) -> tuple[str, object]:
    """Lightning's (accelerator, devices) for a torch device string; an absent CUDA device is an error."""
    dev = check_device(device, "train.device")
    if dev.type == "cuda":
        return "gpu", [dev.index or 0]
    return "cpu", 1


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
    n_neg = cfg.loss.n_neg
    if isinstance(n_neg, int) and n_neg >= data.n_items:
        # more negatives than items only repeats items, in blocks that grow without bound: clamped (and
        # config.yaml, written after this, records what ran)
        cfg.loss.n_neg = max(1, data.n_items - 1)
        log.warning(
            "loss.n_neg=%d: %s has %d items; drawing %d negatives per user and step (loss.n_neg=all ranks "
            "against the whole catalogue)",
            n_neg,
            d.root,
            data.n_items,
            cfg.loss.n_neg,
        )
    return data


def _module(cfg: RecRunConfig, data: RecData) -> RecommenderModule:
    """A fresh recommender on the graph of data.train (train + valid for a refit)."""
    torch.manual_seed(cfg.train.seed)  # the same initial weights for the same seed
    model = build_model(cfg, data.n_users, data.n_items, data.train)
    return RecommenderModule(model, cfg, data)


def _fit(cfg: RecRunConfig, module, data_module, run_dir: Path, epochs: int, resume, progress: bool) -> dict:
    accelerator, devices = trainer_device(cfg.train.device)
    t = cfg.train
    return fit(
        module,
        data_module,
        run_dir,
        epochs=epochs,
        eval_every=t.eval_every,
        resume=resume,
        accelerator=accelerator,
        devices=devices,
        progress=progress,
        patience=t.patience,
        time_limit=t.time_limit,
        min_epochs=t.min_epochs,
    )


def train_recsys(cfg: RecRunConfig, folder: RunFolder, resume: Path | None = None, progress: bool = True) -> dict:
    """Train (or, from ``resume``, continue) the run in ``folder``, select on validation, test the
    selected (or refitted) model; write and return the metrics.json object."""
    trainer_device(cfg.train.device)
    data = load_data(cfg)
    if resume is not None:
        folder.check_data(data.fingerprint(), "the interactions")
    folder.write_config(cfg)
    folder.write_manifest(
        data.fingerprint(),
        data.fingerprint(("test",)),
        extra={
            "n_users": data.n_users,
            "n_items": data.n_items,
            "interactions": {
                k: len(getattr(data, k)) for k in ("train", "valid", "test", "context") if getattr(data, k) is not None
            },
        },
    )
    module = _module(cfg, data)
    result = _fit(
        cfg, module, RecommendationData(cfg, data, data.train), folder.path, cfg.train.epochs, resume, progress
    )
    selection, history = result["selection"], result["history"]
    refit = None
    if cfg.train.refit and selection["split"] is not None:
        epochs = selection["epoch"]
        known = known_items(data)
        refit_dir = folder.path / "refit"
        refit_last = refit_dir / "checkpoints" / "last.ckpt"
        both = dataclasses.replace(data, train=known)
        again = _fit(
            cfg,
            _module(cfg, both),
            RecommendationData(cfg, both, known, validate=False),
            refit_dir,
            epochs,
            refit_last if refit_last.is_file() else None,
            progress,
        )
        result["test"], result["test_per_query"] = again["test"], again["test_per_query"]
        refit = {
            "on": "train+valid",
            "epochs": epochs,
            "checkpoint": folder.relative(refit_dir / again["selection"]["checkpoint"]),
        }
    selected = [h for h in history if h["epoch"] <= selection["epoch"]]
    out = {
        "test": result["test"],
        "selection": selection,
        "valid": result["valid"],
        "history": history,
        "protocol": {
            "name": cfg.data.protocol,
            "masked_at_test": "train+valid" if cfg.data.protocol == "transductive" else "context",
            "refit": refit,
            "excluded_users": data.excluded_users,
            "dropped_when_loading": data.cleaning,
        },
        "timing": {
            "seconds_per_epoch": float(np.mean([h.get("seconds", 0.0) for h in history])) if history else 0.0,
            "seconds_to_best": float(sum(h.get("seconds", 0.0) for h in selected)),
        },
        "run_dir": str(folder.path),
    }
    folder.write_results(out, result["test_per_query"])
    return out


def run_data(folder: RunFolder, cfg: RecRunConfig | None = None) -> RecData:
    """The interactions a run was trained and tested on, read again; refused if they changed since."""
    cfg = cfg or folder.config("recsys")
    data = load_data(cfg)
    folder.check_data(data.fingerprint(), "the interactions")
    return data


def evaluate_run(run_dir: str | Path, device: str | None = None) -> dict:
    """Re-evaluate a finished recommendation run on its test split, with the checkpoint it was tested with."""
    folder = RunFolder(run_dir)
    cfg = folder.config("recsys")
    checkpoint = folder.selected_checkpoint()
    refit = (folder.metrics().get("protocol") or {}).get("refit")
    if device is not None:
        cfg.train.device = device
    trainer_device(cfg.train.device)
    data = run_data(folder, cfg)
    if refit:  # the refitted model was trained on (and serves from) train + valid
        data = dataclasses.replace(data, train=known_items(data))
    module = _module(cfg, data)
    try:
        module.model.load_state_dict(read_model_weights(checkpoint))
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the model of its config.yaml ({cfg.model.name}): "
            f"{str(err).splitlines()[0]}"
        ) from None
    module.to(torch.device(cfg.train.device)).eval()
    with torch.no_grad():
        metrics, _ = module.evaluate_test()
    return metrics
