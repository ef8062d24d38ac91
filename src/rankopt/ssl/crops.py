"""Multi-crop augmentation on batches of image tensors, as one affine resampling per crop.

DINOv2 / Franca draw 2 global crops (224 px, scale 0.32–1 of the image area) and 8 local crops (96 px,
scale 0.05–0.32), each flipped with probability ½ and colour-jittered. Here the crop sizes follow the
image: a global crop is the image size, a local crop ``local_size`` (by default 96/224 of it, 12 px for
28 px images). A crop is a random box (area in ``scale`` of the image, aspect ratio log-uniform in
[3/4, 4/3], anywhere inside the image), resampled bilinearly to the output size with
``torch.nn.functional.grid_sample`` — the whole batch in one call, no per-image Python loop — then a
flip, a brightness/contrast jitter and, on the second global crop, solarisation with probability 0.2.

>>> import torch
>>> crops = MultiCrop(28, n_local=4, local_size=12)
>>> views = crops(torch.rand(5, 1, 28, 28), torch.Generator().manual_seed(0))
>>> [tuple(v.shape) for v in views]
[(5, 1, 28, 28), (5, 1, 28, 28), (5, 1, 12, 12), (5, 1, 12, 12), (5, 1, 12, 12), (5, 1, 12, 12)]
"""

from __future__ import annotations

import math

import torch

__all__ = ["MultiCrop", "crop_boxes"]


def crop_boxes(
    n: int, scale: tuple[float, float], generator: torch.Generator, ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> torch.Tensor:
    """(n, 4) boxes (cx, cy, w, h) in [-1, 1] image coordinates: area ∈ scale, aspect ∈ ratio, inside."""
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator) * 4.0  # the image is 2 × 2
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(max=2.0)
    h = torch.sqrt(area / aspect).clamp(max=2.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w / 2)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h / 2)
    return torch.stack([cx, cy, w, h], dim=1)


class MultiCrop:
    """``__call__(images (B, C, H, W), generator)`` → [global crop 1, global crop 2, local crops ...]."""

    def __init__(
        self,
        size: int,
        n_local: int = 8,
        local_size: int | None = None,
        global_scale: tuple[float, float] = (0.32, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.32),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: float = 0.4,
        solarize: float = 0.2,
    ) -> None:
        local_size = local_size or max(4, round(size * 96 / 224))
        if local_size > size:
            raise ValueError(f"local crops of {local_size} px are larger than the {size} px images")
        for name, (lo, hi) in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name}={(lo, hi)} must satisfy 0 < low <= high <= 1 (shares of the image area)")
        self.size, self.n_local, self.local_size = size, n_local, local_size
        self.global_scale, self.local_scale = global_scale, local_scale
        self.ratio, self.jitter, self.solarize = ratio, jitter, solarize

    def _crop(self, images: torch.Tensor, size: int, scale, generator, solarize: float) -> torch.Tensor:
        b = len(images)
        box = crop_boxes(b, scale, generator, self.ratio)
        flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = box[:, 2] / 2 * flip
        theta[:, 1, 1] = box[:, 3] / 2
        theta[:, 0, 2], theta[:, 1, 2] = box[:, 0], box[:, 1]
        grid = torch.nn.functional.affine_grid(
            theta.to(images.dtype), [b, images.shape[1], size, size], align_corners=False
        )
        out = torch.nn.functional.grid_sample(
            images, grid.to(images.device), mode="bilinear", padding_mode="border", align_corners=False
        )
        if self.jitter:
            brightness = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * self.jitter
            contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * self.jitter
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = ((out - mean) * contrast.to(out) + mean) * brightness.to(out)
        if solarize:
            hit = (torch.rand(b, 1, 1, 1, generator=generator) < solarize).to(out.device)
            out = torch.where(hit & (out >= 0.5), 1 - out, out)
        return out.clamp(0, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        if images.shape[-1] != self.size or images.shape[-2] != self.size:
            raise ValueError(f"multi-crop expects {self.size} × {self.size} images; got {tuple(images.shape[-2:])}")
        views = [
            self._crop(images, self.size, self.global_scale, generator, 0.0),
            self._crop(images, self.size, self.global_scale, generator, self.solarize),
        ]
        views += [self._crop(images, self.local_size, self.local_scale, generator, 0.0) for _ in range(self.n_local)]
        return views
