"""Weighted sums of losses, and the two published combinations.

ROADMAP (Ramzi et al., NeurIPS 2021) = w₁·SupAP + w₂·Calibration; the ROADMAP code uses 1.0 / 1.0, the
SupRank code 0.9 / 0.1 (``weights=(0.9, 0.1)``).
HAPPIER (Ramzi et al., ECCV 2022) = 0.9·HAP + 0.1·NormSoftmax (HAPPIER_F: 0.5 / 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rankopt.losses.average_precision import SupAP
from rankopt.losses.base import Loss
from rankopt.losses.calibration import Calibration
from rankopt.losses.hierarchical import HAP
from rankopt.losses.proxy import NormSoftmax

__all__ = ["WeightedLoss", "ROADMAP", "HAPPIER"]


class WeightedLoss(Loss):
    """Σ_c w_c · loss_c(embeddings, labels, ref_embeddings, ref_labels)."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if len(losses) != len(weights) or not losses:
            raise ValueError(f"WeightedLoss: {len(losses)} losses but {len(weights)} weights")
        self.losses = nn.ModuleList(losses)
        self.weights = tuple(float(w) for w in weights)

    @property
    def hierarchical(self) -> bool:
        """Whether (B, L) labels can be given: only when every part accepts them."""
        return all(loss.hierarchical for loss in self.losses)

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels) -> torch.Tensor:
        total = 0.0
        for w, loss in zip(self.weights, self.losses):
            if w:
                total = total + w * loss(embeddings, labels, ref_embeddings, ref_labels)
        return total

    def proxy_parameters(self) -> list[nn.Parameter]:
        return [p for loss in self.losses for p in loss.proxy_parameters()]


class ROADMAP(WeightedLoss):
    """SupAP + Calibration. Embeddings not unit-norm are L2-normalised first (normalize=False: raw dot products)."""

    def __init__(
        self,
        tau: float = 0.01,
        delta: float = 0.05,
        rho: float = 100.0,
        start: float = 0.5,
        offset: float | None = None,
        pos_margin: float = 0.9,
        neg_margin: float = 0.6,
        weights: Sequence[float] = (1.0, 1.0),
        include_self: bool = True,
        bin_width: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            [
                SupAP(
                    tau, delta, rho, start, offset, include_self=include_self, bin_width=bin_width, normalize=normalize
                ),
                Calibration(pos_margin, neg_margin, normalize=normalize),
            ],
            weights,
        )


class HAPPIER(WeightedLoss):
    """HAP + NormSoftmax. Embeddings not unit-norm are L2-normalised first (normalize=False: raw dot products).
    (NormSoftmax always normalises.)"""

    needs_classes = True

    def __init__(
        self,
        num_classes: int,
        dim: int,
        tau: float = 0.01,
        delta: float = 0.05,
        rho: float = 100.0,
        start: float = 0.5,
        offset: float | None = None,
        alpha: float = 1.0,
        temperature: float = 0.05,
        weights: Sequence[float] = (0.9, 0.1),
        include_self: bool = True,
        bin_width: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            [
                HAP(
                    tau,
                    delta,
                    rho,
                    start,
                    offset,
                    alpha,
                    include_self=include_self,
                    bin_width=bin_width,
                    normalize=normalize,
                ),
                NormSoftmax(num_classes, dim, temperature),
            ],
            weights,
        )
