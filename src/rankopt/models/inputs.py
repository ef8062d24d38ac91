"""Images made into what a backbone takes: the 28 × 28 grey images of Fashion-MNIST (and of the OOD
sets) fed to an RGB backbone, or to one trained at another size.

>>> import torch
>>> match_input(torch.rand(2, 1, 28, 28), channels=3, size=64, imagenet_norm=True).shape
torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["match_input", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def match_input(images: torch.Tensor, channels: int, size: int | None, imagenet_norm: bool) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1]: grey channels repeated to ``channels``, resized to ``size``
    (bilinear), ImageNet-normalised when the backbone was trained so."""
    x = images
    if channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if imagenet_norm:
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x
