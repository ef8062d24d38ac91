"""The prompt-learning task's config (``rankopt prompt``): GalLoP and its baselines on frozen towers,
the authors' settings scaled to a CPU (their small-dataset runs: 200 epochs, batch 32, SGD lr 0.002).

>>> from rankopt.config import load_config
>>> cfg = load_config(None, ["prompts.method=coop"], task="prompts")
>>> cfg.data.shots, cfg.prompts.method, cfg.learner()
(16, 'coop', {'n_global': 1, 'n_local': 0, 'local_k': (), 'dropout': 0.0})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rankopt.config import check_choices, check_range, setting

__all__ = [
    "PromptDataConfig",
    "TowerConfig",
    "PromptsConfig",
    "PromptOptimConfig",
    "PromptTrainConfig",
    "PromptRunConfig",
    "METHODS",
    "TOWERS",
    "IMAGE_SETS",
]

METHODS = ("gallop", "coop", "zero_shot", "linear_probe")
TOWERS = ("efficientnet_lite0+minilm",)
IMAGE_SETS = ("fashion-mnist", "mnist-subset")  # labelled image sets with class names (rankopt.prompts.data)


@dataclass
class PromptDataConfig:
    name: str = setting("fashion-mnist", help="the labelled image set", choices=IMAGE_SETS)
    root: str | None = setting(None, help="the dataset folder (fashion-mnist: optional, the Debian package's files)")
    shots: int = setting(16, help="training images per class, drawn by train.seed from the training split")
    valid_shots: int = setting(
        0, help="validation images per class (drawn apart from the shots) that select the epoch; 0: the last epoch"
    )
    classes: list | None = setting(
        None, help="train and test on these class ids only (the others: near-OOD for rankopt ood); None: all"
    )
    class_names: list | None = setting(None, help="the class names the prompts read (None: the dataset's own)")
    test_limit: int | None = setting(None, help="test on the first this many test images (None: the whole split)")
    batch_size: int = setting(32, help="training images per step")


@dataclass
class TowerConfig:
    towers: str = setting(
        "efficientnet_lite0+minilm",
        help="the frozen vision-language pair (rankopt.prompts.towers: image tower + text tower + ridge alignment)",
        choices=TOWERS,
    )
    image_size: int = setting(112, help="images resized to this before the image tower (112: a 4 × 4 local map)")
    invert: bool = setting(True, help="grey images shown dark on light, as objects are photographed")
    align_classes: int = setting(1000, help="ImageNet classes the text → image alignment is fitted on (every n-th)")
    ridge: float = setting(1.0, help="ridge strength of the alignment (per class)")
    feature_cache: str | None = setting(
        None,
        help="a folder keeping the test split's tower features across runs (sweeps: each run then reads "
        "them instead of re-embedding the images; local features stored in float16); None: streamed",
    )


@dataclass
class PromptsConfig:
    method: str = setting(
        "gallop",
        choices=METHODS,
        help="gallop (global + local prompts), coop (one global prompt), zero_shot (the template), "
        "linear_probe (logistic regression on the global features)",
    )
    n_global: int = setting(4, help="gallop: global prompts (n_local=0 and dropout give its global-only ablations)")
    n_local: int = setting(4, help="gallop: local prompts (0: no local prompts)")
    local_k: list = setting(
        help="gallop: top-k local features per local prompt (one k, or one per local prompt: multi-scale)",
        default_factory=lambda: [1, 2, 4, 8],
    )
    dropout: float = setting(0.75, help="gallop: share of the global prompts each sample drops (at least one kept)")
    dropout_draw: str = setting(
        "distinct",
        choices=("distinct", "replacement"),
        help="gallop: the kept global prompts are distinct (the paper) or drawn with replacement (the authors' code)",
    )
    logit_scale: float = setting(100.0, help="CLIP's logit scale of the cross-entropies and the prediction")
    ood_temperature: float = setting(1.0, help="softmax temperature of MCM and GL-MCM")


@dataclass
class PromptOptimConfig:
    lr: float = setting(0.002, help="SGD learning rate (cosine to 0 over the epochs)")
    momentum: float = setting(0.9, help="SGD momentum")
    weight_decay: float = setting(0.01, help="SGD weight decay")


@dataclass
class PromptTrainConfig:
    epochs: int = setting(30, help="epochs over the shots (authors: 200 on small datasets)")
    seed: int = setting(0, help="seed of the shots drawn and of training")
    patience: int = setting(0, help="stop after this many validations without a better top1 (0: never)")
    time_limit: float | None = setting(None, help="seconds of fitting; the epoch crossing it is the last")
    accelerator: str = setting("auto", help="Lightning accelerator: auto, cpu, gpu")
    devices: Any = setting(1, help="Lightning devices (the text tower's steps are small: one device)")
    precision: str = setting("32-true", help="Lightning precision")
    run_dir: str | None = setting(None, help="the run folder (default: runs/<recipe>-<timestamp>)")


@dataclass
class PromptRunConfig:
    task: ClassVar[str] = "prompts"
    recipe: str = "fashion-mnist-16shot"
    data: PromptDataConfig = field(default_factory=PromptDataConfig)
    model: TowerConfig = field(default_factory=TowerConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    optim: PromptOptimConfig = field(default_factory=PromptOptimConfig)
    train: PromptTrainConfig = field(default_factory=PromptTrainConfig)

    def learner(self) -> dict:
        """The prompt learner's shape for the method: coop is one global prompt, no local ones, no dropout."""
        p = self.prompts
        if p.method == "coop":
            return {"n_global": 1, "n_local": 0, "local_k": (), "dropout": 0.0}
        k = tuple(int(v) for v in p.local_k)
        if p.n_local and len(k) == 1:
            k = k * p.n_local
        return {"n_global": p.n_global, "n_local": p.n_local, "local_k": k if p.n_local else (), "dropout": p.dropout}

    @property
    def trains_prompts(self) -> bool:
        return self.prompts.method in ("gallop", "coop")

    def validate(self) -> PromptRunConfig:
        check_choices(self)
        d, m, p, o, t = self.data, self.model, self.prompts, self.optim, self.train
        for key, value in (
            ("data.shots", d.shots),
            ("data.batch_size", d.batch_size),
            ("data.test_limit", d.test_limit),
            ("model.image_size", m.image_size),
            ("model.align_classes", m.align_classes),
            ("prompts.n_global", p.n_global),
            ("train.epochs", t.epochs),
        ):
            check_range(key, value, 1)
        check_range("model.align_classes", m.align_classes, 1, 1000)
        check_range("model.image_size", m.image_size, 32)
        for key, value in (
            ("data.valid_shots", d.valid_shots),
            ("prompts.n_local", p.n_local),
            ("train.patience", t.patience),
            ("optim.momentum", o.momentum),
            ("optim.weight_decay", o.weight_decay),
        ):
            check_range(key, value, 0)
        check_range("prompts.dropout", p.dropout, 0, 1, high_open=True)
        for key, value in (
            ("optim.lr", o.lr),
            ("prompts.logit_scale", p.logit_scale),
            ("prompts.ood_temperature", p.ood_temperature),
            ("model.ridge", m.ridge),
        ):
            check_range(key, value, 0, low_open=True)
        check_range("train.time_limit", t.time_limit, 0, low_open=True)
        if p.n_local:
            if not p.local_k or not all(isinstance(k, int) and not isinstance(k, bool) for k in p.local_k):
                raise ValueError(f"prompts.local_k={p.local_k}: expected a list of positive integers")
            if len(p.local_k) not in (1, p.n_local):
                raise ValueError(
                    f"prompts.local_k={p.local_k} must give one k, or one per local prompt "
                    f"(prompts.n_local={p.n_local})"
                )
            positions = (m.image_size // 32) ** 2  # the image tower's stride is 32
            too_big = [k for k in p.local_k if not 1 <= k <= positions]
            if too_big:
                raise ValueError(
                    f"prompts.local_k={p.local_k}: k={too_big[0]} is not between 1 and the {positions} local features "
                    f"of a {m.image_size}-pixel image ({m.image_size // 32} × {m.image_size // 32})"
                )
        if d.classes is not None and (
            not d.classes or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in d.classes)
        ):
            raise ValueError(f"data.classes={d.classes}: expected a non-empty list of class ids")
        if d.class_names is not None and not all(isinstance(c, str) and c.strip() for c in d.class_names):
            empty = next(i for i, c in enumerate(d.class_names) if not (isinstance(c, str) and c.strip()))
            raise ValueError(f"data.class_names: class {empty} has no name ({d.class_names[empty]!r})")
        return self
