"""The frame tokenizer: a small VQ-VAE (van den Oord et al., 2017) standing in for the LlamaGen VQ
tokenizer VaViM reads (downsample 16, 16,384 codes; no weights offline).

Quantiser: each encoder vector z goes to its nearest code e (squared L2); the decoder reads
z + sg(e − z), so the gradient passes straight through to the encoder. Losses: reconstruction (MSE) +
‖sg(z) − e‖² (moves the codes) + β‖z − sg(e)‖² (commitment, β = 0.25). Codebook usage is counted.
Two guards against a collapsed codebook: the first training batch initialises the codes to distinct
encoder vectors (the tiny uniform init sits far from the encoder's outputs, so a handful of codes win
every vector: measured 4 of 128 used), and a code unused for ``dead_after`` training steps is
re-initialised to a random encoder vector of the current batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VectorQuantizer", "VQVAE"]


class VectorQuantizer(nn.Module):
    def __init__(
        self, n_codes: int, dim: int, beta: float = 0.25, dead_after: int = 10, data_init: bool = True
    ) -> None:
        super().__init__()
        if n_codes < 2 or dim < 1:
            raise ValueError(f"n_codes={n_codes}, dim={dim}: a codebook needs at least 2 codes of 1 dimension")
        self.n_codes, self.dim, self.beta, self.dead_after = n_codes, dim, beta, dead_after
        self.codebook = nn.Parameter(torch.empty(n_codes, dim).uniform_(-1 / n_codes, 1 / n_codes))
        self.register_buffer("idle_steps", torch.zeros(n_codes, dtype=torch.long))  # since each code was last used
        self.register_buffer("needs_init", torch.tensor(data_init))  # a buffer: a resumed run does not redo it

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """(N,) index of the nearest code of each row of ``flat`` (N, dim); the lowest index on a tie."""
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, dim, H, W) → (quantised z with the straight-through gradient, codes (B, H, W), the
        codebook + commitment loss)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and self.needs_init:
            self._init_from(flat.detach())
        codes = self.nearest(flat.detach())
        e = self.codebook[codes]
        loss = F.mse_loss(e, flat.detach()) + self.beta * F.mse_loss(flat, e.detach())
        straight = flat + (e - flat).detach()
        if self.training:
            self._restart_dead(flat.detach(), codes)
        return straight.reshape(b, h, w, d).permute(0, 3, 1, 2), codes.reshape(b, h, w), loss

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        # distinct vectors while the batch has enough of them (repeats otherwise: the restarts spread them)
        pick = torch.randperm(len(flat), device=flat.device)[: self.n_codes]
        if len(pick) < self.n_codes:
            pick = torch.cat([pick, torch.randint(len(flat), (self.n_codes - len(pick),), device=flat.device)])
        self.codebook.copy_(flat[pick])
        self.needs_init.fill_(False)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        used = torch.zeros(self.n_codes, dtype=torch.bool, device=flat.device)
        used[codes] = True
        self.idle_steps = torch.where(used, torch.zeros_like(self.idle_steps), self.idle_steps + 1)
        dead = (self.idle_steps >= self.dead_after).nonzero().flatten()
        if len(dead):
            pick = torch.randint(len(flat), (len(dead),), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.idle_steps[dead] = 0

    def usage(self, codes: torch.Tensor) -> dict[str, float]:
        """Share of the codebook used by ``codes`` and the perplexity of their distribution."""
        p = torch.bincount(codes.flatten(), minlength=self.n_codes).double()
        p = p / p.sum()
        nz = p[p > 0]
        return {"codes_used": float((p > 0).float().mean()), "perplexity": float(torch.exp(-(nz * nz.log()).sum()))}


def _block(c_in: int, c_out: int, down: bool) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 4, 2, 1) if down else nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    return nn.Sequential(conv, nn.GroupNorm(1, c_out), nn.SiLU())


class VQVAE(nn.Module):
    """Grey frames (B, 1, H, W) in [0, 1] → a (H/4 × W/4) grid of codes → frames. ``width``: channels."""

    def __init__(self, n_codes: int = 128, dim: int = 16, width: int = 32, beta: float = 0.25, dead_after: int = 10):
        super().__init__()
        self.encoder = nn.Sequential(_block(1, width, True), _block(width, width, True), nn.Conv2d(width, dim, 1))
        self.quantizer = VectorQuantizer(n_codes, dim, beta, dead_after)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, width, 1), _block(width, width, False), nn.ConvTranspose2d(width, 1, 4, 2, 1)
        )

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, codes, loss: reconstruction MSE + codebook + commitment)."""
        if frames.ndim != 4 or frames.shape[1] != 1 or frames.shape[2] % 4 or frames.shape[3] % 4:
            raise ValueError(f"frames must be (B, 1, H, W) with H and W multiples of 4; got {tuple(frames.shape)}")
        zq, codes, vq_loss = self.quantizer(self.encoder(frames))
        recon = self.decoder(zq)
        return recon, codes, F.mse_loss(recon, frames) + vq_loss

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        z = self.encoder(frames)
        b, d, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).reshape(b, h, w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) → frames (B, 1, 4h, 4w), clamped to [0, 1]."""
        zq = self.quantizer.codebook[codes].permute(0, 3, 1, 2)
        return self.decoder(zq).clamp(0, 1)
