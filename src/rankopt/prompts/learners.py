"""Prompt learners on frozen towers (GalLoP: Lafon, Ramzi, Rambour, Audebert, Thome, ECCV 2024; code
MarcLafon/gallop), as functions and one module.

A prompt is ``n_ctx`` learnable context vectors in the text tower's token-embedding space standing for
"a photo of a", followed by the class name's tokens and a period; its text embedding, mapped into the
image side (:class:`~rankopt.prompts.towers.Alignment`), scores an image by cosine similarity.

* **Global prompts** (``n_global``) score the global image feature: logits (B, P_g, C).
* **Local prompts** (``n_local``) score every local feature, after a learnable linear projection
  initialised to the identity; for local prompt i, per class, the top-k_i local scores are averaged
  (:func:`topk_mean`, k growing across prompts: the sparse multi-scale aggregation): logits (B, P_l, C).
* **Prompt dropout** (:func:`prompt_dropout`): in training each sample keeps max(n − ⌊p·n⌋, 1) of the
  global prompts, drawn uniformly without replacement, and averages their logits.
* **Loss**: cross-entropy of each local prompt's logits + cross-entropy of the dropped-out global
  average, all at the logit scale (CLIP's 100).
* **Prediction**: softmax of scale × (mean global logits + mean local logits) / 2.
* **GL-MCM** (:func:`gl_mcm`): −max_c softmax_c(mean global cosine / T) − max over local features and
  classes of softmax_c(mean local cosine / T), T = 1; **MCM** is its first term.

>>> import torch
>>> cos = torch.tensor([[[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]]])   # (B=1, L=3 positions, C=2 classes)
>>> topk_mean(cos, 2)                                             # per class, the mean of its top 2
tensor([[0.4000, 0.6500]])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rankopt.prompts.towers import TEMPLATE, Alignment, TextTower

__all__ = ["topk_mean", "prompt_dropout", "gl_mcm", "mcm", "gallop_loss", "predict", "PromptLearner", "n_kept"]


def topk_mean(cos: torch.Tensor, k: int) -> torch.Tensor:
    """(..., L, C) local scores → (..., C): per class, the mean of its ``k`` largest over the L positions."""
    if not 1 <= k <= cos.shape[-2]:
        raise ValueError(f"k={k} must be between 1 and the {cos.shape[-2]} local features")
    return cos.topk(k, dim=-2).values.mean(dim=-2)


def n_kept(n: int, p: float) -> int:
    """How many of ``n`` prompts a sample keeps under dropout ``p``: max(n − ⌊p·n⌋, 1)."""
    return max(n - math.floor(p * n), 1)


def prompt_dropout(
    logits: torch.Tensor, p: float, generator: torch.Generator | None = None, replacement: bool = False
) -> torch.Tensor:
    """(B, P, C) → (B, C): each sample averages its own uniform draw of ``n_kept(P, p)`` prompts — distinct
    prompts (the paper's "keep 25 %"), or, with ``replacement``, drawn with replacement as the authors'
    code does (``torch.randint``: a prompt may count twice)."""
    b, n, _ = logits.shape
    keep = n_kept(n, p)
    if keep == n and not replacement:
        return logits.mean(dim=1)
    if replacement:
        order = torch.randint(n, (b, keep), generator=generator).to(logits.device)
    else:
        order = torch.rand(b, n, generator=generator).argsort(dim=1)[:, :keep].to(logits.device)  # (B, keep)
    chosen = torch.gather(logits, 1, order.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    return chosen.mean(dim=1)


def mcm(global_cos: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MCM outlier score (larger = more OOD) from mean global cosines (B, C): −max_c softmax(cos / T)."""
    return -torch.softmax(global_cos / temperature, dim=-1).amax(dim=-1)


def gl_mcm(global_cos: torch.Tensor, local_cos: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """GL-MCM (larger = more OOD): MCM of the global cosines (B, C) plus −max over positions and classes
    of softmax_c of the local cosines (B, L, C)."""
    local = torch.softmax(local_cos / temperature, dim=-1).amax(dim=(-2, -1))
    return mcm(global_cos, temperature) - local


def gallop_loss(
    global_cos: torch.Tensor,
    local_scores: torch.Tensor | None,
    targets: torch.Tensor,
    scale: float = 100.0,
    dropout: float = 0.75,
    generator: torch.Generator | None = None,
    replacement: bool = False,
) -> torch.Tensor:
    """GalLoP's loss: cross-entropy of the dropped-out global average (B, P_g, C) plus cross-entropy of
    every local prompt's aggregated scores (B, P_l, C), averaged over samples and local prompts."""
    kept = prompt_dropout(global_cos, dropout, generator, replacement)
    loss = nn.functional.cross_entropy(scale * kept, targets)
    if local_scores is not None:
        b, n, c = local_scores.shape
        loss = loss + nn.functional.cross_entropy(scale * local_scores.reshape(b * n, c), targets.repeat_interleave(n))
    return loss


def predict(global_cos: torch.Tensor, local_scores: torch.Tensor | None, scale: float = 100.0) -> torch.Tensor:
    """Class probabilities (B, C): softmax of scale × the mean over prompts of the global cosines,
    averaged with the mean over local prompts of their aggregated scores where there are local prompts."""
    logits = global_cos.mean(dim=1)
    if local_scores is not None:
        logits = (logits + local_scores.mean(dim=1)) / 2
    return torch.softmax(scale * logits, dim=-1)


def _cosines(global_feat, local_feat, global_rows, local_rows, projection):
    g = nn.functional.normalize(global_feat, dim=-1)
    global_cos = torch.einsum("bd,pcd->bpc", g, global_rows)
    if not len(local_rows) or local_feat is None:
        return global_cos, None
    loc = nn.functional.normalize(projection(local_feat) if projection is not None else local_feat, dim=-1)
    return global_cos, torch.einsum("bld,pcd->bplc", loc, local_rows)


class PromptLearner(nn.Module):
    """Learnable global and local prompts for ``class_names`` on frozen towers (see the module docstring).

    Trainable: the context vectors (``n_global + n_local`` prompts, each initialised from the template's
    token embeddings) and the local projection (the identity at first); the text tower stays out of the
    module's state (it is frozen and large: a checkpoint holds only what trains, and the alignment)."""

    def __init__(
        self,
        text: TextTower,
        alignment: Alignment,
        class_names: list[str],
        n_global: int = 4,
        n_local: int = 4,
        local_k: tuple[int, ...] = (1, 2, 4, 8),
        feature_dim: int = 1281,
    ) -> None:
        super().__init__()
        if n_global < 1:
            raise ValueError(f"n_global={n_global}: at least one global prompt")
        if n_local and len(local_k) != n_local:
            raise ValueError(f"local_k={list(local_k)} must give one k per local prompt ({n_local})")
        object.__setattr__(self, "text", text)  # not a submodule: never saved, never trained
        for p in text.parameters():
            p.requires_grad_(False)
        self.alignment = alignment
        for p in alignment.parameters():
            p.requires_grad_(False)
        self.n_global, self.n_local, self.local_k = n_global, n_local, tuple(local_k)
        with torch.no_grad():
            template = text.embeddings(torch.tensor(text.token_ids([TEMPLATE])[0])).clone()  # (n_ctx, width)
            names = [
                text.embeddings(torch.tensor(ids)).clone() for ids in text.token_ids([f"{c}." for c in class_names])
            ]
        self.n_ctx, self.n_classes = len(template), len(class_names)
        self.register_buffer("template", template, persistent=False)
        self.class_tokens = names  # (T_c, width) per class: the name and its period, never trained
        self.context = nn.Parameter(template.unsqueeze(0).repeat(n_global + n_local, 1, 1))
        # the local features' projection, the identity at first: GalLoP's local scores at step 0 are zero-shot's
        self.local_proj = nn.Linear(feature_dim, feature_dim, bias=False)
        with torch.no_grad():
            self.local_proj.weight.copy_(torch.eye(feature_dim))
        if not n_local:
            self.local_proj.weight.requires_grad_(False)

    def _rows(self, contexts: torch.Tensor) -> torch.Tensor:
        """(P, n_ctx, width) contexts → (P, C, D) L2-normalised class rows on the image side."""
        pieces = [torch.cat([ctx, name.to(ctx.device)]) for ctx in contexts for name in self.class_tokens]
        rows = self.alignment(self.text.encode_embeddings(pieces))
        return nn.functional.normalize(rows, dim=-1).reshape(len(contexts), self.n_classes, -1)

    def prompt_rows(self) -> torch.Tensor:
        """(P_g + P_l, C, D): the class rows of every learned prompt."""
        return self._rows(self.context)

    @torch.no_grad()
    def template_rows(self) -> torch.Tensor:
        """(1, C, D): the class rows of the template "a photo of a {class}." (zero-shot)."""
        return self._rows(self.template.unsqueeze(0))

    def cosines(
        self, global_feat: torch.Tensor, local_feat: torch.Tensor | None, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(global cosines (B, P_g, C), local cosines (B, P_l, L, C) or None) of the learned prompts
        (``rows``: their :meth:`prompt_rows`, when already computed)."""
        rows = self.prompt_rows() if rows is None else rows
        return _cosines(global_feat, local_feat, rows[: self.n_global], rows[self.n_global :], self.local_proj)

    def template_cosines(
        self, global_feat: torch.Tensor, local_feat: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-shot: the template's cosines with the global (B, 1, C) and the unprojected local features
        (B, 1, L, C)."""
        rows = self.template_rows() if rows is None else rows
        return _cosines(global_feat, local_feat, rows, rows, None)

    def local_scores(self, local_cos: torch.Tensor, ks: tuple[int, ...] | None = None) -> torch.Tensor:
        """(B, P_l, L, C) → (B, P_l, C): local prompt i aggregates its top-k_i positions per class."""
        ks = self.local_k if ks is None else ks
        return torch.stack([topk_mean(local_cos[:, i], k) for i, k in enumerate(ks)], dim=1)
