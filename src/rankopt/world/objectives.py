"""What VaViM's and VaVAM's training steps compute, and how VaVAM samples trajectories.

* :func:`next_token_loss` — VaViM: cross-entropy of each visual token given every earlier one.
* :func:`flow_matching_step` — VaVAM: waypoints scaled by 1/``scale`` are x1, noise x0 ~ N(0, I), one
  flow time per (window, frame) from the time law, the joint model's velocity at ψ_t regressed on
  dψ/dt (``rankopt.world.flow``).
* :func:`sample_trajectories` — K trajectories for the last frame of each context: Euler integration
  of the last action block's velocity from fresh noise, the visual keys and values computed once (the
  authors' inference: one action block after the context, seeing all of it). Under the training mask
  the last block sees exactly that too, so both give the same velocity (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rankopt.world.flow import euler_sample, flow_matching_loss, flow_path, sample_flow_time
from rankopt.world.models import JointModel, VideoGPT

__all__ = ["next_token_loss", "flow_matching_step", "sample_trajectories"]


def next_token_loss(gpt: VideoGPT, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of tokens 2..S of the flattened windows (B, T, h, w)."""
    logits = gpt(tokens)  # (B, S, V)
    flat = tokens.reshape(len(tokens), -1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), flat[:, 1:].reshape(-1))


def flow_matching_step(
    model: JointModel,
    tokens: torch.Tensor,
    commands: torch.Tensor,
    waypoints: torch.Tensor,
    *,
    scale: float,
    sig_min: float = 1e-3,
    law: str = "beta",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """VaVAM's loss on windows: tokens (B, T, h, w), commands (B, T), waypoints (B, T, H, 2) in metres."""
    b, t = commands.shape
    x1 = waypoints / scale
    x0 = torch.randn(x1.shape, generator=generator).to(x1)
    time = sample_flow_time(b * t, law, sig_min, generator).reshape(b, t).to(x1)
    velocity = model(tokens, flow_path(x0, x1, time, sig_min), commands, time)
    return flow_matching_loss(velocity, x0, x1, sig_min)


@torch.no_grad()
def sample_trajectories(
    model: JointModel,
    tokens: torch.Tensor,
    commands: torch.Tensor,
    k: int,
    *,
    scale: float,
    steps: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, k, H, 2) trajectories in metres for the last frame of each window: the visual keys and
    values computed once, then Euler integration of the last action block alone."""
    b = len(tokens)
    horizon = model.expert.horizon
    cache = [(kk.repeat_interleave(k, 0), vv.repeat_interleave(k, 0)) for kk, vv in model.visual_cache(tokens)]
    command = commands[:, -1].repeat_interleave(k, 0)  # every window k times: one sample per copy

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.last_block_velocity(cache, x, command, t)

    noise = torch.randn(b * k, horizon, 2, generator=generator).to(tokens.device)
    return (euler_sample(velocity, noise, steps) * scale).reshape(b, k, horizon, 2)
