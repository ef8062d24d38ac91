"""Referring expressions from templates with spatial and attribute relations, each resolved on a scene
by its definition, kept only when it names exactly one object without a near tie.

A template reads the head noun (the target's class name) and, for relations to another object, the
name of a class present exactly once in the scene. Positions are box centres, size is box area. A
template resolves only when the winner beats the runner-up by ``margin`` (pixels, or a share of the
area for sizes): an expression a person would find ambiguous is never generated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rankopt.grounding.scenes import Scene

__all__ = ["Template", "Expression", "TEMPLATES", "make_expressions", "template_names"]


@dataclass(frozen=True)
class Expression:
    text: str
    noun: str  # the head noun: what a phrase-grounding proposer is asked for
    target: int  # the index of the object it names in its scene
    template: str


@dataclass(frozen=True)
class Template:
    name: str
    text: str  # with {noun} and, for relations, {other}
    relation: bool  # reads a second object (a class present once)
    resolve: Callable[[Scene, int, int | None, float], int | None]


def _unique_best(values: list[tuple[float, int]], margin: float) -> int | None:
    """The index with the largest value when it leads the runner-up by more than ``margin``."""
    if not values:
        return None
    ranked = sorted(values, reverse=True)
    if len(ranked) > 1 and ranked[0][0] - ranked[1][0] <= margin:
        return None
    return ranked[0][1]


def _of(scene: Scene, label: int) -> list[int]:
    return [i for i, o in enumerate(scene.objects) if o.label == label]


def _extreme(key: Callable, sign: float, minimum: int = 2):
    """The noun's object with the largest sign·key(object); needs ``minimum`` objects of the noun."""

    def resolve(scene: Scene, noun: int, other: int | None, margin: float) -> int | None:
        idx = _of(scene, noun)
        if len(idx) < minimum:
            return None
        return _unique_best([(sign * key(scene.objects[i]), i) for i in idx], margin * _scale(key))

    return resolve


def _scale(key: Callable) -> float:
    return 1.0 if key is not _area else 20.0  # sizes: a gap of 20 px² per pixel of margin


def _x(o) -> float:
    return o.center[0]


def _y(o) -> float:
    return o.center[1]


def _area(o) -> float:
    return o.area


def _second(sign: float):
    """The noun's second object from one side (x order; needs 3 of the noun so it differs from an extreme)."""

    def resolve(scene: Scene, noun: int, other: int | None, margin: float) -> int | None:
        idx = _of(scene, noun)
        if len(idx) < 3:
            return None
        xs = sorted((sign * _x(scene.objects[i]), i) for i in idx)
        gaps = (xs[1][0] - xs[0][0], xs[2][0] - xs[1][0])
        return xs[1][1] if min(gaps) > margin else None

    return resolve


def _relative(axis: int, sign: float):
    """The one object of the noun on one side of the ``other`` object (centres apart by > margin)."""

    def resolve(scene: Scene, noun: int, other: int | None, margin: float) -> int | None:
        ref = _of(scene, other)
        idx = _of(scene, noun)
        if len(ref) != 1 or len(idx) < 2:
            return None
        r = scene.objects[ref[0]].center[axis]
        side = [i for i in idx if sign * (scene.objects[i].center[axis] - r) > margin]
        unclear = [i for i in idx if abs(scene.objects[i].center[axis] - r) <= margin]
        return side[0] if len(side) == 1 and not unclear else None

    return resolve


def _closest(scene: Scene, noun: int, other: int | None, margin: float) -> int | None:
    ref = _of(scene, other)
    idx = _of(scene, noun)
    if len(ref) != 1 or len(idx) < 2:
        return None
    cx, cy = scene.objects[ref[0]].center
    dist = [(-float(np.hypot(scene.objects[i].center[0] - cx, scene.objects[i].center[1] - cy)), i) for i in idx]
    return _unique_best(dist, margin)


def _only(scene: Scene, noun: int, other: int | None, margin: float) -> int | None:
    idx = _of(scene, noun)
    return idx[0] if len(idx) == 1 else None


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("only", "the {noun}", False, _only),
        Template("leftmost", "the leftmost {noun}", False, _extreme(_x, -1)),
        Template("rightmost", "the {noun} furthest to the right", False, _extreme(_x, 1)),
        Template("top", "the {noun} at the top", False, _extreme(_y, -1)),
        Template("bottom", "the lowest {noun}", False, _extreme(_y, 1)),
        Template("largest", "the largest {noun}", False, _extreme(_area, 1)),
        Template("smallest", "the smallest {noun}", False, _extreme(_area, -1)),
        Template("second-left", "the second {noun} from the left", False, _second(1)),
        Template("second-right", "the second {noun} from the right", False, _second(-1)),
        Template("left-of", "the {noun} left of the {other}", True, _relative(0, -1)),
        Template("right-of", "the {noun} right of the {other}", True, _relative(0, 1)),
        Template("above", "the {noun} above the {other}", True, _relative(1, -1)),
        Template("below", "the {noun} below the {other}", True, _relative(1, 1)),
        Template("closest", "the {noun} closest to the {other}", True, _closest),
    )
}


def template_names(names) -> list[str]:
    """Check template names (a config's lists) against TEMPLATES; return them as a list."""
    unknown = [n for n in names if n not in TEMPLATES]
    if unknown:
        raise ValueError(f"unknown expression template {unknown[0]!r}; known: {', '.join(TEMPLATES)}")
    return list(names)


def make_expressions(
    scene: Scene, nouns: list[str], templates: list[str], rng: np.random.Generator, margin: float = 3.0, k: int = 1
) -> list[Expression]:
    """Up to ``k`` expressions on ``scene`` from ``templates`` (tried in a random order, with random
    noun and reference classes), each naming exactly one object; fewer when the scene allows fewer."""
    labels = sorted({o.label for o in scene.objects})
    out = []
    # a template first, then its nouns: every applicable template is equally likely, whatever the
    # number of (noun, reference) pairs it could read
    for j in rng.permutation(len(templates)):
        t = TEMPLATES[templates[j]]
        options = [
            (noun, ref)
            for noun in labels
            for ref in ([c for c in labels if c != noun and scene.count(c) == 1] if t.relation else [None])
        ]
        for o in rng.permutation(len(options)):
            noun, ref = options[o]
            target = t.resolve(scene, noun, ref, margin)
            if target is not None:
                text = t.text.format(noun=nouns[noun], other=nouns[ref] if ref is not None else "")
                out.append(Expression(text, nouns[noun], target, t.name))
                break
        if len(out) == k:
            break
    return out
