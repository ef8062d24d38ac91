"""Input checks run once at the public entry points; inner code trusts what they return.

Every check raises ``ValueError`` (or :class:`InputTypeError` for a wrong kind of object) with a
message that names the argument, what was wrong and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "InputTypeError",
    "check_device",
    "as_tensor",
    "check_embeddings",
    "check_labels",
    "check_same_length",
    "check_choice",
]


class InputTypeError(TypeError, ValueError):
    """An input of the wrong kind (strings for labels, an object array): a TypeError to Python callers,
    and bad input (a ValueError) to the command line, which answers it in one line."""


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a torch tensor without copying when possible (numpy, lists, tensors)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputTypeError(f"{name} is a numpy array of Python objects; expected a numeric array")
        if x.dtype.kind in "USV":
            raise InputTypeError(
                f"{name} holds {'strings' if x.dtype.kind in 'US' else 'raw bytes'} ({x.dtype}); expected "
                "numbers (map class names to integer ids first)"
            )
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"{name} could not be read as an array: {err}") from None


def check_embeddings(x: Any, name: str = "embeddings") -> torch.Tensor:
    """A non-empty (N, d) floating tensor with finite values."""
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, d); got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}; expected at least one row and one column")
    if not torch.is_floating_point(t):
        if t.dtype == torch.bool or torch.is_complex(t):
            raise ValueError(f"{name} must be real numbers; got dtype {t.dtype}")
        t = t.to(torch.float32)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise ValueError(
            f"{name} contains {kind} values in {bad_rows.numel()} row(s) (first: row {int(bad_rows[0])}); "
            "embeddings must be finite"
        )
    return t


def check_labels(y: Any, name: str = "labels") -> torch.Tensor:
    """Integer labels (N,) or (N, L), column 0 the finest level; returned as int64 (N, L)."""
    t = as_tensor(y, name)
    if t.dtype == torch.bool or torch.is_floating_point(t) or torch.is_complex(t):
        raise ValueError(
            f"{name} must be integers (class ids); got dtype {t.dtype}. Labels are never cast from float: "
            "convert them explicitly if they are whole numbers"
        )
    if t.ndim == 1:
        t = t.unsqueeze(1)
    elif t.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, L); got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty; expected one label row per embedding")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has zero label columns; expected (N,) or (N, L) with L >= 1")
    t = t.to(torch.int64)
    if bool((t < 0).any()):
        row = int((t < 0).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} must be non-negative integers; row {row} has {t[row].tolist()}")
    return t


def check_same_length(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{b_name} has {b.shape[0]} rows but {a_name} has {a.shape[0]}; expected one per row")


def check_device(device: str | torch.device | None, name: str = "device") -> torch.device | None:
    """A torch device that exists here: a malformed name, or a CUDA device this machine does not have,
    is a ValueError naming it (torch's own errors come later, from deep inside)."""
    if device is None or (isinstance(device, torch.device) and device.type == "cpu"):
        return None if device is None else device
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{name}={device!r} is not a device name (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name}={device}: no CUDA device is available here (use cpu)")
        if (dev.index or 0) >= count:
            raise ValueError(f"{name}={device}: only {count} CUDA device(s) here")
    elif dev.type != "cpu" and dev.type != "meta":
        raise ValueError(f"{name}={device}: use cpu or cuda[:N]")
    return dev


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(repr(c) for c in choices)}")
    return value
