"""The detector interface: ``fit`` on ID training features, ``score`` → one outlier score per row
(larger = more OOD), streamed in row blocks; a fitted detector saves to and loads from a file of
tensors (``torch.load(weights_only=True)``: no pickled code is ever run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from rankopt.atomic import atomic_torch_save
from rankopt.ood.features import Features, LinearHead, row_blocks
from rankopt.registry import Registry

__all__ = [
    "Detector",
    "save_detector",
    "load_detector",
    "NEEDS_TEXT",
    "DETECTORS",
    "register_detector",
    "create_detector",
    "detector_names",
]

# every detector by the name users type (--detectors); filled by @register_detector where each is defined
DETECTORS = Registry("OOD detector", normalize=lambda s: s.lower().replace("-", "_"))


def register_detector(cls: type) -> type:
    """Class decorator: register a Detector subclass under its ``name``, its docstring's first line as doc."""
    DETECTORS.register(cls.name, cls, doc=(cls.__doc__ or "").strip().splitlines()[0])
    return cls


def create_detector(name: str, **options) -> Detector:
    """The detector ``name`` with ``options``; an option it does not take is an error naming those it does."""
    import difflib
    import inspect

    entry = DETECTORS.entry(name)
    accepted = [p for p in inspect.signature(entry.factory).parameters if p != "self"]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(
            f"detector {entry.name} has no option {unknown[0]!r}{hint}; its options: {', '.join(accepted) or 'none'}"
        )
    return entry.factory(**options)


def detector_names(include_compose: bool = False, cosines: bool = False) -> list[str]:
    """The detectors a default `rankopt ood` runs (the generic composition is for users' own lists);
    those made for a vision-language model's class cosines (MCM, GL-MCM) only where ``cosines``."""
    return [
        n
        for n in DETECTORS.names()
        if (include_compose or n != "compose") and (cosines or not DETECTORS.entry(n).factory.reads_cosines)
    ]


NEEDS_TEXT = {
    "labels": "class labels in the ID training features",
    "logits": "logits (stored, or a linear head: head_weight/head_bias, or labels to fit a probe on)",
    "head": "the linear head (head_weight/head_bias, or labels to fit a probe on)",
    "std_features": "std-pooled features (std_features)",
    "local_logits": "local logits (local_logits: per-position class scores, e.g. a prompt run's local cosines)",
}


class Detector:
    """Base class. Subclasses set ``needs`` (what the ID training set must carry), implement
    ``_fit(train)`` and ``_score(x, start, stop)`` (a float64 tensor for rows [start, stop)), and list
    the fitted attributes in ``_state`` (tensors, floats, a LinearHead, an nn.Module or a Detector)."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    reads_cosines: ClassVar[bool] = False  # made for a vision-language model's class cosines (MCM, GL-MCM)
    _state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options) -> None:
        self.options = options
        self.dim: int | None = None  # the feature dimension seen at fit
        self.std_dim: int | None = None
        self.progress = None  # progress(done, total) during long fits (HEAT's training), or None

    def set_progress(self, progress) -> None:
        self.progress = progress

    # --- public API -------------------------------------------------------------------------
    def missing(self, feats: Features) -> list[str]:
        """What this detector needs that ``feats`` (ID training features) lacks."""
        return [n for n in self.needs if not feats.has(n)]

    def fit(self, train: Features) -> Detector:
        lacking = self.missing(train)
        if lacking:
            raise ValueError(f"detector {self.name} needs {'; '.join(NEEDS_TEXT[n] for n in lacking)}")
        self.dim = train.dim
        self.std_dim = None if train.std_features is None else train.std_features.shape[1]
        self._fit(train)
        return self

    def score(self, x: Features, rows: int | None = None) -> np.ndarray:
        """Outlier scores of every row of ``x`` (larger = more OOD), computed rows at a time."""
        if self.dim is None:
            raise ValueError(f"detector {self.name} is not fitted: call fit(ID training features) first")
        if x.dim != self.dim:
            raise ValueError(f"features have dimension {x.dim} but detector {self.name} was fitted on {self.dim}")
        if "std_features" in self.needs:
            if x.std_features is None:
                raise ValueError(f"detector {self.name} needs std_features in the features it scores")
            if x.std_features.shape[1] != self.std_dim:
                raise ValueError(
                    f"std_features have dimension {x.std_features.shape[1]} but detector {self.name} "
                    f"was fitted on {self.std_dim}"
                )
        out = np.empty(len(x), dtype=np.float64)
        with torch.no_grad():
            for start, stop in row_blocks(len(x), rows):
                out[start:stop] = self._score(x, start, stop).cpu().numpy()
        return out

    # --- to implement -----------------------------------------------------------------------
    def _fit(self, train: Features) -> None:
        raise NotImplementedError

    def _score(self, x: Features, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    def _build(self) -> None:
        """Create the modules whose weights load_state fills (after dim is known)."""

    # --- state --------------------------------------------------------------------------------
    def _header(self) -> dict[str, torch.Tensor]:
        """What every saved detector starts with: the dimensions it was fitted on."""
        return {"dim": torch.tensor(self.dim), "std_dim": torch.tensor(-1 if self.std_dim is None else self.std_dim)}

    def _read_header(self, state: dict[str, torch.Tensor]) -> None:
        self.dim = int(state["dim"])
        self.std_dim = None if int(state["std_dim"]) < 0 else int(state["std_dim"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = self._header()
        for name in self._state:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Detector):
                out.update({f"{name}.{k}": v for k, v in value.state_dict().items()})
            elif isinstance(value, torch.nn.Module):
                out.update({f"{name}.{k}": v.detach().clone() for k, v in value.state_dict().items()})
            elif isinstance(value, LinearHead):
                out[f"{name}.weight"], out[f"{name}.bias"] = value.weight, value.bias
            elif isinstance(value, bool):
                out[name] = torch.tensor(value)
            elif isinstance(value, float):
                out[name] = torch.tensor(value, dtype=torch.float64)
            else:
                out[name] = torch.as_tensor(value)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._read_header(state)
        self._build()
        for name in self._state:
            prefix = f"{name}."
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            current = getattr(self, name, None)
            if isinstance(current, (Detector, torch.nn.Module)):
                current.load_state_dict(sub)
            elif sub and set(sub) == {"weight", "bias"}:
                setattr(self, name, LinearHead(sub["weight"], sub["bias"]))
            elif name in state:
                value = state[name]
                if value.ndim == 0 and value.dtype == torch.bool:
                    value = bool(value)
                elif value.ndim == 0 and value.is_floating_point():
                    value = float(value)
                setattr(self, name, value)
            else:
                setattr(self, name, None)


def save_detector(detector: Detector, path: str | Path) -> None:
    """A fitted detector as one file of tensors (its name and options as JSON text inside)."""
    blob = {"name": detector.name, "options": json.dumps(detector.options), "state": detector.state_dict()}
    atomic_torch_save(blob, path)


def load_detector(path: str | Path) -> Detector:
    """A detector saved by save_detector, loaded safely (tensors and strings only)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"detector file {p} does not exist")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
        name, options, state = blob["name"], json.loads(blob["options"]), blob["state"]
    except Exception as err:
        raise ValueError(
            f"detector file {p} cannot be read ({' '.join(str(err).split()[:12]) or type(err).__name__})"
        ) from None
    detector = create_detector(name, **options)
    detector.load_state_dict(state)
    return detector
