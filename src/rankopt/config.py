"""Run configuration for every task: typed dataclass sections, YAML recipes, ``key=value`` overrides,
checks before any work, and the registry of tasks.

A task (image retrieval, recommendation, ...) declares a root config: a dataclass of sections (data,
model, loss, optim, train, ...) with a ``task`` name and a ``validate()`` method. Its fields are
declared with :func:`setting`, which carries the help text and the allowed choices; the command line
(short flags, help), the checks (:func:`check_choices`) and the docs' config reference are derived
from them. A recipe is a YAML file of sections; every key it or an override names must exist (an
unknown one is an error suggesting the closest), and every value must have the field's type; then
``validate()`` checks ranges and combinations. The resolved config is what a run saves in its folder
(``config.yaml``, with its task) and what ``--resume`` reloads.

Tasks are plugins: each task package declares a :class:`Task` (config class, run function, command)
and registers it under the ``rankopt.tasks`` entry point group (pyproject.toml), so that a run folder
of any task can be read without this module importing any task package.

Example (the image-retrieval task's config):

>>> cfg = load_config("fashion-mnist", ["train.epochs=5", "loss.name=smoothap"])
>>> cfg.train.epochs, cfg.loss.name
(5, 'smoothap')
>>> load_config("fashion-mnist", ["train.epoch=5"])
Traceback (most recent call last):
...
ValueError: unknown config key train.epoch; did you mean train.epochs?
>>> load_config("fashion-mnist", ["optim.optimizer=adagrad"])
Traceback (most recent call last):
...
ValueError: optim.optimizer='adagrad' is not one of adam, adamw, sgd
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rankopt import recipes
from rankopt.registry import Registry, unknown

__all__ = [
    "setting",
    "Task",
    "TaskCommand",
    "TASKS",
    "get_task",
    "tasks",
    "config_class",
    "load_config",
    "apply_overrides",
    "from_dict",
    "to_dict",
    "recipe_names",
    "check_range",
    "check_choices",
    "check_metrics",
    "changed_keys",
    "settings_of",
    "Setting",
]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Iterable[str] | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A config field with its help text and, where the value is a name, the names it may take
    (a tuple, or a :class:`~rankopt.registry.Registry` read when checked, so that entries registered
    later count)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Setting:
    """One leaf of a config: its dotted key, type, default, help and choices."""

    key: str
    annotation: Any
    default: Any
    help: str
    choices: Any

    def choice_names(self) -> list[str] | None:
        return None if self.choices is None else list(self.choices)

    @property
    def type_name(self) -> str:
        return _type_name(self.annotation)


def settings_of(cls_or_cfg: Any, prefix: str = "") -> Iterator[Setting]:
    """Every leaf setting of a config class (or instance), depth first, in declaration order."""
    cls = cls_or_cfg if isinstance(cls_or_cfg, type) else type(cls_or_cfg)
    hints = typing.get_type_hints(cls)
    instance = cls_or_cfg if not isinstance(cls_or_cfg, type) else cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            yield from settings_of(value, f"{prefix}{f.name}.")
        else:
            yield Setting(
                f"{prefix}{f.name}", hints[f.name], value, f.metadata.get("help", ""), f.metadata.get("choices")
            )


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    names = []
    for opt in options:
        if opt is type(None):
            names.append("null")
        elif opt is Any:
            names.append("any")
        else:
            names.append(getattr(typing.get_origin(opt) or opt, "__name__", str(opt)))
    return " | ".join(names)


# --- tasks ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A task plugin: what ``rankopt <command>`` runs and how its run folders are read.

    config: the root config class. run: ``"module:function"`` of the function that trains a run,
    called as ``run(cfg, folder, resume=CHECKPOINT|None, progress=bool) -> metrics.json object``
    (imported only when a run starts). command: the CLI words (``("train",)``, ``("recsys", "train")``).
    flags: short CLI flags → config keys (type, choices and help come from the field).
    resumable: config keys a ``--resume`` may change besides the shared ones (more epochs, devices).
    cli: ``"module:name"`` of the task's :class:`TaskCommand` (its own arguments, the summary's test line).
    backbone: where a run's checkpoint keeps the backbone another run may start from (a state-dict key
    prefix, e.g. ``"model.backbone."``), None if it has none; read by ``RunFolder.backbone_state``.
    stages: a run made of several engine fits, each in its own sub-folder of the run (with its own
    checkpoints/): a resume needs one of them to have a last.ckpt. Empty: one fit, in the run folder.
    """

    name: str
    config: type
    run: str
    command: tuple[str, ...]
    help: str
    description: str = ""
    default_recipe: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    resumable: tuple[str, ...] = ()
    cli: str | None = None
    backbone: str | None = None
    stages: tuple[str, ...] = ()

    def run_function(self) -> Callable[..., dict]:
        return _resolve(self.run)

    def command_hooks(self) -> TaskCommand:
        return TaskCommand() if self.cli is None else _resolve(self.cli)


