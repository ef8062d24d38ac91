"""The authors' GalLoP formulas (MarcLafon/gallop: vlprompt/tools/topk_reduce.py, global_local_loss.py,
vlprompt/gallop.py compute_gl_scores / create_prediction_scores), ported for parity tests. Their
layouts: global logits (B, C, P_g), local logits (B, L, C, P_l)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def topk_reduce(local_logits: torch.Tensor, topk: list[int]) -> torch.Tensor:
    """(B, L, C, P_l) → (B, C, P_l): prompt i averages its top-k_i patches (one k for all, or one each)."""
    _, n_patches, _, n_prompts = local_logits.shape
    assert len(topk) in (1, n_prompts)
    top = local_logits.topk(dim=1, k=min(max(topk), n_patches))[0]
    if len(topk) == 1:
        return top.mean(dim=1)
    return torch.stack([top[:, :k, :, i].mean(dim=1) for i, k in enumerate(topk)], dim=-1)


def global_local_loss(global_logits, local_logits, targets, logit_scale, topk, dropout_p=0.75):
    """GlobalLocalLoss.forward: local CE over every local prompt, plus CE of the global prompts kept by
    their dropout (drawn with torch.randint from the global RNG: with replacement)."""
    local = topk_reduce(local_logits, topk)
    local_loss = F.cross_entropy(logit_scale * local, targets.unsqueeze(-1).expand(-1, local.size(-1)))
    n = global_logits.size(-1)
    keep = max(n - int(dropout_p * n), 1)
    index = torch.randint(n, (global_logits.size(0), 1, keep)).expand(-1, global_logits.size(1), -1)
    kept = global_logits.gather(-1, index).mean(-1)
    return F.cross_entropy(logit_scale * kept, targets) + local_loss


def gl_mcm_scores(global_logits, local_logits, temperature=1.0) -> np.ndarray:
    """compute_gl_scores: −max softmax of the prompt-mean global cosines − max over patches and classes
    of the softmax of the prompt-mean local cosines."""
    g = torch.softmax(global_logits.mean(dim=-1) / temperature, dim=-1).numpy()
    scores = -np.max(g, axis=-1)
    loc = torch.softmax(local_logits.mean(dim=-1) / temperature, dim=-1).numpy()
    return scores - np.max(loc, axis=(1, 2))


def prediction(global_logits, local_logits, logit_scale, topk) -> torch.Tensor:
    """create_prediction_scores' gl_probs."""
    g = global_logits.mean(dim=-1)
    loc = topk_reduce(local_logits, topk).mean(dim=-1)
    return torch.softmax(logit_scale * (g + loc) / 2, dim=-1)
