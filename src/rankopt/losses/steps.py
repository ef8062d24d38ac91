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


def _check_tau(tau: float) -> None:
    if not tau > 0:  # also refuses NaN
        raise ValueError(f"tau={tau} must be positive: it is the temperature of the sigmoid step")


@dataclass(frozen=True)
class Sigmoid(Step):
    """σ(t / τ) (Smooth-AP, Brown et al., ECCV 2020). The original code clamps t/τ to [-50, 50]; we
    do not (σ(-50) ≈ 2e-22 either way, and torch.sigmoid is stable for any input)."""

    tau: float = 0.01

    def __post_init__(self) -> None:
        _check_tau(self.tau)

    def value(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(t * (1 / self.tau))

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(t * (1 / self.tau))
        return (s - s * s).mul_(1 / self.tau)


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

    def __post_init__(self) -> None:
        _check_tau(self.tau)

    @property
    def offset_value(self) -> float:
        if self.offset is not None:
            return self.offset
        return 1 / (1 + math.exp(-min(50.0, self.delta / self.tau))) + self.start

    def value(self, t: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid(t * (1 / self.tau))
        if self.start:
            sig = sig.add_((t > 0).to(t.dtype), alpha=self.start)
        linear = t * self.rho + (self.offset_value - self.rho * self.delta)
        return torch.where(t > self.delta, linear, sig)

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(t * (1 / self.tau))
        dsig = (s - s * s).mul_(1 / self.tau)
        return dsig.masked_fill_(t > self.delta, self.rho)


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
        return torch.where(
            t <= 0,
            torch.full_like(t, self.leak),
            torch.where(inner, torch.full_like(t, self.beta), torch.zeros_like(t)),
        )
