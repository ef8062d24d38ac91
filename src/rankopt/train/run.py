"""The image-retrieval task: build a run from its config (datasets, model, loss), train it into its
run folder; rebuild a finished run's splits and model for the readers (embed, report, ood)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from rankopt.data import DATASETS, check_root, create_dataset
from rankopt.losses import LOSSES, CrossBatchMemory, create_loss
from rankopt.models import BACKBONES, EmbeddingModel, create_model
from rankopt.runs import RunFolder
from rankopt.train.checkpoint import read_model_weights
from rankopt.train.config import RunConfig
from rankopt.train.engine import RetrievalData, fit
from rankopt.train.module import RetrievalModule
from rankopt.train.protocol import Splits, from_items
from rankopt.train.protocol import build_splits as protocol_splits

__all__ = [
    "build_splits",
    "build_model",
    "build_loss",
    "train_run",
    "run_splits",
    "load_model",
    "embed_dataset",
    "load_split",
]

log = logging.getLogger(__name__)


def _transforms(cfg: RunConfig, train: bool):
    if DATASETS.entry(cfg.data.name).meta.get("grey28"):
        return None
    from torchvision import transforms as T

    size = cfg.data.image_size
    norm = [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    if train:
        return T.Compose(
            [T.RandomResizedCrop(size, scale=(0.16, 1.0), ratio=(0.75, 1.33)), T.RandomHorizontalFlip(), *norm]
        )
    return T.Compose([T.Resize(int(round(size * 8 / 7))), T.CenterCrop(size), *norm])


def load_split(cfg: RunConfig, split: str | None, train: bool):
    """The dataset split of a run's config, with its training or evaluation transforms."""
    kwargs = dict(cfg.data.options)
    if not DATASETS.entry(cfg.data.name).meta.get("grey28") and cfg.data.skip_bad_images:
        kwargs["on_bad_image"] = "skip"
    return create_dataset(cfg.data.name, cfg.data.root, split, transform=_transforms(cfg, train), **kwargs)


def build_splits(cfg: RunConfig) -> Splits:
    """The training set, the selection (valid) and test evaluations of the run's protocol."""
    return protocol_splits(cfg.data, lambda split, train: load_split(cfg, split, train))


def run_splits(folder: RunFolder, cfg: RunConfig | None = None) -> tuple[Splits, str | None]:
    """The parts a finished (or started) run trained and evaluated on, every item with evaluation
    transforms, and a note when they had to be re-derived: exactly the recorded items, refused if the
    data changed since (its fingerprint); a folder from before the manifest gets them from its config."""
    cfg = cfg or folder.config("images")
    recorded = {p: folder.split_items(p) for p in ("train", "valid", "test", "test_gallery")}
    if recorded["train"] is None:  # written before runs recorded their items
        splits = protocol_splits(cfg.data, lambda split, train: load_split(cfg, split, False))
        return splits, (
            f"{folder.path} predates recorded splits: its items were re-derived from its config "
            "(data.limit and the carving seed honoured)"
        )
    splits = from_items(
        {k: v for k, v in recorded.items() if v is not None}, lambda split, train: load_split(cfg, split, False)
    )
    folder.check_data(splits.fingerprint(cfg.data.root), "the dataset")
    return splits, None


def build_model(cfg: RunConfig) -> EmbeddingModel:
    m = cfg.model
    weights = RunFolder(m.weights).backbone_state() if m.weights and Path(m.weights).is_dir() else m.weights
    return create_model(m.backbone, m.dim, m.pooling, m.layer_norm, m.freeze_bn, weights, m.in_channels)


def load_model(folder: RunFolder, cfg: RunConfig | None = None, checkpoint: str | Path | None = None) -> EmbeddingModel:
    """The model of a run with the weights of its selected checkpoint (or of ``checkpoint``), in eval mode."""
    cfg = cfg or folder.config("images")
    checkpoint = Path(checkpoint) if checkpoint is not None else folder.selected_checkpoint()
    m = cfg.model  # without m.weights: the checkpoint holds every weight, pretrained files need not be here
    model = create_model(m.backbone, m.dim, m.pooling, m.layer_norm, m.freeze_bn, None, m.in_channels)
    try:
        model.load_state_dict(read_model_weights(checkpoint))
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the model of its config ({cfg.model.backbone}): {first}"
        ) from None
    return model.eval()


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


def train_run(cfg: RunConfig, folder: RunFolder, resume: Path | None = None, progress: bool = True) -> dict:
    """Train (or, from ``resume``, continue) the run in ``folder``, select on validation, test the
    selected weights; write and return the metrics.json object."""
    check_accelerator(cfg.train.accelerator)
    check_root(cfg.data.name, cfg.data.root)
    if not cfg.model.weights and BACKBONES.entry(cfg.model.backbone).meta["pretrained"]:
        log.warning(
            "%s trains from randomly initialised weights (model.weights is unset): the published "
            "recipes start from ImageNet weights; expect far lower numbers",
            cfg.model.backbone,
        )
    splits = build_splits(cfg)
    splits.record(folder, cfg, resume)
    torch.manual_seed(cfg.train.seed)
    n_classes = int(splits.train.labels[:, 0].max()) + 1
    module = RetrievalModule(
        build_model(cfg),
        build_loss(cfg, n_classes, len(splits.train)),
        cfg.optim,
        seed=cfg.train.seed,
        eval_metrics=tuple(cfg.train.metrics),
        monitor=cfg.train.monitor,
    )
    data = RetrievalData(
        splits.train,
        splits.valid,
        splits.test,
        cfg.data.batch_size,
        cfg.data.m,
        cfg.data.sampler,
        cfg.train.seed,
        cfg.data.num_workers,
    )
    with folder.announced():
        result = fit(
            module,
            data,
            folder.path,
            epochs=cfg.train.epochs,
            eval_every=cfg.train.eval_every,
            resume=resume,
            accelerator=cfg.train.accelerator,
            devices=cfg.train.devices,
            strategy=cfg.train.strategy,
            precision=cfg.train.precision,
            progress=progress,
            patience=cfg.train.patience,
            time_limit=cfg.train.time_limit,
        )
    is_zero = result.pop("is_global_zero")
    per_query = result.pop("test_per_query")
    out = {
        "test": result["test"],
        "selection": result["selection"],
        "valid": result["valid"],
        "history": result["history"],
        "protocol": splits.describe(),
        "pretrained": bool(cfg.model.weights),
        "run_dir": str(folder.path),
    }
    if is_zero:
        folder.write_results(out, per_query)
    return out


def embed_dataset(
    model: torch.nn.Module, dataset, batch_size: int = 256, num_workers: int = 0, progress=None
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, d) and labels (N, L) of every item of ``dataset`` (images, labels, index), in order."""
    embeddings, labels, done = [], [], 0
    with torch.no_grad():
        for images, lab, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
            embeddings.append(model(images))
            labels.append(lab)
            done += len(images)
            if progress is not None:
                progress(done, len(dataset))
    return torch.cat(embeddings).numpy(), torch.cat(labels).numpy()
