"""Rank losses for recommendation, on user × candidate-item scores, through rankopt.losses' kernel.

For a batch of users, each with a set of positive items and sampled negatives (the candidates), the
scores s_uj = ⟨e_u, e_j⟩ form a (B, C) matrix and the relevance a (B, C) level matrix (1 = positive);
the rank losses of rankopt.losses then run on that block as they do on image batches: no second
implementation.

``ITEMLoss`` (ITEM; reference/item-recsys.md §1.2): rank(p) = 1 + Σ_{j ≠ p in candidates} σ((s_j − s_p)/τ),
DCG = Σ_p 1/log2(1 + rank(p)), loss = 1 − DCG / IDCG (IDCG with every positive on top). With ``k``
the NDCG@k surrogate: each term is weighted by a smooth top-k indicator σ((k + ½ − rank(p)) / T)
(``k_temperature`` T) and IDCG counts the first min(k, |P|) ideal positions; as τ and T go to 0 it
is exactly 1 − NDCG@k. Whether ITEM truncates at k is unverified: ``k=None`` (default) is full NDCG.
``normalize=True`` L2-normalises embeddings first so τ acts on cosine scores (SupRank's τ = 0.01
setting); with raw LightGCN dot products tune τ instead.

``SampledSoftmaxLoss`` (the strong baseline of Wu et al., "On the Effectiveness of Sampled Softmax Loss
for Item Recommendation", TOIS 2023): for each positive p of a user, −log of the softmax of s_p/τ against
the user's sampled negatives, on cosine scores; averaged over the positives. It uses the same candidate
blocks, so every loss sees the same negatives.

``CosineContrastiveLoss`` (CCL, SimpleX: Mao et al., CIKM 2021, a strong simple baseline that beats BPR
on LightGCN's benchmarks in its paper): for each positive p of a user u with negatives N,
(1 − cos(u, p)) + w/|N| · Σ_{j∈N} max(0, cos(u, j) − m), averaged over the (user, positive) pairs;
margin m, negative weight w.

Every loss here takes (user_emb (B, d), item_emb (n_items, d), candidates, levels): candidates (B, C)
item indices with levels (B, C), or ``None`` for the whole catalogue with levels (B, n_items) (the
user's other known items at −1) — exact ranking against every item, through the same kernel, whose
pair sums run in blocks under a memory budget.
"""

from __future__ import annotations

import torch
from torch import nn

from rankopt.losses import SupNDCG, SupRecall
from rankopt.losses.batch import RankBatch
from rankopt.losses.rank_kernel import pair_sums
from rankopt.losses.steps import Sigmoid
from rankopt.metrics.graded import ideal_dcg
from rankopt.registry import Registry

__all__ = [
    "candidate_batch",
    "BPRLoss",
    "ITEMLoss",
    "SampledSoftmaxLoss",
    "CandidateRankLoss",
    "CosineContrastiveLoss",
    "RECSYS_LOSSES",
    "create_recsys_loss",
]

# Every loss of `rankopt recsys train` by the name users type (loss.name). Each entry's factory takes the
# run's loss section (RecLossConfig) and returns the module; metadata: ``candidate`` (trained on per-user
# candidate blocks; False: BPR triples), ``tuned`` (what an unset setting becomes: the values selected by
# ``benchmarks/recsys_tuning.py tune`` on ML-100k's validation split with LightGCN, so that a first run with
# only ``--loss`` is not handicapped; ``tau`` per score type, as a temperature acts on the scores' scale;
# supndcg and suprecall were not in the tuned comparison and take ITEM's candidate settings) and ``doc``.
RECSYS_LOSSES = Registry("recommendation loss")


def create_recsys_loss(loss_cfg) -> nn.Module:
    """The module of ``loss_cfg.name`` built from the (validated, resolved) loss section."""
    return RECSYS_LOSSES.entry(loss_cfg.name).factory(loss_cfg)


