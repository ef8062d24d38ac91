"""The classical post-hoc OOD detectors, on features, logits and the linear head. Every score is an
outlier score: larger = more OOD (signs flipped where a paper scores "in-distribution-ness").

Logit-based: MSP (Hendrycks & Gimpel 2017), MaxLogit (Hendrycks et al. 2022), Energy (Liu et al.
2020), GEN (Liu et al. 2023). Feature-based: Mahalanobis (Lee et al. 2018), Relative Mahalanobis
(Ren et al. 2021), KNN (Sun et al. 2022), the tied-covariance GMM log-density (SSD+; HEAT's prior).
Head-based (activation shaping, then the energy of the head's logits): ViM (Wang et al. 2022),
ReAct (Sun et al. 2021), ASH-S (Djurisic et al. 2023), SCALE (Xu et al. 2024).
"""

from __future__ import annotations

import numpy as np
import torch

from rankopt.ood.detector import Detector, register_detector
from rankopt.ood.features import Features, block, row_blocks
from rankopt.ood.gaussian import FittedGaussian, TiedGaussian, fit_tied_gaussian, normalise

__all__ = [
    "MSP",
    "MaxLogit",
    "Energy",
    "GEN",
    "Mahalanobis",
    "RelativeMahalanobis",
    "KNN",
    "GMMPrior",
    "ViM",
    "ReAct",
    "ASH",
    "SCALE",
    "energy",
    "percentile_of",
]


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """E(x) = −T · logsumexp(logits / T): low for confident ID inputs."""
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


class _LogitDetector(Detector):
    """Reads logits: the scored set's own, else the head of the ID training set applied to its features."""

    needs = ("logits",)
    _state = ("head",)

    def _fit(self, train: Features) -> None:
        self.head = train.head

    def _logits(self, x: Features, start: int, stop: int) -> torch.Tensor:
        if x.logits is not None:
            return block(x.logits, start, stop)
        if self.head is None:
            raise ValueError(
                f"detector {self.name} needs logits: the scored features carry none and the ID training "
                "features had no head"
            )
        return self.head(block(x.features, start, stop))


