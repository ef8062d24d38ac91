"""The resumable result files of the benchmarks: one JSON object per line, appended as each measurement
finishes, so that a benchmark stopped midway continues where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["Rows"]


class Rows:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    def __iter__(self):
        return iter(self.rows)

    def find(self, **key) -> dict | None:
        """The first row with every ``key`` value, or None."""
        return next((r for r in self.rows if all(r.get(k) == v for k, v in key.items())), None)

    def add(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
