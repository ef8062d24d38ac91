"""Build a run from its config (datasets, model, loss) and train it into its folder; embed with a checkpoint."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from rankopt.atomic import atomic_write_text
from rankopt.data import create_dataset
from rankopt.losses import LOSSES, CrossBatchMemory, create_loss
from rankopt.models import BACKBONES, EmbeddingModel, create_model
from rankopt.train.checkpoint import read_model_weights
from rankopt.train.config import RunConfig, from_dict, to_dict, validate
from rankopt.train.engine import RetrievalData, fit
from rankopt.train.module import RetrievalModule
from rankopt.train.protocol import Splits, test_splits
from rankopt.train.protocol import build_splits as protocol_splits

__all__ = ["build_splits", "build_model", "build_loss", "train_run", "load_run", "embed_dataset", "is_rank_zero",
           "open_run", "save_config", "save_results"]

log = logging.getLogger(__name__)
_RUN_DIR_ENV = "RANKOPT_RUN_DIR"  # tells the processes DDP launches where rank 0 writes


def _transforms(cfg: RunConfig, train: bool):
    if cfg.data.name == "fashion-mnist":
        return None
    from torchvision import transforms as T

    size = cfg.data.image_size
    norm = [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    if train:
        return T.Compose([T.RandomResizedCrop(size, scale=(0.16, 1.0), ratio=(0.75, 1.33)), T.RandomHorizontalFlip(), *norm])
    return T.Compose([T.Resize(int(round(size * 8 / 7))), T.CenterCrop(size), *norm])


def load_split(cfg: RunConfig, split: str | None, train: bool):
    """The dataset split of a run's config, with its training or evaluation transforms."""
    kwargs = dict(cfg.data.options)
    if cfg.data.name != "fashion-mnist" and cfg.data.skip_bad_images:
        kwargs["on_bad_image"] = "skip"
    return create_dataset(cfg.data.name, cfg.data.root, split, transform=_transforms(cfg, train), **kwargs)


def build_splits(cfg: RunConfig) -> Splits:
    """The training set, the selection (valid) and test evaluations of the run's protocol."""
    return protocol_splits(cfg.data, lambda split, train: load_split(cfg, split, train))


def build_model(cfg: RunConfig) -> EmbeddingModel:
    m = cfg.model
    return create_model(m.backbone, m.dim, m.pooling, m.layer_norm, m.freeze_bn, m.weights, m.in_channels)


def build_loss(cfg: RunConfig, n_classes: int, n_train: int | None = None):
    options = dict(cfg.loss.options)
    if LOSSES[cfg.loss.name].needs_classes:  # class proxies: sized from the training classes
        options.setdefault("num_classes", n_classes)
        options.setdefault("dim", cfg.model.dim)
    loss = create_loss(cfg.loss.name, **options)
    if cfg.loss.memory_unique:
        if n_train is None:
            raise ValueError("loss.memory_unique needs the number of training items")
        loss = CrossBatchMemory(loss, n_train, start_step=cfg.loss.memory_start_step, unique=True)
    elif cfg.loss.memory:
        loss = CrossBatchMemory(loss, cfg.loss.memory, start_step=cfg.loss.memory_start_step)
    return loss



