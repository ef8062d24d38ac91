"""``rankopt pretrain``: self-supervised pre-training (Franca / DINOv2 self-distillation) into a run
folder, judged by the frozen teacher backbone's exact retrieval metrics, k-NN and linear-probe accuracy
on the test split — and the same numbers for the backbone's initialisation."""

from __future__ import annotations

from pathlib import Path

import torch

from rankopt.data import check_root, create_dataset
from rankopt.runs import RunFolder
from rankopt.ssl.config import SSLRunConfig
from rankopt.ssl.module import SSLData, SSLModule
from rankopt.train.engine import fit
from rankopt.train.protocol import Splits
from rankopt.train.protocol import build_splits as protocol_splits

__all__ = ["pretrain_run", "build_splits", "initial_weights"]


def build_splits(cfg: SSLRunConfig) -> Splits:
    """Training images, the carved validation split and the test split (the images task's protocol);
    every image as a [0, 1] tensor (the crops are the augmentation)."""
    d = cfg.data
    return protocol_splits(d, lambda split, train: create_dataset(d.name, d.root, split, **d.options))


def initial_weights(cfg: SSLRunConfig):
    """model.weights resolved: a run folder's backbone state, a file, 'packaged', or None."""
    w = cfg.model.weights
    return RunFolder(w).backbone_state() if w and Path(w).is_dir() else w


def pretrain_run(cfg: SSLRunConfig, folder: RunFolder, resume: Path | None = None, progress: bool = True) -> dict:
    """Pre-train (or, from ``resume``, continue) in ``folder``; select the epoch on the validation split's
    frozen-feature ``train.monitor``; evaluate the selected teacher on test; write and return metrics.json."""
    check_root(cfg.data.name, cfg.data.root)
    splits = build_splits(cfg)
    if len(splits.train) < cfg.data.batch_size:
        raise ValueError(
            f"{len(splits.train)} training images are fewer than one batch (data.batch_size={cfg.data.batch_size})"
        )
    splits.record(folder, cfg, resume)
    torch.manual_seed(cfg.train.seed)
    steps = len(splits.train) // cfg.data.batch_size
    module = SSLModule(cfg, splits, steps, initial_weights(cfg))
    data = SSLData(splits.train, cfg.data.batch_size, cfg.train.seed, cfg.data.num_workers, splits.valid is not None)
    t = cfg.train
    with folder.announced():
        result = fit(
            module,
            data,
            folder.path,
            epochs=t.epochs,
            eval_every=t.eval_every,
            resume=resume,
            accelerator=t.accelerator,
            devices=t.devices,
            strategy=t.strategy,
            precision=t.precision,
            progress=progress,
            patience=t.patience,
            time_limit=t.time_limit,
        )
    out = {
        "test": result["test"],
        "init": module.extra["init"],
        "selection": result["selection"],
        "valid": result["valid"],
        "history": result["history"],
        "protocol": splits.describe(),
        **{k: module.extra[k] for k in ("nested", "rasa") if k in module.extra},
        "run_dir": str(folder.path),
    }
    if result["is_global_zero"]:
        folder.write_results(out, result["test_per_query"])
    return out


def test_features(folder: RunFolder, cfg: SSLRunConfig | None = None, progress=None):
    """(the run's test queries dataset, the selected teacher backbone's features of them, their labels):
    exactly the recorded test items, refused if the data changed since."""
    from rankopt.ssl.evaluation import frozen_features
    from rankopt.ssl.module import build_backbone
    from rankopt.train.protocol import from_items

    cfg = cfg or folder.config("ssl")
    d = cfg.data
    items = {p: folder.split_items(p) for p in ("train", "valid", "test", "test_gallery")}
    splits = from_items(
        {k: v for k, v in items.items() if v is not None},
        lambda split, train: create_dataset(d.name, d.root, split, **d.options),
    )
    folder.check_data(splits.fingerprint(d.root), "the dataset")
    _, embed = build_backbone(cfg, folder.backbone_state())
    features, labels, _ = frozen_features(embed, splits.test.queries, num_workers=d.num_workers, progress=progress)
    return splits.test.queries, features, labels
