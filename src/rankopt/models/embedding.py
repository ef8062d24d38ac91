"""Backbone + pooling + optional LayerNorm + linear head → L2-normalised embedding."""

from __future__ import annotations

import torch
from torch import nn

from rankopt.models.backbones import check_backbone, create_backbone
from rankopt.models.pooling import create_pooling

__all__ = ["EmbeddingModel", "create_model"]


class EmbeddingModel(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 512,
        pooling: str = "avg",
        layer_norm: bool = False,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        self.backbone = backbone
        self.pooling = create_pooling(pooling)
        self.norm = nn.LayerNorm(backbone.out_channels) if layer_norm else nn.Identity()
        self.head = nn.Linear(backbone.out_channels, dim)
        self.dim = dim
        self.freeze_bn = freeze_bn

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_bn:  # BatchNorm statistics and affine parameters stay as loaded
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
                    for p in m.parameters():
                        p.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.norm(self.pooling(self.backbone(x)))
        return nn.functional.normalize(self.head(features), dim=1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """'backbone' and 'head' parameters (pooling and norm go with the head), for their own learning rates."""
        head = list(self.head.parameters()) + list(self.norm.parameters()) + list(self.pooling.parameters())
        return {"backbone": [p for p in self.backbone.parameters() if p.requires_grad], "head": head}


def create_model(
    backbone: str = "small_cnn",
    dim: int = 128,
    pooling: str = "avg",
    layer_norm: bool = False,
    freeze_bn: bool = False,
    weights: str | None = None,
    in_channels: int = 3,
) -> EmbeddingModel:
    """The model recipes build: e.g. create_model("resnet50", 512, "gem", weights="resnet50.pth")."""
    check_backbone(backbone, weights, in_channels, pooling)
    return EmbeddingModel(create_backbone(backbone, weights, in_channels), dim, pooling, layer_norm, freeze_bn)
