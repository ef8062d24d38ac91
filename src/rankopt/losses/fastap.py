"""FastAP (Cakir et al., CVPR 2019): AP from soft histograms of distances.

Squared L2 distances of unit vectors, d = 2 − 2s ∈ [0, 4], are soft-assigned to num_bins+1 centres
c_z = 4z/num_bins with triangular kernels max(0, 1 − |d − c_z|/Δ), Δ = 4/num_bins. Per query, with
h⁺ / h the positive / all histograms and H⁺ / H their cumulative sums:

    FastAP_i = (1/|P_i|) Σ_z h⁺_z H⁺_z / H_z,   loss = mean over queries with positives of 1 − FastAP_i

As in the original (and pytorch-metric-learning), the query's own entry is excluded in-batch
(include_self=False by default); unlike them, a reference set (memory bank) is supported.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss, mean_over_queries
from rankopt.losses.batch import RankBatch

__all__ = ["FastAP"]


class FastAP(RankingLoss):
    """1 − FastAP over num_bins distance bins. Embeddings not unit-norm are L2-normalised first
    (normalize=False: raw dot products)."""

    def __init__(self, num_bins: int = 10, include_self: bool = False, normalize: bool = True) -> None:
        super().__init__(
            include_self, normalize=normalize
        )  # histograms of (B, N) tensors: no rank kernel, no memory budget
        if num_bins < 1:
            raise ValueError(f"FastAP: num_bins must be >= 1; got {num_bins}")
        self.num_bins = num_bins

    def compute(self, batch: RankBatch) -> torch.Tensor:
        d = 2 - 2 * batch.scores  # (B, N)
        ranked = batch.levels >= 0
        pos = (batch.levels >= batch.n_levels) & ranked
        width = 4.0 / self.num_bins
        h_pos, h_all = [], []
        for z in range(self.num_bins + 1):  # one (B, N) tensor per bin, never (B, N, bins)
            w = (1 - (d - z * width).abs() / width).clamp_min(0) * ranked
            h_pos.append((w * pos).sum(dim=1))
            h_all.append(w.sum(dim=1))
        hp, ha = torch.stack(h_pos, dim=1), torch.stack(h_all, dim=1)  # (B, bins+1)
        cum_p, cum_a = hp.cumsum(dim=1), ha.cumsum(dim=1)
        n_pos = pos.sum(dim=1)
        ratio = torch.where(cum_a > 0, hp * cum_p / cum_a.clamp_min(1e-12), torch.zeros_like(hp))
        fastap = ratio.sum(dim=1) / n_pos.clamp_min(1)
        return mean_over_queries(1 - fastap, n_pos > 0)
