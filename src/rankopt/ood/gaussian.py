"""Class-conditional Gaussians with one shared (tied) covariance, fitted in two streamed passes
(class means, then the scatter of class-centred features; float64), and what is built on them:
Mahalanobis distances and the mixture's log-density (HEAT's GMM prior, SSD+)."""

from __future__ import annotations

import math

import numpy as np
import torch

from rankopt.ood.features import block, row_blocks

__all__ = ["TiedGaussian", "FittedGaussian", "fit_tied_gaussian", "normalise"]

RIDGE = 1e-6  # relative to the largest variance: keeps dead feature channels from making Σ singular


def normalise(z: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(z, dim=1)


class TiedGaussian:
    """Means (C, d), shared covariance (d, d) with its eigen-decomposition, class weights (C,)."""

    def __init__(self, means: torch.Tensor, cov: torch.Tensor, counts: torch.Tensor) -> None:
        self.means, self.cov, self.counts = means, cov, counts
        vals, vecs = torch.linalg.eigh(cov)
        vals = vals.clamp_min(RIDGE * float(vals.max().clamp_min(1e-30)))
        self.precision = (vecs / vals) @ vecs.T
        self.chol = vecs * vals.sqrt()  # Σ = chol cholᵀ (for sampling)
        self.logdet = float(vals.log().sum())
        self.log_weights = (counts / counts.sum()).log()

    def sq_distances(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C) squared Mahalanobis distances (z − μ_c)ᵀ Σ⁻¹ (z − μ_c), expanded so no (B, C, d) tensor exists."""
        zp = z @ self.precision  # (B, d)
        mp = self.means @ self.precision  # (C, d)
        return ((zp * z).sum(1, keepdim=True) - 2 * zp @ self.means.T + (mp * self.means).sum(1)).clamp_min(0)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """(B,) log p(z) = log Σ_c π_c N(z; μ_c, Σ), the Gaussian normalisation included."""
        d = z.shape[1]
        log_norm = -0.5 * (d * math.log(2 * math.pi) + self.logdet)
        return torch.logsumexp(self.log_weights - 0.5 * self.sq_distances(z), dim=1) + log_norm

    def sample(
        self, n: int, generator: torch.Generator | None = None, classes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n samples: a class drawn from the mixture weights (or given), then μ_c + chol·ε."""
        if classes is None:
            classes = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.cov.shape[0], generator=generator, dtype=self.cov.dtype)
        return self.means[classes] + eps @ self.chol.T

    def state(self) -> dict[str, torch.Tensor]:
        return {"means": self.means, "cov": self.cov, "counts": self.counts}


class FittedGaussian:
    """Mixin of detectors holding a TiedGaussian: its state (means, cov, counts) saved as tensors, the
    decomposition rebuilt once after loading."""

    means: torch.Tensor
    cov: torch.Tensor
    counts: torch.Tensor

    def set_gaussian(self, g: TiedGaussian) -> None:
        self.means, self.cov, self.counts, self._gaussian = g.means, g.cov, g.counts, g

    @property
    def gaussian(self) -> TiedGaussian:
        if getattr(self, "_gaussian", None) is None or self._gaussian.means is not self.means:  # loaded state
            self._gaussian = TiedGaussian(self.means, self.cov, self.counts)
        return self._gaussian


def fit_tied_gaussian(x: np.ndarray, labels: np.ndarray, normalize: bool) -> TiedGaussian:
    """Class means and the biased shared covariance Σ = (1/N) Σ_i (z_i − μ_{y_i})(z_i − μ_{y_i})ᵀ,
    read in row blocks (two passes), classes 0..C−1 (a missing class id is an error)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if classes.min() < 0:
        raise ValueError("class labels must be >= 0")
    counts = torch.as_tensor(np.bincount(labels), dtype=torch.float64)
    if (counts == 0).any():
        raise ValueError(
            f"class label(s) {np.flatnonzero(counts.numpy() == 0)[:5].tolist()} have no ID training "
            "feature: labels must run over 0..C-1"
        )
    d = x.shape[1]
    sums = torch.zeros(len(counts), d, dtype=torch.float64)
    prep = normalise if normalize else (lambda z: z)
    for start, stop in row_blocks(len(x)):
        y = torch.as_tensor(labels[start:stop])
        sums.index_add_(0, y, prep(block(x, start, stop)))
    means = sums / counts[:, None]
    cov = torch.zeros(d, d, dtype=torch.float64)
    for start, stop in row_blocks(len(x)):
        c = prep(block(x, start, stop)) - means[torch.as_tensor(labels[start:stop])]
        cov += c.T @ c
    return TiedGaussian(means, cov / counts.sum(), counts)
