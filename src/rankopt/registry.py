"""One name → factory mechanism for every family rankopt builds by name: losses, backbones, datasets,
recommenders (and the recipe files, through ``unknown``).

A ``Registry`` maps a normalised name to an ``Entry`` (the factory and its metadata, e.g. which
backbones take pretrained weights); an unknown name is a ValueError naming the closest known ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "Registry", "unknown"]


def unknown(kind: str, name: str, names: list[str], limit: int = 16) -> ValueError:
    """The error for a name not among ``names``: the closest ones first, then (some of) the known."""
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    known = ", ".join(names) if len(names) <= limit else f"{', '.join(names[: limit // 2])}, ... ({len(names)} in all)"
    return ValueError(f"unknown {kind} {name!r}{hint} Known: {known}")


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    meta: dict = field(default_factory=dict)


class Registry(Mapping):
    """Entries by name; ``normalize`` maps what users type to the key (e.g. case, '-' or '_')."""

    def __init__(self, kind: str, normalize: Callable[[str], str] = str.lower) -> None:
        self.kind, self.normalize = kind, normalize
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None, **meta) -> Callable[..., Any]:
        """Register ``factory`` under ``name``; without a factory, a decorator that registers what it
        decorates (timm-style, where the thing is defined)::

            @POOLINGS.register("gem")
            class GeM(nn.Module): ...
        """
        if factory is None:
            return lambda f: self.register(name, f, **meta)
        key = self.normalize(name)
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = Entry(key, factory, meta)
        return factory

    def entry(self, name: str) -> Entry:
        key = self.normalize(name)
        if key not in self._entries:
            raise unknown(self.kind, name, list(self._entries))
        return self._entries[key]

    def create(self, name: str, *args, **kwargs) -> Any:
        return self.entry(name).factory(*args, **kwargs)

    def names(self) -> list[str]:
        return list(self._entries)

    # a read-only mapping name → factory, as the former plain dicts
    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self.entry(name).factory

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.normalize(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
