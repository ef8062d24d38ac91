"""The image-retrieval task's config: what ``rankopt train`` reads from a recipe and ``--set``.

The machinery (recipes, overrides, types, closest-key suggestions, choices) is :mod:`rankopt.config`;
this module declares the sections and the checks that the types cannot say.

>>> from rankopt.config import load_config
>>> cfg = load_config("fashion-mnist", ["train.epochs=1", "model.dim=32"])
>>> cfg.loss.name, cfg.model.dim, cfg.train.monitor
('roadmap', 32, 'map@r')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rankopt.config import check_choices, check_metrics, check_range, setting
from rankopt.data import DATASETS
from rankopt.losses import LOSSES
from rankopt.models.backbones import BACKBONES, check_backbone
from rankopt.models.pooling import POOLINGS
from rankopt.runs import RunFolder

__all__ = ["DataConfig", "ModelConfig", "LossConfig", "OptimConfig", "TrainConfig", "RunConfig"]


@dataclass
class DataConfig:
    name: str = setting("fashion-mnist", help="the dataset", choices=DATASETS)
    root: str | None = setting(None, help="the dataset folder (fashion-mnist: optional, the Debian package's files)")
    train_split: str = setting("train", help="the split trained on")
    test_split: str = setting(
        "auto", help="the test queries; auto: the dataset's published protocol (In-Shop, DyML: query)"
    )
    gallery_split: str | None = setting(
        "auto", help="what test queries rank: a split (In-Shop, DyML: gallery), or none: leave-one-out"
    )
    valid: str | None = setting(
        "carve", help="the selection split: carve (from training), none (select the last epoch), or a split name"
    )
    valid_fraction: float = setting(
        0.1, help="carved validation: share of the training classes (images for Fashion-MNIST)"
    )
    test_fraction: float = setting(
        0.5, help="image folder / CSV without splits: share of the classes held out for test"
    )
    split_seed: int = setting(0, help="seed of every carved split (independent of the training seed)")
    options: dict = setting(help="extra loader arguments (hierarchy, level, classes, ...)", default_factory=dict)
    sampler: str = setting("m_per_class", help="batch sampler", choices=("m_per_class", "hierarchical"))
    batch_size: int = setting(128, help="images per training batch")
    m: int = setting(16, help="images per class in a batch")
    image_size: int = setting(224, help="image datasets: crop size (resized to image_size · 8/7 for evaluation)")
    num_workers: int = setting(0, help="data loader worker processes")
    limit: int | None = setting(None, help="use only the first images of each split (quick runs)")
    train_limit: int | None = setting(None, help="use only the first training images (a smaller budget, full test set)")
    skip_bad_images: bool = setting(False, help="drop unreadable images (checked once, counted) instead of failing")


@dataclass
class ModelConfig:
    backbone: str = setting("small_cnn", help="the feature extractor", choices=BACKBONES)
    dim: int = setting(64, help="embedding dimension")
    pooling: str = setting("avg", help="global pooling of the feature map", choices=POOLINGS)
    layer_norm: bool = setting(False, help="LayerNorm before the head")
    freeze_bn: bool = setting(False, help="keep BatchNorm statistics and affine parameters as loaded")
    weights: str | None = setting(
        None,
        help="initial backbone weights: a file, a run folder (its selected checkpoint's backbone, e.g. of "
        "rankopt pretrain), or 'packaged' (EfficientNet-Lite0's ImageNet weights)",
    )
    in_channels: int = setting(1, help="image channels the backbone takes")


@dataclass
class LossConfig:
    name: str = setting("roadmap", help="the rank loss", choices=LOSSES)
    options: dict = setting(help="constructor arguments of the loss", default_factory=dict)
    memory: int = setting(0, help="CrossBatchMemory size (a FIFO queue); 0: none")
    memory_unique: bool = setting(
        False, help="ROADMAP's memory instead: one slot per training item, its latest embedding"
    )
    memory_start_step: int = setting(0, help="training step from which the memory is used")


@dataclass
class OptimConfig:
    optimizer: str = setting("adam", help="the optimizer", choices=("adam", "adamw", "sgd"))
    lr_backbone: float = setting(1e-4, help="learning rate of the backbone")
    lr_head: float = setting(1e-3, help="learning rate of the head (and of a model without backbone/head groups)")
    lr_proxies: float | None = setting(None, help="learning rate of class proxies; None: the head's")
    weight_decay: float = setting(1e-4, help="weight decay")
    momentum: float = setting(0.9, help="sgd momentum")
    nesterov: bool = setting(False, help="sgd: Nesterov momentum")
    scheduler: str = setting("none", help="learning-rate schedule", choices=("none", "multistep", "cosine"))
    milestones: list[int] = setting(
        help="multistep: epochs where the rate is multiplied by gamma", default_factory=list
    )
    gamma: float = setting(0.3, help="multistep factor")
    eta_min: float = setting(0.0, help="cosine: final learning rate, as a fraction of each group's")
    warmup_frozen_epochs: int = setting(0, help="backbone frozen for the first epochs")

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class TrainConfig:
    epochs: int = setting(2, help="epochs to train")
    seed: int = setting(0, help="training seed (initial weights, batches)")
    eval_every: int = setting(1, help="validate every this many epochs (and after the last)")
    patience: int = setting(0, help="stop after this many validations without a better monitored value (0: never)")
    time_limit: float | None = setting(
        None, help="seconds of fitting (validation included); the epoch crossing it is the last"
    )
    metrics: list = setting(
        help="metrics of validation and test", default_factory=lambda: ["hit@1", "map@r", "ap", "hap", "asi", "ndcg"]
    )
    monitor: str = setting("map@r", help="the validation metric that selects the epoch")
    precision: str = setting("32-true", help="Lightning precision: 32-true, 16-mixed, bf16-mixed, ...")
    accelerator: str = setting("auto", help="Lightning accelerator: auto, cpu, gpu")
    devices: Any = setting("auto", help="Lightning devices: auto, a count or a list of indices")
    strategy: str = setting("auto", help="Lightning strategy: auto, ddp, ...")
    run_dir: str | None = setting(None, help="the run folder (default: runs/<recipe>-<timestamp>)")


@dataclass
class RunConfig:
    task: ClassVar[str] = "images"
    recipe: str = "fashion-mnist"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr_backbone=1e-3, lr_head=1e-3))
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        """Ranges and combinations that the types cannot say, checked before any work starts."""
        check_choices(self)
        d, t, m, o = self.data, self.train, self.model, self.optim
        for key, value in (
            ("train.epochs", t.epochs),
            ("train.eval_every", t.eval_every),
            ("data.batch_size", d.batch_size),
            ("data.m", d.m),
            ("data.limit", d.limit),
            ("data.train_limit", d.train_limit),
            ("model.dim", m.dim),
            ("data.image_size", d.image_size),
        ):
            check_range(key, value, 1)
        for key, value in (("data.valid_fraction", d.valid_fraction), ("data.test_fraction", d.test_fraction)):
            check_range(key, value, 0, 1, low_open=True, high_open=True)
        check_range("data.num_workers", d.num_workers, 0)
        check_backbone(m.backbone, m.weights, m.in_channels, m.pooling)
        if m.weights and Path(m.weights).is_dir():  # a run folder: the backbone it trained
            RunFolder(m.weights).check_backbone_for(m.backbone, m.in_channels)
        if DATASETS.entry(d.name).meta.get("grey28") and m.in_channels != 1:
            raise ValueError(
                f"model.in_channels={m.in_channels}: {d.name} images have 1 channel (use model.backbone=small_cnn)"
            )
        for key, value in (
            ("optim.lr_backbone", o.lr_backbone),
            ("optim.lr_head", o.lr_head),
            ("optim.lr_proxies", o.lr_proxies),
        ):
            check_range(key, value, 0, low_open=True)
        check_range("optim.weight_decay", o.weight_decay, 0)
        check_range("optim.warmup_frozen_epochs", o.warmup_frozen_epochs, 0)
        if self.loss.memory_unique and self.loss.memory:
            raise ValueError("loss.memory_unique sizes the memory to the training set: leave loss.memory at 0")
        check_range("loss.memory", self.loss.memory, 0)
        check_range("train.patience", t.patience, 0)
        check_range("train.time_limit", t.time_limit, 0, low_open=True)
        check_metrics(t.metrics, t.monitor)
        return self
