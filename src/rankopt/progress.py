"""Progress on stderr for long evaluations: the CLI and the trainer draw it, library code only calls back."""

from __future__ import annotations

import contextlib
import sys

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(label: str, enabled: bool | None = None, unit: str = "query"):
    """A ``progress(done, total)`` callback drawing one bar on stderr (on a terminal; tqdm when present)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield None
        return
    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            try:
                from tqdm import tqdm

                state["bar"] = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, leave=False)
            except ImportError:
                state["bar"] = None
        bar = state["bar"]
        if bar is not None:
            bar.update(done - bar.n)
        else:
            print(f"\r{label}: {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        yield update
    finally:
        if state.get("bar") is not None:
            state["bar"].close()
        elif state:
            print(file=sys.stderr)
