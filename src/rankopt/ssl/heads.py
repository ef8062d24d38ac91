"""Projection heads of self-distillation: DINO's single head and Franca's nested Matryoshka heads.

A head maps an embedding (N, D) to prototype logits. DINO's (:class:`DINOHead`): an MLP (``layers``
Linear layers, GELU between, hidden width ``hidden``, bottleneck ``bottleneck``) then a weight-normalised
linear layer onto ``prototypes`` outputs. Franca's (:class:`NestedHeads`) is one such head per
granularity d_k ∈ {D/16, D/8, D/4, D/2, D} (``levels`` of them), each with ``prototypes · d_k / D``
prototypes, its loss summed over levels. Two readings of "nested":

* ``variant="projection"`` — the released code (valeoai/Franca, ``MRLDINOHead``): level k applies its
  own Linear(D → d_k) to the whole embedding, then its MLP; the MLP's last layer is followed by a GELU.
  The released head does not L2-normalise the bottleneck before the prototypes (``normalize=False``
  reproduces it exactly); by default it is normalised as in DINO's head: at our widths (D = 128, hidden
  256) the released head's logits start ~100× smaller than at ViT-B's and teacher and student sit at
  the uniform distribution, where the loss has no gradient (measured: the DINO loss stayed at
  Σ_k log K_k for two epochs).
* ``variant="slice"`` — the paper's wording (Matryoshka representation learning): level k reads the
  first d_k dimensions of the embedding, so the backbone's embedding itself is nested: its first d_k
  dimensions retrieve on their own (short codes to search, the full width to re-rank).

>>> import torch
>>> heads = NestedHeads(dim=64, prototypes=256, hidden=32, bottleneck=16, levels=5, variant="slice")
>>> [tuple(o.shape) for o in heads(torch.randn(3, 64))]
[(3, 16), (3, 32), (3, 64), (3, 128), (3, 256)]
>>> heads.widths
[4, 8, 16, 32, 64]
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WeightNormLinear", "DINOHead", "NestedHeads", "nested_widths"]


class WeightNormLinear(nn.Module):
    """y = x Wᵀ with W = g · v / ‖v‖ row-wise (``torch.nn.utils.weight_norm`` over dim 0), g filled with 1."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.trunc_normal_(self.v, std=0.02)
        self.g = nn.Parameter(torch.ones(out_features, 1))

    @property
    def weight(self) -> torch.Tensor:
        return self.g * self.v / self.v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t()


def _mlp(layers: int, in_dim: int, hidden: int, bottleneck: int, final_gelu: bool) -> nn.Module:
    if layers == 1:
        return nn.Linear(in_dim, bottleneck)
    mods: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.GELU()]
    for _ in range(layers - 2):
        mods += [nn.Linear(hidden, hidden), nn.GELU()]
    mods.append(nn.Linear(hidden, bottleneck))
    if final_gelu:
        mods.append(nn.GELU())
    return nn.Sequential(*mods)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DINOHead(nn.Module):
    """DINO's head: MLP, L2-normalised bottleneck, weight-normalised prototypes (one level)."""

    def __init__(self, dim: int, prototypes: int, hidden: int = 2048, bottleneck: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.mlp = _mlp(layers, dim, hidden, bottleneck, final_gelu=False)
        self.last = WeightNormLinear(bottleneck, prototypes)
        self.mlp.apply(_init)
        self.widths, self.prototypes = [dim], [prototypes]

    def last_layers(self) -> list[nn.Module]:
        return [self.last]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.last(nn.functional.normalize(self.mlp(x), dim=-1))]


def nested_widths(dim: int, levels: int) -> list[int]:
    """D/2^(levels−1), ..., D/2, D; D must be divisible by 2^(levels−1)."""
    if levels < 1:
        raise ValueError(f"levels={levels} must be at least 1")
    step = 2 ** (levels - 1)
    if dim % step:
        raise ValueError(
            f"the embedding width {dim} is not divisible by {step}: {levels} nested levels need "
            f"granularities {dim}/{step} ... {dim}"
        )
    return [dim // 2**k for k in range(levels - 1, -1, -1)]


class NestedHeads(nn.Module):
    """Franca's nested Matryoshka heads (see the module docstring); ``forward`` returns one logit tensor
    per level, coarsest first."""

    def __init__(
        self,
        dim: int,
        prototypes: int,
        hidden: int = 2048,
        bottleneck: int = 384,
        layers: int = 3,
        levels: int = 5,
        variant: str = "projection",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if variant not in ("projection", "slice"):
            raise ValueError(f"variant={variant!r} is not projection or slice")
        self.variant, self.normalize = variant, normalize
        self.widths = nested_widths(dim, levels)
        self.prototypes = [prototypes * w // dim for w in self.widths]
        if min(self.prototypes) < 1:
            raise ValueError(
                f"{prototypes} prototypes at width {dim} leave level {self.widths[0]} with none: "
                f"give at least {dim // self.widths[0]}"
            )
        self.projections = nn.ModuleList(nn.Linear(dim, w) for w in self.widths) if variant == "projection" else None
        # the released head ends its MLP with a GELU (the projection variant keeps it)
        self.mlps = nn.ModuleList(
            _mlp(layers, w, hidden, bottleneck, final_gelu=variant == "projection") for w in self.widths
        )
        self.last = nn.ModuleList(WeightNormLinear(bottleneck, k) for k in self.prototypes)
        for m in (self.projections, self.mlps):
            if m is not None:
                m.apply(_init)

    def last_layers(self) -> list[nn.Module]:
        return list(self.last)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for k, width in enumerate(self.widths):
            h = self.mlps[k](self.projections[k](x) if self.projections is not None else x[:, :width])
            out.append(self.last[k](nn.functional.normalize(h, dim=-1) if self.normalize else h))
        return out