def check_accelerator(accelerator: str) -> None:
    """A GPU asked for where there is none is an error before any work (Lightning's comes after loading)."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.accelerator={accelerator}: no CUDA device is available here (use cpu or auto)")


def is_rank_zero() -> bool:
    """False in the extra processes a DDP launcher started (they compute, rank 0 reports)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def _metrics_file(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # written atomically, so only a foreign file can be broken: the run is re-tested


def open_run(cfg, run_dir: str | Path | None, resume: bool) -> tuple[Path, Path | None, dict | None]:
    """The run folder of any task's run: (folder, last.ckpt to resume from or None, the metrics.json of
    a run that already finished with this very config, or None). A folder holding a run is never
    overwritten: it is resumed (``resume=True``) or refused."""
    # DDP re-launches this program once per extra process: they must write into the same folder
    run_dir = Path(run_dir or cfg.train.run_dir or (None if is_rank_zero() else os.environ.get(_RUN_DIR_ENV))
                   or f"runs/{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoints/last.ckpt to resume from")
    if not resume and last.exists() and is_rank_zero():
        raise FileExistsError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or choose another folder")
    # rank 0 decides (before it rewrites config.yaml); the processes it launches always train with it
    finished = _metrics_file(run_dir) if resume and is_rank_zero() else None
    if finished is not None and _saved_config(run_dir) != to_dict(cfg):
        finished = None  # e.g. more epochs asked for: the run goes on
    return run_dir, (last if resume else None), finished


def _saved_config(run_dir: Path) -> dict | None:
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None


def save_config(cfg, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def save_results(run_dir: Path, out: dict, per_query) -> None:
    """metrics.json (last, atomically: its presence marks a finished run) and test_per_query.csv."""
    if per_query is not None:
        per_query.write_csv(run_dir / "test_per_query.csv")
    atomic_write_text(run_dir / "metrics.json", json.dumps(out, indent=2))


def train_run(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> tuple[dict, Path]:
    """Train (or, with resume=True, continue) the run, select on validation, test the selected weights;
    returns (the metrics.json object, run folder). Resuming a finished run returns its metrics unchanged."""
    run_dir, last, finished = open_run(cfg, run_dir, resume)
    if finished is not None:
        return finished, run_dir  # a finished run: nothing to do, nothing changed
    validate(cfg)
    check_accelerator(cfg.train.accelerator)
    if not cfg.model.weights and BACKBONES.entry(cfg.model.backbone).meta["pretrained"]:
        log.warning("%s trains from randomly initialised weights (model.weights is unset): the published "
                    "recipes start from ImageNet weights; expect far lower numbers", cfg.model.backbone)
    splits = build_splits(cfg)
    save_config(cfg, run_dir)
    if is_rank_zero():
        splits.write_listing(run_dir)
    torch.manual_seed(cfg.train.seed)
    n_classes = int(splits.train.labels[:, 0].max()) + 1
    module = RetrievalModule(build_model(cfg), build_loss(cfg, n_classes, len(splits.train)), cfg.optim, seed=cfg.train.seed,
                             eval_metrics=tuple(cfg.train.metrics), monitor=cfg.train.monitor)
    data = RetrievalData(splits.train, splits.valid, splits.test, cfg.data.batch_size, cfg.data.m, cfg.data.sampler,
                         cfg.train.seed, cfg.data.num_workers)
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    try:
        result = fit(module, data, run_dir, epochs=cfg.train.epochs, eval_every=cfg.train.eval_every, resume=last,
                     accelerator=cfg.train.accelerator, devices=cfg.train.devices, strategy=cfg.train.strategy,
                     precision=cfg.train.precision, progress=progress, patience=cfg.train.patience,
                     time_limit=cfg.train.time_limit)
    finally:
        os.environ.pop(_RUN_DIR_ENV, None)
    is_zero = result.pop("is_global_zero")
    per_query = result.pop("test_per_query")
    out = {"test": result["test"], "selection": result["selection"], "valid": result["valid"],
           "history": result["history"], "protocol": splits.describe(), "pretrained": bool(cfg.model.weights),
           "run_dir": str(run_dir)}
    if is_zero:
        save_results(run_dir, out, per_query)
    return out, run_dir


def load_run(run_dir: str | Path, task: str | None = None):
    """The config a run folder was trained with (``task``: refuse a run of another task)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: not a rankopt run folder")
    try:
        saved = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} does not hold a run config")
    found = saved.get("task", "images")
    if task is not None and found != task:
        command = "rankopt recsys train" if found == "recsys" else "rankopt train"
        raise ValueError(f"{run_dir} is a {found} run: use {command}")
    return from_dict(saved)


def embed_dataset(checkpoint: str | Path, dataset: str | None = None, root: str | None = None, split: str | None = None,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and labels of a dataset split with the model of a checkpoint (its run's config.yaml
    gives the architecture; dataset/root default to the run's; split defaults to the run's test queries)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    cfg = load_run(checkpoint.parent.parent, task="images")
    if dataset is not None:
        cfg.data.name = dataset
    if root is not None:
        cfg.data.root = root
    model = build_model(cfg)
    weights = read_model_weights(checkpoint)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"checkpoint {checkpoint} does not fit the model of its config ({cfg.model.backbone}): {first}") from None
    model.eval()
    if split is None:
        split = test_splits(cfg.data)[0]
    ds = load_split(cfg, split, train=False)
    embeddings, labels = [], []
    with torch.no_grad():
        for images, lab, _ in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=cfg.data.num_workers):
            embeddings.append(model(images))
            labels.append(lab)
    return torch.cat(embeddings).numpy(), torch.cat(labels).numpy()
