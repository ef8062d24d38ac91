"""A tiny Vision Transformer for small images (Fashion-MNIST's 28×28 on a CPU): patch embedding, a class
token, learned position embeddings interpolated to any input size (multi-crop feeds smaller crops),
pre-norm blocks, and an optional mask token that replaces masked patches (iBOT's masked image
modelling).

As a rankopt backbone it returns its tokens as a (B, C, 1, 1 + P) map, class token first, the layout
of the other transformer backbones: ``avg`` pooling averages the tokens, ``cls`` takes the class
token. :meth:`TinyViT.tokens` gives the class token and the patch tokens apart.

>>> import torch
>>> vit = TinyViT(image_size=28, patch_size=4, width=32, depth=2, heads=2)
>>> vit(torch.randn(3, 1, 28, 28)).shape
torch.Size([3, 32, 1, 50])
>>> cls, patches = vit.tokens(torch.randn(3, 1, 12, 12))   # a smaller crop: 3×3 patches
>>> cls.shape, patches.shape
(torch.Size([3, 32]), torch.Size([3, 9, 32]))
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyViT"]


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """ViT with ``depth`` blocks of ``width`` channels on ``patch_size`` patches of ``image_size`` images."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int = 4,
        width: int = 96,
        depth: int = 4,
        heads: int = 3,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}")
        if width % heads:
            raise ValueError(f"width={width} is not a multiple of heads={heads}")
        self.patch_size, self.grid = patch_size, image_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.mask_token = nn.Parameter(torch.zeros(1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, width))
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out_channels = width
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _positions(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an h × w patch grid (bicubic interpolation of the trained grid)."""
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        grid = grid.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    def tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(class token (B, C), patch tokens (B, P, C)) after the final norm. ``masks`` (B, P) bool: those
        patches are replaced by the mask token before the blocks."""
        patches = self.patch_embed(x)  # (B, C, h, w)
        h, w = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2)  # (B, P, C)
        if masks is not None:
            if masks.shape != patches.shape[:2]:
                raise ValueError(f"masks must be (B, P) = {tuple(patches.shape[:2])}; got {tuple(masks.shape)}")
            patches = torch.where(masks.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), patches], dim=1) + self._positions(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        return tokens[:, 0], tokens[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, patches = self.tokens(x)
        return torch.cat([cls.unsqueeze(1), patches], dim=1).transpose(1, 2).unsqueeze(2)  # (B, C, 1, 1 + P)

    def n_patches(self, size: int) -> int:
        """Patches of a square ``size`` × ``size`` input."""
        return (size // self.patch_size) ** 2
