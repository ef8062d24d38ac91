"""Scenes for referring-expression comprehension, composed from real offline images: 3–6 items of a
labelled 28 × 28 image set (Fashion-MNIST, the MNIST subset) pasted on a blank canvas at random
positions and scales, with each object's ground-truth box.

A box is ``[x1, y1, x2, y2]`` in pixels, corners on pixel edges: the tight box of the pasted item's
foreground pixels (grey level above ``FOREGROUND``), so ``x2 - x1`` is the object's width in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Scene", "SceneObject", "compose_scenes", "box_iou", "FOREGROUND"]

FOREGROUND = 40  # grey level (0–255) above which a pixel belongs to an object


@dataclass(frozen=True)
class SceneObject:
    label: int  # the item's class id in its image set
    box: tuple[float, float, float, float]  # xyxy, pixel edges
    item: int  # the item's index in its image set (so a scene can be traced back)

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W) uint8, objects light on black as in the source set
    objects: tuple[SceneObject, ...]

    def count(self, label: int) -> int:
        return sum(o.label == label for o in self.objects)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy → (N, M).
    Boxes of zero area have IoU 0 with everything."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _resized(item: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(item.astype(np.float32))[None, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0, 0].round().clamp(0, 255).numpy()


def compose_scenes(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    seed: int,
    *,
    canvas: int = 100,
    objects: tuple[int, int] = (3, 6),
    classes_per_scene: tuple[int, int] = (2, 3),
    scale: tuple[float, float] = (0.7, 1.4),
    max_overlap: float = 0.0,
    tries: int = 200,
) -> list[Scene]:
    """``n`` scenes of ``objects`` items each (inclusive range), drawn from ``classes_per_scene`` classes
    per scene so that classes repeat (a head noun alone rarely names one object); each item resized to
    ``scale`` × 28 pixels and placed where its square overlaps no placed square by more than
    ``max_overlap`` (IoU). ``images`` (N, 28, 28) uint8, ``labels`` (N,) int. Deterministic in ``seed``."""
    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"images must be (N, h, w) with one label each; got {images.shape} and {labels.shape}")
    lo, hi = objects
    if not 1 <= lo <= hi:
        raise ValueError(f"objects={objects}: expected 1 <= min <= max")
    by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    if len(by_class) < classes_per_scene[0]:
        raise ValueError(f"the image set has {len(by_class)} classes; a scene draws at least {classes_per_scene[0]}")
    biggest = int(round(28 * scale[1]))
    if biggest >= canvas:
        raise ValueError(f"an item scaled by {scale[1]} ({biggest} px) does not fit a {canvas}-pixel canvas")
    rng = np.random.default_rng(seed)
    scenes = []
    while len(scenes) < n:
        k = int(rng.integers(lo, hi + 1))
        n_cls = int(rng.integers(classes_per_scene[0], min(classes_per_scene[1], len(by_class), k) + 1))
        cls = rng.choice(sorted(by_class), size=n_cls, replace=False)
        drawn = np.concatenate([cls, rng.choice(cls, size=k - n_cls)])  # every chosen class at least once
        image = np.zeros((canvas, canvas), dtype=np.uint8)
        placed: list[np.ndarray] = []
        objs = []
        for c in drawn:
            item = int(rng.choice(by_class[int(c)]))
            size = int(round(28 * rng.uniform(*scale)))
            for _ in range(tries):
                x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
                square = np.array([[x, y, x + size, y + size]], dtype=np.float64)
                if not placed or box_iou(square, np.stack(placed)).max() <= max_overlap:
                    break
            else:
                break  # no room left: draw this scene again
            pixels = _resized(images[item], size)
            fg = pixels > FOREGROUND
            if not fg.any():
                continue  # a blank item: nothing to refer to
            rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
            region = image[y : y + size, x : x + size]
            np.maximum(region, pixels.astype(np.uint8), out=region)
            placed.append(square[0])
            box = (float(x + cols[0]), float(y + rows[0]), float(x + cols[-1] + 1), float(y + rows[-1] + 1))
            objs.append(SceneObject(int(c), box, item))
        else:
            if len(objs) >= lo:
                scenes.append(Scene(image, tuple(objs)))
    return scenes
