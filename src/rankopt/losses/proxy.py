"""NormSoftmax (Zhai & Wu, BMVC 2019): cross-entropy on cosine similarities to learned class proxies.

    logits = ⟨f, w_c / |w_c|⟩ / T,   loss = CE(logits, fine label)

Proxies W (C, d) are initialised uniform(±1/√d), as in HAPPIER. They are the loss's own parameters:
``proxy_parameters()`` lets a recipe give them their own optimizer group (HAPPIER: Adam, lr 10 on SOP).
Hierarchical labels are accepted; the finest column is used. A reference set is ignored (proxies
are the reference).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rankopt.losses.base import Loss
from rankopt.losses.batch import check_loss_inputs

__all__ = ["NormSoftmax"]


class NormSoftmax(Loss):
    hierarchical = True  # takes (B, L) labels and uses the finest column
    needs_classes = True

    def __init__(self, num_classes: int, dim: int, temperature: float = 0.05) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"NormSoftmax: num_classes and dim must be >= 1; got {num_classes}, {dim}")
        self.num_classes, self.dim, self.temperature = num_classes, dim, temperature
        bound = 1 / math.sqrt(dim)
        self.proxies = nn.Parameter(torch.empty(num_classes, dim).uniform_(-bound, bound))

    def proxy_parameters(self) -> list[nn.Parameter]:
        return [self.proxies]

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels) -> torch.Tensor:
        emb, lab = check_loss_inputs(embeddings, labels, "NormSoftmax", hierarchical=True)
        if emb.shape[1] != self.dim:
            raise ValueError(f"NormSoftmax: embeddings have dimension {emb.shape[1]} but the proxies have {self.dim}")
        fine = lab[:, 0]
        if bool((fine >= self.num_classes).any()):
            bad = int(fine.max())
            raise ValueError(f"NormSoftmax: label {bad} is out of range for num_classes={self.num_classes}")
        w = nn.functional.normalize(self.proxies, dim=1)
        logits = nn.functional.normalize(emb, dim=1) @ w.T / self.temperature
        return nn.functional.cross_entropy(logits, fine)
