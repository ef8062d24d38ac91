"""Global pooling of a (B, C, H, W) feature map, or of a transformer's tokens as a (B, C, 1, T) map, to
(B, C): avg, max, gem, and cls (the class token; transformer backbones only)."""

from __future__ import annotations

import torch
from torch import nn

from rankopt.registry import Registry

__all__ = ["GeM", "create_pooling", "POOLINGS"]


POOLINGS = Registry("pooling")


@POOLINGS.register("gem")
class GeM(nn.Module):
    """Generalised mean pooling (Radenović et al., TPAMI 2018): (mean x^p)^(1/p), p learnable (init 3)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1 / self.p)


@POOLINGS.register("avg")
class _Avg(nn.Module):
    def forward(self, x):
        return x.mean(dim=(-2, -1))


@POOLINGS.register("max")
class _Max(nn.Module):
    def forward(self, x):
        return x.amax(dim=(-2, -1))


@POOLINGS.register("cls")
class _ClassToken(nn.Module):
    """The class token of a transformer's (B, C, 1, T) token map (token 0), as ViT / DeiT classify."""

    def forward(self, x):
        return x[:, :, 0, 0]


def create_pooling(name: str) -> nn.Module:
    """The pooling registered under ``name`` (avg, max, gem, cls); an unknown name suggests the closest."""
    return POOLINGS.create(name)