def candidate_batch(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    candidates: torch.Tensor | None,
    positive: torch.Tensor,
    normalize: bool = True,
) -> RankBatch:
    """user_emb (B, d), item_emb (n_items, d), candidates (B, C) item indices, or None for every item;
    positive (B, C) or (B, n_items): bool, or int levels with 1 = positive, 0 = negative, -1 = ignored."""
    if normalize:
        user_emb = nn.functional.normalize(user_emb, dim=1)
        item_emb = nn.functional.normalize(item_emb, dim=1)
    if candidates is None:
        if positive.shape != (len(user_emb), len(item_emb)):
            raise ValueError(
                f"levels over the whole catalogue must be (users, items) = {(len(user_emb), len(item_emb))}; "
                f"got {tuple(positive.shape)}"
            )
        scores = user_emb @ item_emb.T  # (B, n_items)
    else:
        scores = torch.bmm(item_emb[candidates], user_emb.unsqueeze(2)).squeeze(2)  # (B, C)
    return RankBatch(scores, positive.to(torch.int64), n_levels=1)


class ITEMLoss(nn.Module):
    def __init__(
        self, tau: float = 0.01, k: int | None = None, normalize: bool = True, k_temperature: float = 0.1
    ) -> None:
        super().__init__()
        if k is not None and k < 1:
            raise ValueError(f"k={k} must be at least 1 (or None for the full list)")
        if k_temperature <= 0:
            raise ValueError(f"k_temperature={k_temperature} must be positive")
        self.step, self.k, self.normalize, self.k_temperature = Sigmoid(tau), k, normalize, k_temperature

    def forward(self, user_emb, item_emb, candidates, positive) -> torch.Tensor:
        batch = candidate_batch(user_emb, item_emb, candidates, positive, self.normalize)
        items, lv, valid = batch.ranked_items(1)
        rank = 1 + pair_sums(batch.scores, items, lv, valid, self.step, "all", cand_levels=batch.levels)
        gain = valid / torch.log2(1 + rank)
        if self.k is not None:  # only the top k count, as in NDCG@k (the ideal DCG is cut at k too)
            gain = gain * torch.sigmoid((self.k + 0.5 - rank) / self.k_temperature)
        dcg = gain.sum(dim=1)
        n_pos = valid.sum(dim=1)
        counts = torch.stack([torch.zeros_like(n_pos), n_pos], dim=1).to(torch.int64)  # binary gains: level 1
        ideal = ideal_dcg(counts, self.k, dtype=rank.dtype)
        has = n_pos > 0
        ndcg = dcg / ideal.clamp_min(1e-12)
        return (1 - ndcg[has]).mean() if bool(has.any()) else dcg.sum() * 0.0


