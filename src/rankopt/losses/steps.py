"""Step functions that count "item j ranked above item k" from t = s_j − s_k, with their derivatives.

A rank is 1 + Σ_j step(s_j − s_k). The exact step is the Heaviside function with H(0) = 1 (a tie
counts as ranked above, as ``torch.heaviside(t, 1)`` in the original code) and passes no gradient;
the surrogates replace it where the loss needs a gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Step", "Heaviside", "Sigmoid", "SupRankStep", "SmoothHRankStep"]


class Step:
    """value(t) and derivative(t), elementwise, in the dtype of t."""

    differentiable = True

    def value(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Heaviside(Step):
    """H(t) = 1 for t >= 0, else 0. No gradient."""

    differentiable = False

    def value(self, t: torch.Tensor) -> torch.Tensor:
        return (t >= 0).to(t.dtype)

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)


@dataclass(frozen=True)
class Sigmoid(Step):
    """σ(t / τ) (Smooth-AP, Brown et al., ECCV 2020). The exponent is clamped to [-50, 50] as in the
    original code."""

    tau: float = 0.01

    def value(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((t / self.tau).clamp(-50, 50))

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        x = t / self.tau
        s = torch.sigmoid(x.clamp(-50, 50))
        return torch.where(x.abs() <= 50, s * (1 - s) / self.tau, torch.zeros_like(t))


@dataclass(frozen=True)
class SupRankStep(Step):
    """ROADMAP / SupRank surrogate of H for a less relevant item j (Ramzi et al., NeurIPS 2021):

        σ(t/τ)              t <= 0
        σ(t/τ) + start      0 < t <= δ
        ρ(t − δ) + offset   t > δ

    offset=None takes the continuous value σ(δ/τ) + start (ROADMAP PR #13); the published recipes
    pass offset=1.44, and iNaturalist start=0, offset=1. With start=0.5 the step is >= H for t != 0,
    so 1 − SupAP bounds 1 − AP from above.
    """

    tau: float = 0.01
    delta: float = 0.05
    rho: float = 100.0
    start: float = 0.5
    offset: float | None = None

    @property
    def offset_value(self) -> float:
        if self.offset is not None:
            return self.offset
        return 1 / (1 + math.exp(-min(50.0, self.delta / self.tau))) + self.start

    def value(self, t: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid((t / self.tau).clamp(-50, 50))
        linear = self.rho * (t - self.delta) + self.offset_value
        return torch.where(t <= 0, sig, torch.where(t <= self.delta, sig + self.start, linear))

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        x = t / self.tau
        s = torch.sigmoid(x.clamp(-50, 50))
        dsig = torch.where(x.abs() <= 50, s * (1 - s) / self.tau, torch.zeros_like(t))
        return torch.where(t <= self.delta, dsig, torch.full_like(t, self.rho))


@dataclass(frozen=True)
class SmoothHRankStep(Step):
    """HAPPIER's optional smooth step for more relevant items in the H-rank (a lower bound of H):
    leak·t for t <= 0, min(β·t + γ, 1) for t > 0; γ > 1 falls back to Heaviside."""

    leak: float = 10.0
    beta: float = 25.0
    gamma: float = 0.5

    def value(self, t: torch.Tensor) -> torch.Tensor:
        if self.gamma > 1:
            return (t >= 0).to(t.dtype)
        return torch.where(t <= 0, self.leak * t, (self.beta * t + self.gamma).clamp(max=1.0))

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        if self.gamma > 1:
            return torch.zeros_like(t)
        inner = (t > 0) & (self.beta * t + self.gamma < 1)
        return torch.where(t <= 0, torch.full_like(t, self.leak), torch.where(inner, torch.full_like(t, self.beta), torch.zeros_like(t)))
