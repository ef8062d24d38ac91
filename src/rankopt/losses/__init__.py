"""Rank losses: one signature ``loss(embeddings, labels, ref_embeddings=None, ref_labels=None)``, also
called the pytorch-metric-learning way (``ref_emb=``; see :class:`Loss`). Embeddings that are not unit-norm
are L2-normalised by the loss unless ``normalize=False``.

All rank surrogates share one kernel (:mod:`rankopt.losses.rank_kernel`) that never builds a
(B, N, N) tensor. ``create_loss(name, **kwargs)`` builds one from the names used in configs.
"""

from __future__ import annotations

from rankopt.losses.average_precision import SmoothAP, SupAP
from rankopt.losses.base import Loss, RankingLoss
from rankopt.losses.blackbox import BlackBoxAP
from rankopt.losses.calibration import Calibration
from rankopt.losses.combined import HAPPIER, ROADMAP, WeightedLoss
from rankopt.losses.distributed import DistributedLoss, all_gather_with_grad
from rankopt.losses.fastap import FastAP
from rankopt.losses.hierarchical import HAP
from rankopt.losses.memory import CrossBatchMemory
from rankopt.losses.ndcg import SupNDCG
from rankopt.losses.proxy import NormSoftmax
from rankopt.losses.recall import SupRecall
from rankopt.registry import Registry

# names as configs write them (case and '-'/'_' insensitive); each class declares what it needs
LOSSES = Registry("loss", normalize=lambda name: name.lower().replace("-", "").replace("_", ""))
for _cls in (SmoothAP, SupAP, FastAP, BlackBoxAP, Calibration, ROADMAP, SupRecall, SupNDCG, HAP, NormSoftmax, HAPPIER):
    LOSSES.register(_cls.__name__, _cls)


def create_loss(name: str, **kwargs) -> Loss:
    """The loss registered under ``name`` (case and '-'/'_' insensitive), built with ``kwargs``."""
    return LOSSES.create(name, **kwargs)


__all__ = [
    "Loss",
    "RankingLoss",
    "SmoothAP",
    "SupAP",
    "FastAP",
    "BlackBoxAP",
    "Calibration",
    "ROADMAP",
    "SupRecall",
    "SupNDCG",
    "HAP",
    "NormSoftmax",
    "HAPPIER",
    "WeightedLoss",
    "CrossBatchMemory",
    "DistributedLoss",
    "all_gather_with_grad",
    "create_loss",
    "LOSSES",
]
