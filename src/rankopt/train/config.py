"""Run configuration: typed sections, YAML recipes, and ``key=value`` overrides checked against them.

One mechanism for every task: a root config (``RunConfig`` for image retrieval,
``rankopt.recsys.config.RecRunConfig`` for recommendation) is a dataclass of sections (data, model,
loss, optim, train) with a ``task`` name, a ``validate()`` method and its packaged recipes. A recipe is
a YAML file of sections; every key it or an override names must exist (an unknown one is an error
suggesting the closest), and every value must have the field's type; then ``validate()`` checks
ranges and combinations, before any work starts. The resolved config is what a run saves in its
folder (config.yaml, with its task) and what ``--resume`` reloads.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from rankopt import recipes
from rankopt.registry import unknown
from rankopt.train.module import OptimConfig

__all__ = [
    "DataConfig", "ModelConfig", "LossConfig", "TrainConfig", "RunConfig", "load_config", "apply_overrides",
    "recipe_names", "to_dict", "from_dict", "validate", "config_class",
]


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    root: str | None = None  # the dataset folder (fashion-mnist: optional)
    train_split: str = "train"
    test_split: str = "auto"  # the test queries; auto: the dataset's published protocol (In-Shop, DyML: query)
    gallery_split: str | None = "auto"  # what test queries rank: a split (In-Shop, DyML: gallery), or none: leave-one-out
    valid: str | None = "carve"  # the selection split: carve (from training), none (select the last epoch), or a split name
    valid_fraction: float = 0.1  # carved validation: share of the training classes (images for Fashion-MNIST)
    test_fraction: float = 0.5  # image folder / CSV without splits: share of the classes held out for test
    split_seed: int = 0  # seed of every carved split (independent of the training seed)
    options: dict = field(default_factory=dict)  # extra loader arguments (hierarchy, level, ...)
    sampler: str = "m_per_class"  # or hierarchical
    batch_size: int = 128
    m: int = 16  # images per class in a batch
    image_size: int = 224  # image datasets: crop size (resize to image_size * 8/7)
    num_workers: int = 0
    limit: int | None = None  # use only the first images of each split (quick runs)
    train_limit: int | None = None  # use only the first training images (a smaller budget, full test set)
    skip_bad_images: bool = False


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"
    dim: int = 64
    pooling: str = "avg"
    layer_norm: bool = False
    freeze_bn: bool = False
    weights: str | None = None  # path of pretrained backbone weights
    in_channels: int = 1


@dataclass
class LossConfig:
    name: str = "roadmap"
    options: dict = field(default_factory=dict)  # constructor arguments of the loss
    memory: int = 0  # CrossBatchMemory size (a FIFO queue); 0 = none
    memory_unique: bool = False  # ROADMAP's memory instead: one slot per training item, its latest embedding
    memory_start_step: int = 0


@dataclass
class TrainConfig:
    epochs: int = 2
    seed: int = 0
    eval_every: int = 1
    patience: int = 0  # stop after this many validations without a better monitored value (0: never)
    time_limit: float | None = None  # seconds of fitting (validation included); the epoch crossing it is the last
    metrics: list = field(default_factory=lambda: ["hit@1", "map@r", "ap", "hap", "asi", "ndcg"])
    monitor: str = "map@r"
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    run_dir: str | None = None  # default: runs/<recipe>-<timestamp>


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
        OptimConfig.__post_init__(self.optim)  # re-validate choices after overrides
        return _validate_images(self)


def config_class(task: str) -> type:
    """The root config of a task: images (RunConfig) or recsys (RecRunConfig)."""
    if task == "images":
        return RunConfig
    if task == "recsys":
        from rankopt.recsys.config import RecRunConfig

        return RecRunConfig
    raise ValueError(f"unknown task {task!r} in a run's config.yaml (images or recsys)")


def recipe_names(task: str = "images") -> list[str]:
    return recipes.names(task)


def _read_recipe(recipe: str, task: str = "images") -> tuple[str, dict]:
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ValueError(f"recipe file {path} does not exist")
        name, text = path.stem, path.read_text()
    else:
        names = recipe_names(task)
        if recipe not in names:
            raise unknown("recipe", recipe, names)
        name, text = recipe, recipes.read(recipe, task)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {recipe}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"recipe {recipe}: expected a mapping of sections, got {type(data).__name__}")
    return name, data


_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Coerce ints to floats where a float is expected; otherwise the value must match the annotation."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    for opt in options:
        if opt is type(None) and value is None:
            return None
        base = typing.get_origin(opt) or opt
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str) and _EXPONENT.match(value):  # YAML 1.1 reads 1e-5 as text
            return float(value)
        if base in (int, float) and isinstance(value, bool):
            continue
        if isinstance(base, type) and isinstance(value, base):
            return value
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{key}: expected {names}, got {value!r} ({type(value).__name__})")


def _apply(section: Any, values: dict, prefix: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(section)}
    hints = typing.get_type_hints(type(section))
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ValueError(f"unknown config key {prefix}{key}{hint}")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{key}: expected a section (mapping), got {value!r}")
            _apply(current, value, f"{prefix}{key}.")
        else:
            setattr(section, key, _check_type(value, hints[key], prefix + key))


def _override(text: str) -> dict:
    if "=" not in text:
        raise ValueError(f"override {text!r} is not key=value (e.g. train.epochs=3)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def apply_overrides(cfg, overrides: list[str] | tuple[str, ...]):
    """Apply ``section.key=value`` overrides in place (checked like a recipe), validate, return cfg."""
    for text in overrides:
        _apply(cfg, _override(text), "")
    return cfg.validate()


def validate(cfg):
    """Ranges and combinations that the types cannot say, checked before any work starts."""
    return cfg.validate()


def check_range(key: str, value, low=None, high=None, *, low_open: bool = False, high_open: bool = False) -> None:
    """One range check with the message every config uses: ``key=value must be ...``."""
    if value is None:
        return
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{key}={value} must be {'above' if low_open else 'at least'} {low}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{key}={value} must be {'below' if high_open else 'at most'} {high}")


def check_metrics(metrics: list, monitor: str, section: str = "train") -> None:
    """Metric names known (an unknown one raises here, not after an epoch) and the monitor among them."""
    from rankopt.metrics.names import parse_metrics

    if not metrics:
        raise ValueError(f"{section}.metrics is empty: name at least the monitored metric")
    names = [spec.name for spec in parse_metrics(list(metrics))]
    if monitor not in names:
        raise ValueError(f"{section}.monitor={monitor!r} is not among {section}.metrics ({', '.join(names)})")


def _validate_images(cfg: RunConfig) -> RunConfig:
    d, t = cfg.data, cfg.train
    for key, value in (("train.epochs", t.epochs), ("train.eval_every", t.eval_every), ("data.batch_size", d.batch_size),
                       ("data.m", d.m), ("data.limit", d.limit), ("data.train_limit", d.train_limit)):
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be at least 1")
    for key, value in (("data.valid_fraction", d.valid_fraction), ("data.test_fraction", d.test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{key}={value} must be between 0 and 1 (exclusive)")
    m = cfg.model
    from rankopt.models.backbones import check_backbone
    from rankopt.models.pooling import POOLINGS

    if m.pooling not in POOLINGS:
        raise ValueError(f"model.pooling={m.pooling!r} is not one of {', '.join(POOLINGS)}")
    check_backbone(m.backbone, m.weights, m.in_channels, m.pooling)
    if d.name == "fashion-mnist" and m.in_channels != 1:
        raise ValueError(f"model.in_channels={m.in_channels}: Fashion-MNIST images have 1 channel (use model.backbone=small_cnn)")
    for key, value in (("optim.lr_backbone", cfg.optim.lr_backbone), ("optim.lr_head", cfg.optim.lr_head),
                       ("optim.lr_proxies", cfg.optim.lr_proxies)):
        if value is not None and not value > 0:
            raise ValueError(f"{key}={value} must be positive")
    if cfg.loss.memory_unique and cfg.loss.memory:
        raise ValueError("loss.memory_unique sizes the memory to the training set: leave loss.memory at 0")
    if cfg.loss.memory < 0:
        raise ValueError(f"loss.memory={cfg.loss.memory} must be 0 (none) or a size")
    check_range("train.patience", t.patience, 0)
    check_range("train.time_limit", t.time_limit, 0, low_open=True)
    check_metrics(t.metrics, t.monitor)
    return cfg


def load_config(recipe: str | None = "fashion-mnist", overrides: list[str] | tuple[str, ...] = (), task: str = "images"):
    """Defaults, then the recipe (a packaged name of the task or a YAML path), then each ``key=value``
    override; validated."""
    cfg = config_class(task)()
    if recipe is not None:
        name, data = _read_recipe(recipe, task)
        data.pop("recipe", None)
        found = data.pop("task", task)
        if found != task:
            raise ValueError(f"recipe {recipe} is a {found} recipe, not {task}")
        _apply(cfg, data, "")
        cfg.recipe = name
    return apply_overrides(cfg, overrides)


def to_dict(cfg) -> dict:
    return {"task": cfg.task, **dataclasses.asdict(cfg)}


def from_dict(data: dict):
    """A config saved by a run (its config.yaml; without a task: an image run)."""
    data = dict(data)
    cfg = config_class(data.pop("task", "images"))()
    cfg.recipe = data.pop("recipe", cfg.recipe)
    _apply(cfg, data, "")
    return cfg