class CandidateRankLoss(nn.Module):
    """Any rankopt rank loss (SupNDCG, SupRecall, SupAP, ...) on the user × candidate block."""

    def __init__(self, loss: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.loss, self.normalize = loss, normalize

    def forward(self, user_emb, item_emb, candidates, positive) -> torch.Tensor:
        return self.loss.compute(candidate_batch(user_emb, item_emb, candidates, positive, self.normalize))


class SampledSoftmaxLoss(nn.Module):
    def __init__(self, tau: float = 0.1, normalize: bool = True) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau={tau} must be positive")
        self.tau, self.normalize = tau, normalize

    def forward(self, user_emb, item_emb, candidates, positive) -> torch.Tensor:
        batch = candidate_batch(user_emb, item_emb, candidates, positive, self.normalize)
        logits = batch.scores / self.tau
        pos, neg = batch.levels == 1, batch.levels == 0
        # log Σ_negatives exp, then per positive: log(e^p + Σneg) − p = softplus(logΣneg − p)
        neg_lse = torch.logsumexp(logits.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)
        per_pos = nn.functional.softplus(neg_lse - logits)
        n_pos = pos.sum()
        if int(n_pos) == 0:
            return logits.sum() * 0.0
        return per_pos[pos].sum() / n_pos


class CosineContrastiveLoss(nn.Module):
    def __init__(self, margin: float = 0.8, neg_weight: float = 150.0) -> None:
        super().__init__()
        if not -1 < margin < 1:
            raise ValueError(f"margin={margin} must be a cosine in (-1, 1)")
        if neg_weight < 0:
            raise ValueError(f"neg_weight={neg_weight} must be at least 0")
        self.margin, self.neg_weight = margin, neg_weight

    def forward(self, user_emb, item_emb, candidates, positive) -> torch.Tensor:
        batch = candidate_batch(user_emb, item_emb, candidates, positive, normalize=True)
        pos, neg = batch.levels == 1, batch.levels == 0
        hinge = torch.relu(batch.scores - self.margin) * neg
        per_user_neg = hinge.sum(dim=1) / neg.sum(dim=1).clamp_min(1)  # (B,): shared by the user's positives
        n_pairs = pos.sum(dim=1)
        if int(n_pairs.sum()) == 0:
            return batch.scores.sum() * 0.0
        pos_term = ((1 - batch.scores) * pos).sum()
        return (pos_term + self.neg_weight * (per_user_neg * n_pairs).sum()) / n_pairs.sum()


class BPRLoss(nn.Module):
    """BPR (Rendle et al., 2009): mean softplus(s_neg − s_pos) over (user, positive, negative) triples of
    raw dot products, as LightGCN-PyTorch computes it (its L2 on layer-0 embeddings is the module's)."""

    def forward(self, user_emb: torch.Tensor, pos_emb: torch.Tensor, neg_emb: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus((user_emb * neg_emb).sum(1) - (user_emb * pos_emb).sum(1)).mean()


RECSYS_LOSSES.register(
    "bpr", lambda lo: BPRLoss(), candidate=False, doc="BPR (the baseline)", tuned={"lr": 5e-3, "weight_decay": 1e-4}
)
RECSYS_LOSSES.register(
    "item-ndcg",
    lambda lo: ITEMLoss(tau=lo.tau, normalize=lo.score == "cosine"),
    candidate=True,
    doc="ITEM's smooth NDCG",
    tuned={"lr": 5e-3, "weight_decay": 1e-4, "score": "dot", "n_neg": 500, "tau": {"cosine": 0.1, "dot": 0.1}},
)
RECSYS_LOSSES.register(
    "supndcg",
    lambda lo: CandidateRankLoss(SupNDCG(), normalize=lo.score == "cosine"),
    candidate=True,
    doc="SupRank's NDCG surrogate",
    tuned={"lr": 1e-2, "weight_decay": 1e-4, "score": "cosine", "n_neg": 500},
)
RECSYS_LOSSES.register(
    "suprecall",
    lambda lo: CandidateRankLoss(SupRecall(k=tuple(lo.recall_k)), normalize=lo.score == "cosine"),
    candidate=True,
    doc="SupRank's Recall@k surrogate",
    tuned={"lr": 1e-2, "weight_decay": 1e-4, "score": "cosine", "n_neg": 500},
)
RECSYS_LOSSES.register(
    "softmax",
    lambda lo: SampledSoftmaxLoss(tau=lo.tau, normalize=lo.score == "cosine"),
    candidate=True,
    doc="sampled softmax",
    tuned={"lr": 1e-2, "weight_decay": 1e-4, "score": "dot", "n_neg": 500, "tau": {"cosine": 0.1, "dot": 1.0}},
)
RECSYS_LOSSES.register(
    "ccl",
    lambda lo: CosineContrastiveLoss(margin=lo.margin, neg_weight=lo.neg_weight),
    candidate=True,
    doc="SimpleX's cosine contrastive loss",
    cosine_only=True,
    tuned={"lr": 1e-2, "weight_decay": 1e-4, "score": "cosine", "n_neg": "all", "margin": 0.0, "neg_weight": 10.0},
)