class TaskCommand:
    """What a task adds to its ``rankopt`` command beyond the shared ones (RECIPE, ``--set``,
    ``--run-dir``, ``--resume``, ``--json``, the short flags of ``Task.flags``). Subclass it in the task
    package and name the instance in ``Task.cli``; the CLI calls these, the task never imports the CLI."""

    def add_arguments(self, parser: Any) -> None:
        """Arguments of the task's own (an argparse parser)."""

    def overrides(self, args: Any) -> tuple[str | None, list[str]]:
        """(the recipe, overrides) that the parsed arguments stand for; the shared ones come after."""
        return args.recipe, []

    def test_line(self, result: dict, cfg: Any) -> str:
        """How the run summary describes what was tested."""
        return "test"


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


TASKS = Registry("task")
_loaded = False


def _load_tasks() -> None:
    """Fill TASKS from the ``rankopt.tasks`` entry points (each names a module-level Task object)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="rankopt.tasks"), key=lambda e: e.name):
        spec = ep.load()
        if not isinstance(spec, Task):
            raise TypeError(f"entry point rankopt.tasks:{ep.name} is not a rankopt.config.Task")
        if spec.name not in TASKS:
            TASKS.register(spec.name, spec)


def get_task(name: str) -> Task:
    """The registered task ``name`` (images, recsys, ...)."""
    _load_tasks()
    return TASKS.entry(name).factory


def tasks() -> list[Task]:
    _load_tasks()
    return [TASKS.entry(n).factory for n in TASKS.names()]  # in entry-point name order


def config_class(name: str) -> type:
    """The root config class of a task."""
    _load_tasks()
    if name not in TASKS:
        raise ValueError(
            f"unknown task {name!r} (a run's config.yaml or a recipe names one of {', '.join(TASKS.names())})"
        )
    return get_task(name).config


def recipe_names(task_name: str = "images") -> list[str]:
    return recipes.names(task_name)


# --- reading and checking ------------------------------------------------------------------------
def _read_recipe(recipe: str, task_name: str) -> tuple[str, dict]:
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ValueError(f"recipe file {path} does not exist")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"recipe file {path} is not a text (YAML) file") from None
        name = path.stem
    else:
        names = recipe_names(task_name)
        if recipe not in names:
            raise unknown("recipe", recipe, names)
        name, text = recipe, recipes.read(recipe, task_name)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {recipe}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"recipe {recipe}: expected a mapping of sections, got {type(data).__name__}")
    return name, data


_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """The value if it has one of the annotation's types; else a lossless reading of it (an int where a
    float is expected, YAML 1.1's ``1e-5`` text as a float, a number where text is expected)."""
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    bases = [typing.get_origin(opt) or opt for opt in options]
    if value is None and type(None) in bases:
        return None
    for base in bases:
        if base in (int, float) and isinstance(value, bool):
            continue
        if isinstance(base, type) and base is not type(None) and isinstance(value, base):
            return value
    for base in bases:
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str) and _EXPONENT.match(value):  # YAML 1.1 reads 1e-5 as text
            return float(value)
        if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. train.precision=16: YAML reads a number
    raise ValueError(f"{key}: expected {_type_name(annotation)}, got {value!r} ({type(value).__name__})")


