"""Top-k recommendation with rank losses (ITEM): interaction data, graph, MF and GNN recommenders,
candidate losses, PPR negatives, full-ranking evaluation; trained by the run engine (recsys.run, recsys.module)."""

from rankopt.recsys.data import (
    Interactions,
    RecData,
    implicit,
    inductive_split,
    load_directory,
    ratio_split,
    read_csv,
    read_lightgcn,
    read_pairs,
    read_recbole,
    temporal_split,
)
from rankopt.recsys.evaluation import evaluate_recommender
from rankopt.recsys.graph import normalized_adjacency, user_item_mean
from rankopt.recsys.losses import CandidateRankLoss, ITEMLoss, SampledSoftmaxLoss
from rankopt.recsys.models import MF, NGCF, LightGCN, LightGCNpp, Recommender
from rankopt.recsys.negatives import personalized_pagerank, ppr_negatives

__all__ = [
    "Recommender",
    "MF",
    "LightGCN",
    "LightGCNpp",
    "NGCF",
    "normalized_adjacency",
    "user_item_mean",
    "evaluate_recommender",
    "ITEMLoss",
    "SampledSoftmaxLoss",
    "CandidateRankLoss",
    "personalized_pagerank",
    "ppr_negatives",
    "Interactions",
    "RecData",
    "load_directory",
    "read_lightgcn",
    "read_pairs",
    "read_recbole",
    "read_csv",
    "implicit",
    "ratio_split",
    "temporal_split",
    "inductive_split",
]