class _TemperatureDetector(_LogitDetector):
    """A logit detector with a softmax temperature ``temperature`` (1)."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature)
        self.temperature = temperature


@register_detector
class MSP(_LogitDetector):
    """−max_c softmax(logits)_c."""

    name = "msp"

    def _score(self, x, start, stop):
        return -self._logits(x, start, stop).softmax(dim=1).amax(dim=1)


@register_detector
class MCM(_TemperatureDetector):
    """MCM (Ming et al. 2022): −max_c softmax(cosines / T)_c, T = ``temperature`` (1), on a vision-language
    model's class cosines (a prompt run's logits)."""

    name = "mcm"
    reads_cosines = True

    def _score(self, x, start, stop):
        from rankopt.prompts.learners import mcm

        return mcm(self._logits(x, start, stop), self.temperature)


@register_detector
class GLMCM(_TemperatureDetector):
    """GL-MCM (Miyai et al. 2023; GalLoP's score): MCM of the global cosines plus −max over local features
    and classes of softmax_c(local cosines / T), T = ``temperature`` (1)."""

    name = "gl_mcm"
    needs = ("logits", "local_logits")
    reads_cosines = True

    def _score(self, x, start, stop):
        from rankopt.prompts.learners import gl_mcm

        if x.local_logits is None or x.logits is None:
            raise ValueError("detector gl_mcm needs logits and local_logits in the features it scores")
        g = block(x.logits, start, stop)
        local = block(x.local_logits, start, stop).reshape(len(g), -1, g.shape[1])
        return gl_mcm(g, local, self.temperature)


@register_detector
class MaxLogit(_LogitDetector):
    """−max_c logit_c."""

    name = "maxlogit"

    def _score(self, x, start, stop):
        return -self._logits(x, start, stop).amax(dim=1)


@register_detector
class Energy(_TemperatureDetector):
    """−T · logsumexp(logits / T), T = ``temperature`` (1)."""

    name = "energy"

    def _score(self, x, start, stop):
        return energy(self._logits(x, start, stop), self.temperature)


@register_detector
class GEN(_LogitDetector):
    """Generalised entropy: mean over the top-M probabilities of p^γ (1 − p)^γ (γ = 0.1; M = all
    classes by default; p clamped to [1e-7, 1 − 1e-7]). Larger for flatter softmax outputs."""

    name = "gen"

    def __init__(self, gamma: float = 0.1, top: int | None = None) -> None:
        super().__init__(gamma=gamma, top=top)
        self.gamma, self.top = gamma, top

    def _score(self, x, start, stop):
        p = self._logits(x, start, stop).softmax(dim=1).clamp(1e-7, 1 - 1e-7)
        if self.top is not None:
            p = p.topk(min(self.top, p.shape[1]), dim=1).values
        return (p.pow(self.gamma) * (1 - p).pow(self.gamma)).mean(dim=1)


class _GaussianDetector(FittedGaussian, Detector):
    needs = ("labels",)
    _state = ("means", "cov", "counts")
    pooled = "features"  # which feature set the Gaussians model

    def __init__(self, normalize: bool = False) -> None:
        super().__init__(normalize=normalize)
        self.normalize = normalize

    def _fit(self, train: Features) -> None:
        self.set_gaussian(fit_tied_gaussian(getattr(train, self.pooled), train.labels, self.normalize))

    def _z(self, x: Features, start: int, stop: int) -> torch.Tensor:
        z = block(getattr(x, self.pooled), start, stop)
        return normalise(z) if self.normalize else z


@register_detector
class Mahalanobis(_GaussianDetector):
    """min_c (z − μ_c)ᵀ Σ⁻¹ (z − μ_c), class means and one shared covariance from the ID training set."""

    name = "mahalanobis"

    def _score(self, x, start, stop):
        return self.gaussian.sq_distances(self._z(x, start, stop)).amin(dim=1)


@register_detector
class RelativeMahalanobis(_GaussianDetector):
    """min_c [MD_c(z) − MD_0(z)], MD_0 the distance to one Gaussian fitted on all ID features."""

    name = "rmd"
    _state = ("means", "cov", "counts", "global_mean", "global_cov")

    def _fit(self, train: Features) -> None:
        super()._fit(train)
        x = getattr(train, self.pooled)
        one = fit_tied_gaussian(x, np.zeros(len(x), dtype=np.int64), self.normalize)
        self.global_mean, self.global_cov = one.means, one.cov

    def _score(self, x, start, stop):
        if getattr(self, "_background", None) is None:
            self._background = TiedGaussian(self.global_mean, self.global_cov, torch.ones(1, dtype=torch.float64))
        z = self._z(x, start, stop)
        return (self.gaussian.sq_distances(z) - self._background.sq_distances(z)).amin(dim=1)


@register_detector
class GMMPrior(_GaussianDetector):
    """−log p_GMM(z): the negative log-density of the tied-covariance class mixture (weights ∝ class
    counts) on L2-normalised features — HEAT's GMM prior energy, and a detector of its own (SSD+)."""

    name = "gmm"

    def __init__(self, normalize: bool = True) -> None:
        super().__init__(normalize=normalize)

    def _score(self, x, start, stop):
        return -self.gaussian.log_density(self._z(x, start, stop))


@register_detector
class GMMStdPrior(GMMPrior):
    """The GMM prior on std-pooled features (HEAT-GMM-std's prior)."""

    name = "gmm_std"
    needs = ("labels", "std_features")
    pooled = "std_features"


@register_detector
class KNN(Detector):
    """Distance of the L2-normalised feature to its k-th nearest ID training feature (k = 50), exact,
    through rankopt.search (blocks sized from ``memory_budget``; backend torch or faiss)."""

    name = "knn"
    _state = ("bank",)

    def __init__(self, k: int = 50, backend: str = "torch", memory_budget: int = 1 << 30) -> None:
        super().__init__(k=k, backend=backend, memory_budget=memory_budget)
        if k < 1:
            raise ValueError(f"knn: k must be >= 1; got {k}")
        self.k, self.backend, self.memory_budget = k, backend, memory_budget

    def _fit(self, train: Features) -> None:
        if self.k > len(train):
            raise ValueError(f"knn: k={self.k} exceeds the {len(train)} ID training features")
        self.bank = torch.cat([normalise(block(train.features, a, b)).float() for a, b in row_blocks(len(train))])

    def _score(self, x, start, stop):
        from rankopt.search import knn

        sims, _ = knn(
            block(x.features, start, stop).float(),
            self.k,
            self.bank,
            similarity="cosine",
            backend=self.backend,
            memory_budget=self.memory_budget,
        )
        return (2 - 2 * sims[:, -1].double()).clamp_min(0).sqrt()


class _HeadDetector(Detector):
    needs = ("head",)
    _state = ("head",)

    def _fit(self, train: Features) -> None:
        self.head = train.head


class _ShapingDetector(_HeadDetector):
    """Activation shaping at a ``percentile`` (a fraction in (0, 1); each class's published default)."""

    default_percentile: float = 0.9

    def __init__(self, percentile: float | None = None) -> None:
        percentile = self.default_percentile if percentile is None else percentile
        if not 0 < percentile < 1:
            raise ValueError(f"{self.name}: percentile must be a fraction in (0, 1); got {percentile}")
        super().__init__(percentile=percentile)
        self.percentile = percentile


def percentile_of(x: np.ndarray, q: float, max_values: int = 20_000_000, seed: int = 0) -> float:
    """The q-th percentile (q in [0, 1]) of every value of x (N, d); beyond ``max_values`` values, of a
    seeded sample of whole rows (ImageNet-size sets: 2.6e9 values)."""
    n, d = x.shape
    rows = (
        np.arange(n)
        if n * d <= max_values
        else np.sort(np.random.default_rng(seed).choice(n, max_values // d, replace=False))
    )
    return float(np.percentile(np.asarray(x[rows]).ravel(), 100 * q))


@register_detector
class ReAct(_ShapingDetector):
    """Energy of the head on features clipped at the ``percentile`` (0.9) of ID training activations."""

    name = "react"
    _state = ("head", "threshold")

    def _fit(self, train):
        super()._fit(train)
        self.threshold = percentile_of(train.features, self.percentile)

    def _score(self, x, start, stop):
        return energy(self.head(block(x.features, start, stop).clamp(max=self.threshold)))


def _top_mask(z: torch.Tensor, percentile: float) -> torch.Tensor:
    """Per row, True on the activations above the row's ``percentile`` (the k = d − round(d·p) largest)."""
    k = max(1, z.shape[1] - int(round(z.shape[1] * percentile)))
    idx = z.topk(k, dim=1).indices
    return torch.zeros_like(z, dtype=torch.bool).scatter_(1, idx, True)


@register_detector
class ASH(_ShapingDetector):
    """ASH-S: zero each feature vector below its ``percentile`` (0.9), scale the rest by
    exp(Σ all / Σ kept), then the energy of the head."""

    name = "ash"

    def _score(self, x, start, stop):
        z = block(x.features, start, stop)
        keep = _top_mask(z, self.percentile)
        kept = z * keep
        scale = z.sum(1) / kept.sum(1).clamp_min(1e-12)
        return energy(self.head(kept * scale.exp()[:, None]))


@register_detector
class SCALE(_ShapingDetector):
    """SCALE: features scaled by exp(Σ all / Σ of the top (1 − ``percentile``)) without pruning
    (percentile 0.85), then the energy of the head."""

    name = "scale"
    default_percentile = 0.85

    def _score(self, x, start, stop):
        z = block(x.features, start, stop)
        top = (z * _top_mask(z, self.percentile)).sum(1)
        return energy(self.head(z * (z.sum(1) / top.clamp_min(1e-12)).exp()[:, None]))


@register_detector
class ViM(_HeadDetector):
    """Virtual-logit matching: α‖(z − u) projected on the ID features' least-variance subspace‖ −
    logsumexp(logits), u = −W⁺b, the principal subspace of dimension ``principal_dim`` (default
    min(256, d/2)), α = mean max logit / mean residual norm on ID training features."""

    name = "vim"
    _state = ("head", "origin", "residual_basis", "alpha")

    def __init__(self, principal_dim: int | None = None) -> None:
        super().__init__(principal_dim=principal_dim)
        self.principal_dim = principal_dim

    def _fit(self, train):
        super()._fit(train)
        d = train.dim
        k = self.principal_dim if self.principal_dim is not None else min(256, d // 2)
        if not 1 <= k < d:
            raise ValueError(f"vim: principal_dim must be in [1, {d - 1}] for {d}-d features; got {k}")
        self.origin = -torch.linalg.pinv(self.head.weight) @ self.head.bias  # (d,)
        cov = torch.zeros(d, d, dtype=torch.float64)
        for a, b in row_blocks(len(train)):
            c = block(train.features, a, b) - self.origin
            cov += c.T @ c
        _, vecs = torch.linalg.eigh(cov / len(train))  # ascending eigenvalues
        self.residual_basis = vecs[:, : d - k].contiguous()  # (d, d − k)
        max_logit = norm = 0.0
        for a, b in row_blocks(len(train)):
            z = block(train.features, a, b)
            max_logit += float(self.head(z).amax(1).sum())
            norm += float(((z - self.origin) @ self.residual_basis).norm(dim=1).sum())
        self.alpha = max_logit / max(norm, 1e-12)

    def _score(self, x, start, stop):
        z = block(x.features, start, stop)
        virtual = self.alpha * ((z - self.origin) @ self.residual_basis).norm(dim=1)
        return virtual - torch.logsumexp(self.head(z), dim=1)
