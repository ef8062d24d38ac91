"""Top-k recommendation with rank losses (ITEM): interaction data, graph, MF / LightGCN, full-ranking evaluation."""

from rankopt.recsys.data import (
    Interactions, RecData, implicit, inductive_split, load_directory, ratio_split, read_csv, read_lightgcn,
    read_pairs, read_recbole, temporal_split,
)

from rankopt.recsys.evaluation import evaluate_recommender
from rankopt.recsys.graph import normalized_adjacency
from rankopt.recsys.models import MF, NGCF, LightGCN

__all__ = [
    "MF", "LightGCN", "NGCF", "normalized_adjacency", "evaluate_recommender",
    "Interactions", "RecData", "load_directory", "read_lightgcn", "read_pairs", "read_recbole", "read_csv",
    "implicit", "ratio_split", "temporal_split", "inductive_split",
]
