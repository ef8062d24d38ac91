"""Atomic file writes: a killed process never leaves a half-written checkpoint or metrics file behind."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write", "atomic_torch_save", "atomic_write_text"]


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """Call ``write(binary file)`` on a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except RuntimeError as err:  # torch's writer reports a full disk as "[enforce fail at ...] file write failed"
            if "write failed" not in str(err) and "enforce fail" not in str(err):
                raise
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC if free < (64 << 20) else errno.EIO,
                f"writing {path} failed ({free >> 20} MiB free on its device): the previous {path.name} is intact; "
                "free space and resume",
            ) from None
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))
