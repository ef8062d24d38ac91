"""Rank losses: one signature ``loss(embeddings, labels, ref_embeddings=None, ref_labels=None)``.

All rank surrogates share one kernel (:mod:`rankopt.losses.rank_kernel`) that never builds a
(B, N, N) tensor. ``create_loss(name, **kwargs)`` builds one from the names used in configs.
"""

from __future__ import annotations

from torch import nn

from rankopt.losses.average_precision import SmoothAP, SupAP
from rankopt.losses.base import RankingLoss
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

LOSSES: dict[str, type[nn.Module]] = {
    "smoothap": SmoothAP,
    "supap": SupAP,
    "fastap": FastAP,
    "blackboxap": BlackBoxAP,
    "calibration": Calibration,
    "roadmap": ROADMAP,
    "suprecall": SupRecall,
    "supndcg": SupNDCG,
    "hap": HAP,
    "normsoftmax": NormSoftmax,
    "happier": HAPPIER,
}


def create_loss(name: str, **kwargs) -> nn.Module:
    """The loss registered under ``name`` (case and '-'/'_' insensitive), built with ``kwargs``."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in LOSSES:
        import difflib

        close = difflib.get_close_matches(key, LOSSES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown loss {name!r}{hint} Known: {', '.join(LOSSES)}")
    return LOSSES[key](**kwargs)


__all__ = [
    "RankingLoss", "SmoothAP", "SupAP", "FastAP", "BlackBoxAP", "Calibration", "ROADMAP", "SupRecall",
    "SupNDCG", "HAP", "NormSoftmax", "HAPPIER", "WeightedLoss", "CrossBatchMemory", "DistributedLoss",
    "all_gather_with_grad", "create_loss", "LOSSES",
]
