"""Embedding models: backbone + pooling + head → L2-normalised embedding. ``create_model`` builds one by name."""

from rankopt.models.backbones import BACKBONES, SmallCNN, create_backbone, load_weights
from rankopt.models.embedding import EmbeddingModel, create_model
from rankopt.models.pooling import GeM, create_pooling

__all__ = [
    "EmbeddingModel",
    "create_model",
    "create_backbone",
    "BACKBONES",
    "SmallCNN",
    "GeM",
    "create_pooling",
    "load_weights",
]
