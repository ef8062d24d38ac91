"""Top-k recommendation with rank losses (ITEM): interaction data so far; models and training to come."""

from rankopt.recsys.data import (
    Interactions, RecData, implicit, inductive_split, load_directory, ratio_split, read_csv, read_lightgcn,
    read_pairs, read_recbole, temporal_split,
)

__all__ = [
    "Interactions", "RecData", "load_directory", "read_lightgcn", "read_pairs", "read_recbole", "read_csv",
    "implicit", "ratio_split", "temporal_split", "inductive_split",
]