def _apply(section: Any, values: dict, prefix: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(section)}
    hints = typing.get_type_hints(type(section))
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            if not close:  # e.g. optim.lr where the keys are lr_head and lr_backbone
                close = [k for k in fields if k.startswith(str(key)) or str(key) in k][:3]
            hint = (
                f"; did you mean {', '.join(prefix + c for c in close)}?"
                if close
                else f"; {prefix.rstrip('.') or 'the config'} has {', '.join(prefix + k for k in fields)}"
            )
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


def apply_overrides(cfg: Any, overrides: Iterable[str]) -> Any:
    """Apply ``section.key=value`` overrides in place (checked like a recipe), validate, return cfg."""
    for text in overrides:
        _apply(cfg, _override(text), "")
    return cfg.validate()


def load_config(recipe: str | None = None, overrides: Iterable[str] = (), task: str = "images") -> Any:
    """Defaults, then the recipe (a packaged name of the task or a YAML path), then each ``key=value``
    override; validated."""
    cfg = config_class(task)()
    if recipe is None:
        recipe = get_task(task).default_recipe
    if recipe is not None:
        name, data = _read_recipe(recipe, task)
        data.pop("recipe", None)
        found = data.pop("task", task)
        if found != task:
            raise ValueError(f"recipe {recipe} is a {found} recipe, not {task}")
        _apply(cfg, data, "")
        cfg.recipe = name
    return apply_overrides(cfg, overrides)


def to_dict(cfg: Any) -> dict:
    return {"task": cfg.task, **dataclasses.asdict(cfg)}


def from_dict(data: dict) -> Any:
    """A config saved by a run (its config.yaml; without a task: an image run), not validated."""
    data = dict(data)
    cfg = config_class(data.pop("task", "images"))()
    cfg.recipe = data.pop("recipe", cfg.recipe)
    _apply(cfg, data, "")
    return cfg


def changed_keys(before: dict, after: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two config dicts."""
    out = []
    for key in dict.fromkeys([*before, *after]):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "options":
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def check_range(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """One range check with the message every config uses: ``key=value must be ...``.

    >>> check_range("train.epochs", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: train.epochs=0 must be at least 1
    """
    if value is None:
        return
    if low is not None and (value <= low if low_open else value < low):
        bound = "positive" if low == 0 and low_open else f"{'above' if low_open else 'at least'} {low}"
        raise ValueError(f"{key}={value} must be {bound}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{key}={value} must be {'below' if high_open else 'at most'} {high}")


def check_choices(cfg: Any) -> None:
    """Every setting declared with choices holds one of them (None: unset, allowed)."""
    for s in settings_of(cfg):
        if s.choices is None:
            continue
        value = _get(cfg, s.key)
        if value is not None and value not in s.choices:
            names = s.choice_names()
            close = difflib.get_close_matches(str(value), names, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"{s.key}={value!r} is not one of {', '.join(names)}{hint}")


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_metrics(metrics: list, monitor: str, section: str = "train") -> None:
    """Metric names known (an unknown one raises here, not after an epoch) and the monitor among them."""
    from rankopt.metrics.names import parse_metrics

    if not metrics:
        raise ValueError(f"{section}.metrics is empty: name at least the monitored metric")
    names = [spec.name for spec in parse_metrics(list(metrics))]
    if monitor not in names:
        raise ValueError(f"{section}.monitor={monitor!r} is not among {section}.metrics ({', '.join(names)})")
