"""VaVAM's joint attention masks (valeoai/VideoActionModel, ``build_attention_mask``,
``build_inference_attention_mask``). True = may attend.

Sequence layout: the visual tokens of frames 1..T (``per_frame`` each, flattened frame by frame), then
T blocks of ``horizon`` action tokens (block t: the trajectory predicted at frame t). Visual tokens
attend causally (each to itself and every earlier token); the action tokens of block t attend to each
other (bidirectional within the block) and to the visual tokens of frames ≤ t; no visual token attends
to an action token. At inference one action block follows the context and sees all of it.
"""

from __future__ import annotations

import torch

__all__ = ["joint_attention_mask", "inference_attention_mask"]


def joint_attention_mask(frames: int, per_frame: int, horizon: int) -> torch.Tensor:
    """(S, S) bool with S = frames · (per_frame + horizon): the training mask."""
    if min(frames, per_frame, horizon) < 1:
        raise ValueError(f"frames={frames}, per_frame={per_frame}, horizon={horizon}: each must be at least 1")
    visual = frames * per_frame
    size = visual + frames * horizon
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:visual, :visual] = torch.ones(visual, visual, dtype=torch.bool).tril()
    for t in range(frames):
        block = slice(visual + t * horizon, visual + (t + 1) * horizon)
        mask[block, block] = True
        mask[block, : (t + 1) * per_frame] = True
    return mask


def inference_attention_mask(frames: int, per_frame: int, horizon: int) -> torch.Tensor:
    """(S, S) bool with S = frames · per_frame + horizon: causal context, one action block seeing all."""
    visual = frames * per_frame
    mask = torch.zeros(visual + horizon, visual + horizon, dtype=torch.bool)
    mask[:visual, :visual] = torch.ones(visual, visual, dtype=torch.bool).tril()
    mask[visual:] = True
    return mask
