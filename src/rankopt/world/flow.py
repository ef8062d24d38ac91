"""Flow matching of VaVAM's action expert (valeoai/VideoActionModel, ``VideoActionModel.psi_t``,
``forward``, ``forward_inference``; ``ActionLearning.noise_schedule``), written as functions of tensors.

Path from noise x0 ~ N(0, I) at t = 0 to the scaled trajectory x1 at t = 1 (σ = ``sig_min``)::

    ψ_t = (1 − (1 − σ) t) x0 + t x1            velocity  dψ/dt = x1 − (1 − σ) x0

The network v(ψ_t, t, context) regresses that velocity (mean squared error). Flow time: π0's law,
t = (1 − σ)(1 − z) with z ~ Beta(1.5, 1) (more weight on small t, the noisy end), or stratified
uniform. Sampling: forward Euler from fresh noise in ``steps`` equal steps of t from 0 to 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["flow_path", "flow_velocity", "flow_matching_loss", "sample_flow_time", "euler_sample"]


def flow_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sig_min: float = 1e-3) -> torch.Tensor:
    """ψ_t; ``t`` broadcast over the trailing dimensions of x (shape (B,) or (B, T))."""
    t = t.reshape(*t.shape, *([1] * (x0.ndim - t.ndim)))
    return (1 - (1 - sig_min) * t) * x0 + t * x1


def flow_velocity(x0: torch.Tensor, x1: torch.Tensor, sig_min: float = 1e-3) -> torch.Tensor:
    """dψ_t/dt, the regression target (independent of t on this linear path)."""
    return x1 - (1 - sig_min) * x0


def flow_matching_loss(velocity: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, sig_min: float = 1e-3):
    """Mean squared error between the predicted and the path's velocity, over every element."""
    return ((velocity - flow_velocity(x0, x1, sig_min)) ** 2).mean()


def sample_flow_time(
    n: int, law: str = "beta", sig_min: float = 1e-3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` flow times in [0, 1). beta: (1 − σ)(1 − z), z ~ Beta(1.5, 1) (π0, the authors' setting);
    uniform: stratified, (u + k/n) mod (1 − 1e-5) for k = 0..n−1 and one u ~ U(0, 1)."""
    if law == "beta":
        # Beta(1.5, 1) by inversion: its CDF is z^1.5, so z = u^(1/1.5) (the generator makes it seeded)
        u = torch.rand(n, generator=generator)
        return (1 - sig_min) * (1 - u.pow(1 / 1.5))
    if law == "uniform":
        u = torch.rand(1, generator=generator)
        return (u + torch.arange(n) / n) % (1 - 1e-5)
    raise ValueError(f"unknown flow time law {law!r}; known: beta, uniform")


def euler_sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor, steps: int = 10
) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from x(0) = ``noise`` to t = 1 in ``steps`` forward Euler steps
    (the authors': 10); ``t`` is passed as a (B,) tensor."""
    if steps < 1:
        raise ValueError(f"steps={steps}: Euler sampling needs at least one step")
    x = noise.clone()
    dt = 1.0 / steps
    for k in range(steps):
        t = torch.full((x.shape[0],), k * dt, dtype=x.dtype, device=x.device)
        x = x + dt * velocity(x, t)
    return x
