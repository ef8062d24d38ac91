"""Patch masks for masked image modelling (iBOT): block masking, Franca's CyclicMask, inverse blocks.

* ``block``: one rectangle of about n patches (aspect ratio drawn log-uniformly), trimmed to exactly n
  in raster order — iBOT/DINOv2's block masking.
* ``cyclic_block``: the block mask circularly shifted by a random 2-D offset (``np.roll`` on the grid),
  so that masks wrap around the borders and the centre is not favoured.
* ``cyclic`` (Franca's CyclicMask as released, ``MaskingGenerator(use_inverse_block=True, roll=True)``):
  everything but a rolled block of (P − n) patches is masked — the inverse block, shifted.

Every mask has exactly ``n`` patches masked. :func:`batch_masks` draws the masks of a batch of global
crops as the authors' collate does: a share ``probability`` of the images gets a mask, their ratios
spread uniformly over [ratio_min, ratio_max].

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> m = block_mask((7, 7), 12, rng, roll=True)
>>> int(m.sum())
12
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["block_mask", "patch_mask", "batch_masks", "MASKINGS"]

MASKINGS = ("cyclic", "cyclic_block", "block", "none")


def block_mask(
    grid: tuple[int, int], n: int, rng: np.random.Generator, *, roll: bool = False, min_aspect: float = 0.3
) -> np.ndarray:
    """A (h, w) bool mask with exactly ``n`` patches of one block (trimmed in raster order), circularly
    shifted by a random offset when ``roll``."""
    height, width = grid
    n = min(n, height * width)
    mask = np.zeros(grid, dtype=bool)
    if n <= 0:
        return mask
    low = max(math.log(min_aspect), math.log(n / width**2))
    high = min(math.log(1 / min_aspect), math.log(height**2 / (n + 1e-5)))
    aspect = math.exp(rng.uniform(min(low, high), high))
    h = min(height, math.ceil(math.sqrt(n * aspect)))
    w = min(width, math.ceil(math.sqrt(n / aspect)))
    while h * w < n:  # the ceil at the border can fall short of n: widen the block
        if w < width:
            w += 1
        else:
            h += 1
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    mask[top : top + h, left : left + w] = True
    ids = np.flatnonzero(mask)[:n]  # exactly n, in raster order
    mask = np.zeros(height * width, dtype=bool)
    mask[ids] = True
    mask = mask.reshape(grid)
    if roll:
        mask = np.roll(mask, (int(rng.integers(0, height)), int(rng.integers(0, width))), axis=(0, 1))
    return mask


def patch_mask(kind: str, grid: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """A mask of ``kind`` (cyclic, cyclic_block, block, none) with ``n`` masked patches."""
    if kind == "none" or n <= 0:
        return np.zeros(grid, dtype=bool)
    if kind == "block":
        return block_mask(grid, n, rng)
    if kind == "cyclic_block":
        return block_mask(grid, n, rng, roll=True)
    if kind == "cyclic":
        total = grid[0] * grid[1]
        if n >= total:
            return np.ones(grid, dtype=bool)
        return ~block_mask(grid, total - n, rng, roll=True)
    raise ValueError(f"masking={kind!r} is not one of {', '.join(MASKINGS)}")


def batch_masks(
    kind: str,
    n_images: int,
    grid: tuple[int, int],
    ratio: tuple[float, float],
    probability: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n_images, h·w) masks: the first int(probability · n) images masked with ratios spread over
    ``ratio``, the rest unmasked, then shuffled (the authors' collate)."""
    total = grid[0] * grid[1]
    n_masked = int(n_images * probability) if kind != "none" else 0
    ratios = np.linspace(ratio[0], ratio[1], n_masked + 1)
    masks = []
    for i in range(n_masked):
        n = int(total * rng.uniform(ratios[i], ratios[i + 1]))
        masks.append(patch_mask(kind, grid, n, rng).reshape(-1))
    masks += [np.zeros(total, dtype=bool)] * (n_images - n_masked)
    out = np.stack(masks)
    return out[rng.permutation(n_images)]
