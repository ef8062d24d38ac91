"""The self-supervised pre-training task's config (``rankopt pretrain``): Franca / DINOv2-style
self-distillation, its defaults the authors' scaled to 28 × 28 images on a CPU.

>>> from rankopt.config import load_config
>>> cfg = load_config(None, ["head.kind=nested", "head.variant=slice"], task="ssl")
>>> cfg.model.backbone, cfg.head.levels, cfg.loss.targets
('small_cnn', 5, 'sinkhorn')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rankopt.config import check_choices, check_metrics, check_range, setting
from rankopt.data import DATASETS
from rankopt.models.backbones import BACKBONES, check_backbone
from rankopt.runs import RunFolder
from rankopt.ssl.masking import MASKINGS

__all__ = [
    "SSLDataConfig",
    "SSLModelConfig",
    "HeadConfig",
    "SSLLossConfig",
    "CropConfig",
    "SSLOptimConfig",
    "SSLTrainConfig",
    "SSLEvalConfig",
    "SSLRunConfig",
]


@dataclass
class SSLDataConfig:
    name: str = setting(
        "fashion-mnist", help="the image dataset (its labels are read for evaluation only)", choices=DATASETS
    )
    root: str | None = setting(None, help="the dataset folder (fashion-mnist: optional, the Debian package's files)")
    train_split: str = setting("train", help="the split pre-trained on (labels unused)")
    test_split: str = setting("auto", help="the test split of the frozen-feature evaluation; auto: the dataset's")
    gallery_split: str | None = setting("auto", help="a gallery the test queries rank, or none: leave-one-out")
    valid: str | None = setting("carve", help="the selection split: carve (from training), none, or a split name")
    valid_fraction: float = setting(0.1, help="carved validation: share of the training images (classes elsewhere)")
    test_fraction: float = setting(
        0.5, help="image folder / CSV without splits: share of the classes held out for test"
    )
    split_seed: int = setting(0, help="seed of every carved split (independent of the training seed)")
    options: dict = setting(help="extra loader arguments (classes, ...)", default_factory=dict)
    batch_size: int = setting(128, help="images per training step (each gives 2 global and crops.n_local local crops)")
    num_workers: int = setting(0, help="data loader worker processes")
    limit: int | None = setting(None, help="use only the first images of each split (quick runs)")
    train_limit: int | None = setting(12000, help="pre-train on the first this many training images (a CPU budget)")


@dataclass
class SSLModelConfig:
    backbone: str = setting("small_cnn", help="the backbone pre-trained", choices=BACKBONES)
    in_channels: int = setting(1, help="image channels the backbone takes (RGB backbones: grey images repeated)")
    image_size: int | None = setting(None, help="crops resized to this before the backbone (None: the data's size)")
    weights: str | None = setting(None, help="initial backbone weights: a file, a run folder, or 'packaged'")


@dataclass
class HeadConfig:
    kind: str = setting(
        "nested", help="nested (Franca's Matryoshka heads) or dino (one head: the baseline)", choices=("nested", "dino")
    )
    variant: str = setting(
        "projection",
        choices=("projection", "slice"),
        help="nested: projection (each level its own linear map: the released code) or slice "
        "(level k reads the first d_k embedding dimensions: the paper's wording)",
    )
    levels: int = setting(5, help="nested granularities D/2^(levels-1) ... D")
    prototypes: int = setting(1024, help="prototypes at full width (level k: prototypes · d_k / D)")
    hidden: int = setting(256, help="hidden width of the head MLPs (authors: 2048)")
    bottleneck: int = setting(64, help="bottleneck width before the prototypes (authors: 384)")
    layers: int = setting(3, help="linear layers of each head MLP")
    normalize: bool = setting(
        True,
        help="L2-normalise the bottleneck before the prototypes (DINO's head; the "
        "released nested head does not: false reproduces it, which stalls at small widths)",
    )


@dataclass
class SSLLossConfig:
    targets: str = setting(
        "sinkhorn",
        choices=("sinkhorn", "centering"),
        help="teacher targets: Sinkhorn-Knopp (Franca) or centering (DINO)",
    )
    sinkhorn_iterations: int = setting(3, help="Sinkhorn-Knopp iterations")
    center_momentum: float = setting(0.9, help="centering: momentum of the teacher-mean centre")
    student_temp: float = setting(0.1, help="student softmax temperature")
    teacher_temp: float = setting(0.07, help="teacher temperature after its warm-up")
    warmup_teacher_temp: float = setting(0.04, help="teacher temperature at the start")
    warmup_teacher_temp_epochs: int = setting(2, help="epochs of the linear teacher-temperature warm-up")
    koleo: float = setting(0.1, help="KoLeo weight on the student's global-crop embeddings (0: off)")
    ibot: float = setting(1.0, help="iBOT masked-patch loss weight (patch-token backbones; 0: off)")
    masking: str = setting(
        "cyclic",
        choices=MASKINGS,
        help="iBOT masks: cyclic (Franca's CyclicMask: inverse block, rolled), cyclic_block "
        "(block, rolled), block (iBOT/DINOv2's plain block), none",
    )
    mask_ratio: list = setting(help="range of the share of patches masked", default_factory=lambda: [0.1, 0.5])
    mask_probability: float = setting(0.5, help="share of global crops masked")


@dataclass
class CropConfig:
    n_local: int = setting(4, help="local crops per image (authors: 8)")
    local_size: int | None = setting(None, help="local crop size in pixels (None: 96/224 of the image: 12 px at 28)")
    global_scale: list = setting(help="global crops' share of the image area", default_factory=lambda: [0.32, 1.0])
    local_scale: list = setting(help="local crops' share of the image area", default_factory=lambda: [0.05, 0.32])


@dataclass
class SSLOptimConfig:
    lr: float = setting(1e-3, help="AdamW peak learning rate (after warm-up), for data.batch_size images")
    min_lr: float = setting(1e-6, help="learning rate at the end of the cosine")
    warmup_epochs: int = setting(1, help="epochs of linear learning-rate warm-up")
    weight_decay: float = setting(0.04, help="weight decay at the start")
    weight_decay_end: float = setting(0.2, help="weight decay at the end (cosine; Franca ViT-B: 0.2)")
    momentum_teacher: float = setting(0.994, help="teacher EMA momentum at the start (cosine to final_momentum)")
    final_momentum: float = setting(1.0, help="teacher EMA momentum at the end")
    clip_grad: float = setting(3.0, help="gradient norm clipping (0: off)")
    freeze_last_layer_epochs: int = setting(1, help="the prototypes stay fixed for the first epochs")


@dataclass
class SSLTrainConfig:
    epochs: int = setting(5, help="epochs over the training images")
    seed: int = setting(0, help="training seed (initial weights, crops, masks)")
    eval_every: int = setting(1, help="evaluate the frozen teacher every this many epochs (and after the last)")
    patience: int = setting(0, help="stop after this many validations without a better monitored value (0: never)")
    time_limit: float | None = setting(None, help="seconds of fitting; the epoch crossing it is the last")
    metrics: list = setting(
        help="retrieval metrics of the frozen features (rankopt.metrics names)",
        default_factory=lambda: ["map@r", "hit@1", "ap"],
    )
    monitor: str = setting("map@r", help="validation metric that selects the epoch (a metric or knn_acc)")
    precision: str = setting("32-true", help="Lightning precision")
    accelerator: str = setting("auto", help="Lightning accelerator: auto, cpu, gpu")
    devices: Any = setting("auto", help="Lightning devices: auto, a count or a list of indices")
    strategy: str = setting("auto", help="Lightning strategy: auto, ddp, ...")
    run_dir: str | None = setting(None, help="the run folder (default: runs/<recipe>-<timestamp>)")


@dataclass
class SSLEvalConfig:
    knn_k: int = setting(20, help="k-NN classifier: neighbours (DINO's temperature-weighted vote)")
    knn_temperature: float = setting(0.07, help="k-NN vote temperature")
    bank: int | None = setting(10000, help="training images whose features vote in validation's k-NN (None: all)")
    probe: bool = setting(True, help="a linear probe (L-BFGS) on the training features, scored on the test split")
    rasa_iterations: int = setting(5, help="RASA iterations on patch features (patch-token backbones; 0: off)")
    rasa_images: int = setting(1000, help="images whose patches fit RASA and the position probe")


@dataclass
class SSLRunConfig:
    task: ClassVar[str] = "ssl"
    recipe: str = "pretrain"
    data: SSLDataConfig = field(default_factory=SSLDataConfig)
    model: SSLModelConfig = field(default_factory=SSLModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: SSLLossConfig = field(default_factory=SSLLossConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    optim: SSLOptimConfig = field(default_factory=SSLOptimConfig)
    train: SSLTrainConfig = field(default_factory=SSLTrainConfig)
    eval: SSLEvalConfig = field(default_factory=SSLEvalConfig)

    @property
    def ibot(self) -> bool:
        """Whether the iBOT masked-patch loss runs (a patch-token backbone and a positive weight)."""
        return self.loss.ibot > 0 and BACKBONES.entry(self.model.backbone).meta.get("patch_tokens", False)

    def validate(self) -> SSLRunConfig:
        check_choices(self)
        d, m, h, lo, c, o, t, e = (
            self.data,
            self.model,
            self.head,
            self.loss,
            self.crops,
            self.optim,
            self.train,
            self.eval,
        )
        for key, value in (
            ("data.batch_size", d.batch_size),
            ("data.limit", d.limit),
            ("data.train_limit", d.train_limit),
            ("train.epochs", t.epochs),
            ("train.eval_every", t.eval_every),
            ("head.levels", h.levels),
            ("head.hidden", h.hidden),
            ("head.bottleneck", h.bottleneck),
            ("head.layers", h.layers),
            ("loss.sinkhorn_iterations", lo.sinkhorn_iterations),
            ("eval.knn_k", e.knn_k),
            ("eval.bank", e.bank),
            ("eval.rasa_images", e.rasa_images),
            ("model.image_size", m.image_size),
        ):
            check_range(key, value, 1)
        check_range("head.prototypes", h.prototypes, 1)
        if d.batch_size < 2:
            raise ValueError(
                f"data.batch_size={d.batch_size}: KoLeo and Sinkhorn-Knopp need at least 2 images per step"
            )
        for key, value in (
            ("loss.student_temp", lo.student_temp),
            ("loss.teacher_temp", lo.teacher_temp),
            ("loss.warmup_teacher_temp", lo.warmup_teacher_temp),
            ("optim.lr", o.lr),
            ("eval.knn_temperature", e.knn_temperature),
        ):
            check_range(key, value, 0, low_open=True)
        for key, value in (
            ("loss.koleo", lo.koleo),
            ("loss.ibot", lo.ibot),
            ("optim.min_lr", o.min_lr),
            ("optim.weight_decay", o.weight_decay),
            ("optim.weight_decay_end", o.weight_decay_end),
            ("optim.clip_grad", o.clip_grad),
            ("optim.warmup_epochs", o.warmup_epochs),
            ("optim.freeze_last_layer_epochs", o.freeze_last_layer_epochs),
            ("crops.n_local", c.n_local),
            ("loss.warmup_teacher_temp_epochs", lo.warmup_teacher_temp_epochs),
            ("eval.rasa_iterations", e.rasa_iterations),
            ("train.patience", t.patience),
            ("data.num_workers", d.num_workers),
        ):
            check_range(key, value, 0)
        for key, value in (
            ("optim.momentum_teacher", o.momentum_teacher),
            ("optim.final_momentum", o.final_momentum),
            ("loss.center_momentum", lo.center_momentum),
            ("loss.mask_probability", lo.mask_probability),
            ("data.valid_fraction", d.valid_fraction),
        ):
            check_range(key, value, 0, 1)
        check_range("train.time_limit", t.time_limit, 0, low_open=True)
        for key, pair in (
            ("loss.mask_ratio", lo.mask_ratio),
            ("crops.global_scale", c.global_scale),
            ("crops.local_scale", c.local_scale),
        ):
            if len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair) or not 0 < pair[0] <= pair[1] <= 1:
                raise ValueError(f"{key}={pair} must be [low, high] with 0 < low <= high <= 1")
        check_backbone(m.backbone, m.weights, m.in_channels)
        if m.weights and Path(m.weights).is_dir():
            RunFolder(m.weights).check_backbone_for(m.backbone, m.in_channels)
        if h.kind == "nested":
            from rankopt.ssl.heads import nested_widths

            width = _backbone_width(m.backbone, m.in_channels)
            widths = nested_widths(width, h.levels)  # raises when the width is not divisible
            if h.prototypes * widths[0] // width < 1:
                raise ValueError(
                    f"head.prototypes={h.prototypes}: the coarsest level (width {widths[0]} of {width}) "
                    f"would get no prototype; give at least {width // widths[0]}"
                )
        metrics = [x for x in t.metrics if x != "knn_acc"]
        check_metrics(metrics or ["map@r"], t.monitor if t.monitor != "knn_acc" else (metrics or ["map@r"])[0])
        return self


def _backbone_width(name: str, in_channels: int) -> int:
    """D: the width of the backbone's pooled embedding (the heads' input)."""
    from rankopt.models.backbones import create_backbone

    return create_backbone(name, None, in_channels).out_channels
