"""RASA (Removal of Absolute Spatial Attributes; Franca's post-hoc step) and the position probe that
measures what it removes.

Patch features of a ViT carry where the patch is. RASA, iterated ``iterations`` times: fit a linear
regressor from the (current) patch features to the patch's normalised 2-D coordinates (row, column in
[0, 1]), take its two weight vectors u_r, u_c, orthonormalise them (Gram–Schmidt: u_r/‖u_r‖, then u_c
minus its u_r component, normalised), and project both directions out of every patch feature:
z ← z − ⟨z, u_r⟩u_r − ⟨z, u_c⟩u_c. The authors train the regressor (a bias-free linear layer with a
sigmoid, MSE) by gradient descent; here each is fitted in closed form by least squares on centred
features — the same linear subspace on linear position information, without an optimiser to tune.

``position_r2``: the coefficient of determination of a least-squares linear probe (with intercept)
from patch features to coordinates, fitted on one set and scored on another — 1 when position is
linearly readable, 0 when it is not.
"""

from __future__ import annotations

import torch

__all__ = ["patch_coordinates", "fit_rasa", "apply_rasa", "position_r2", "decompose"]


def patch_coordinates(grid: tuple[int, int]) -> torch.Tensor:
    """(h·w, 2) normalised (row, column) of each patch in raster order, in [0, 1]."""
    h, w = grid
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w) / max(1, h - 1)
    cols = torch.arange(w, dtype=torch.float64).repeat(h) / max(1, w - 1)
    return torch.stack([rows, cols], dim=1)


def decompose(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the part of x (..., D) in the plane of weight's two rows (2, D), x without it), by Gram–Schmidt."""
    vr = weight[0] / weight[0].norm()
    vc = weight[1] - (weight[1] @ vr) * vr
    vc = vc / vc.norm()
    pos = (x @ vr).unsqueeze(-1) * vr + (x @ vc).unsqueeze(-1) * vc
    return pos, x - pos


def _probe(features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares linear map with intercept: (weight (D, 2), bias (2,)), a small ridge for rank safety."""
    mean_x, mean_y = features.mean(0), targets.mean(0)
    x, y = features - mean_x, targets - mean_y
    gram = x.T @ x + 1e-8 * torch.eye(x.shape[1], dtype=x.dtype) * x.pow(2).sum() / max(1, x.shape[1])
    weight = torch.linalg.solve(gram, x.T @ y)
    return weight, mean_y - mean_x @ weight


def fit_rasa(patches: torch.Tensor, grid: tuple[int, int], iterations: int = 5) -> list[torch.Tensor]:
    """The (2, D) position directions of each RASA iteration, fitted on patch features (N, P, D) of
    images whose patches form ``grid``."""
    x = patches.reshape(-1, patches.shape[-1]).double()
    coords = patch_coordinates(grid).repeat(len(patches), 1)
    directions = []
    for _ in range(iterations):
        weight, _ = _probe(x, coords)
        directions.append(weight.T.clone())
        _, x = decompose(x, weight.T)
    return directions


def apply_rasa(patches: torch.Tensor, directions: list[torch.Tensor]) -> torch.Tensor:
    """Patch features with every fitted position plane projected out, in order."""
    x = patches.double()
    for weight in directions:
        _, x = decompose(x, weight)
    return x.to(patches.dtype)


def position_r2(train: torch.Tensor, test: torch.Tensor, grid: tuple[int, int]) -> float:
    """R² on ``test`` patches (N, P, D) of a linear position probe fitted on ``train`` patches."""
    xtr = train.reshape(-1, train.shape[-1]).double()
    xte = test.reshape(-1, test.shape[-1]).double()
    weight, bias = _probe(xtr, patch_coordinates(grid).repeat(len(train), 1))
    target = patch_coordinates(grid).repeat(len(test), 1)
    residual = (xte @ weight + bias - target).pow(2).sum()
    total = (target - target.mean(0)).pow(2).sum()
    return float(1 - residual / total)
