"""HEAT (Lafon, Ramzi, Rambour, Thome, ICML 2023): hybrid energy-based models in the feature space
of a frozen backbone, and their composition.

One hybrid energy:  E_h(z) = E_prior(z) / T_prior + E_θ(z) / T,  density ∝ exp(−E_h). The prior is a
fixed classical energy — the tied-covariance GMM on normalised avg-pooled features (HEAT-GMM), the
same on std-pooled features (HEAT-GMM-std), or the energy of the logits (HEAT-EL); E_θ is a small MLP
trained by contrastive divergence:

    L(θ) = mean E_θ(real) − mean E_θ(neg) + λ (mean E_θ(real)² + mean E_θ(neg)²)

where the negatives are proposals (GMM samples, or N(0, I) for EL) and the same proposals moved by
short-run SGLD on the full hybrid energy, z ← z − η_t ∇E_h(z) + σ_t ε (η_t, σ_t decaying with power 2
to a tenth of their start), projected after every step (ReLU when the features are non-negative, back
to the sphere for normalised priors). Adam with β = (0, 0.999). reference/ood-and-others.md §1.

Every difference from the authors' CIFAR-10 training scripts (reference §1.6), with its reason; each
is an option, so the authors' values can be given:

============================  ======================  ==================  ==============================
setting                       authors (CIFAR-10)      here (default)      why
============================  ======================  ==================  ==============================
hidden layers of the MLP      one Linear used 4×      4 distinct layers   their tying looks accidental
                              (tied)                  (``tied=True``)     (a list of one module ×4)
MLP width                     1,024                   128 (``hidden``)    64× fewer multiply-adds on a CPU
SGLD steps GMM / GMM-std / EL 40 / 1 / 50             20 / 20 / 40        one setting for both GMM priors,
                                                      (``steps``)         EL shortened for CPU time; not
                                                                          tuned on OOD data
batch GMM / GMM-std / EL      1,024 / 1,024 / 256     256 (``batch_size``)  the CPU; EL's is theirs
epochs, learning rate         20, 1e-5 (×0.1 at 10)   5, 1e-4 (×0.1 half  a 4× shorter run needs a larger
                                                      way)                rate to move the residual
training rows                 all                     a seeded 20,000     bounded time on ImageNet-size
                                                      (``max_train``)     feature sets
T_prior                       1e3 (GMM), 1 (EL)       "auto": the prior   their 1e3–5e3 fit 512–2048-d
                                                      energy's std        features only (the spec's warning)
composition's calibration     one batch of 256        10,000 rows         a steadier z-scoring
============================  ======================  ==================  ==============================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from rankopt.ood.baselines import energy
from rankopt.ood.detector import Detector, create_detector, register_detector
from rankopt.ood.features import Features, block, row_blocks
from rankopt.ood.gaussian import FittedGaussian, fit_tied_gaussian, normalise

__all__ = [
    "ResidualMLP",
    "HybridEnergy",
    "HEATGMM",
    "HEATGMMStd",
    "HEATEL",
    "Composition",
    "HEAT",
    "sgld",
    "cd_loss",
    "compose",
]

log = logging.getLogger(__name__)


class ResidualMLP(nn.Module):
    """d → hidden (LeakyReLU 0.2) → ``n_hidden`` × [hidden → hidden (LeakyReLU 0.2)] → 1. ``tied``:
    the hidden block is one Linear applied n_hidden times (the authors' released CIFAR model)."""

    def __init__(self, dim: int, hidden: int = 256, n_hidden: int = 4, tied: bool = False) -> None:
        super().__init__()
        self.first = nn.Linear(dim, hidden)
        blocks = (
            [nn.Linear(hidden, hidden)] * n_hidden if tied else [nn.Linear(hidden, hidden) for _ in range(n_hidden)]
        )
        self.hidden = nn.ModuleList(blocks)  # ModuleList keeps one entry per use; tied entries share the object
        self.last = nn.Linear(hidden, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.act(self.first(z))
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.last(h).squeeze(1)


def cd_loss(e_real: torch.Tensor, e_neg: torch.Tensor, l2: float) -> torch.Tensor:
    """Contrastive divergence with the energy-magnitude regulariser of HEAT."""
    return e_real.mean() - e_neg.mean() + l2 * (e_real.pow(2).mean() + e_neg.pow(2).mean())


def _decay(start: float, t: int, steps: int) -> float:
    """Polynomial decay (power 2) from start to start/10 over the steps."""
    end = start / 10
    return (start - end) * (1 - t / max(steps, 1)) ** 2 + end


def sgld(
    z: torch.Tensor,
    energy_fn: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    step_size: float,
    noise: float,
    project: Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Short-run SGLD: z ← project(z − η_t ∇_z E(z) + σ_t ε), η_t, σ_t decaying (power 2) to a tenth."""
    z = project(z.detach())
    for t in range(steps):
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy_fn(z).sum(), z)
        eps = torch.randn(z.shape, generator=generator, dtype=z.dtype)
        z = project(z.detach() - _decay(step_size, t, steps) * grad + _decay(noise, t, steps) * eps)
    return z.detach()


class HybridEnergy(Detector):
    """A prior energy plus a learned residual (the base of HEAT-GMM, HEAT-GMM-std, HEAT-EL).

    hidden, n_hidden, tied: the residual MLP (128 wide, 4 hidden layers, distinct); epochs (5) over a
    seeded sample of ``max_train`` (20,000) ID training features in batches of ``batch_size`` (256), Adam
    at ``lr`` (1e-4, ×0.1 half-way); steps, step_size, noise: SGLD (per-prior defaults: step sizes,
    noise and λ are the authors' CIFAR-10 values, the step counts shorter — see the module docstring's
    table); l2: λ of the CD loss; prior_temperature: T_prior ("auto": the prior energy's
    std over the ID training features); temperature: T of the residual (1); seed: everything random.
    """

    pooled = "features"
    normalized = True
    _state = ("mlp", "prior_scale", "nonnegative")
    # per-prior defaults: the authors' CIFAR-10 step sizes, noise and λ; step counts in the module's table
    defaults: dict = {}

    def __init__(
        self,
        *,
        hidden: int = 128,
        n_hidden: int = 4,
        tied: bool = False,
        epochs: int = 5,
        batch_size: int = 256,
        lr: float = 1e-4,
        steps: int | None = None,
        step_size: float | None = None,
        noise: float | None = None,
        l2: float | None = None,
        prior_temperature: float | str = "auto",
        temperature: float = 1.0,
        max_train: int | None = 20000,
        seed: int = 0,
    ) -> None:
        given = dict(
            hidden=hidden,
            n_hidden=n_hidden,
            tied=tied,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            steps=steps,
            step_size=step_size,
            noise=noise,
            l2=l2,
            prior_temperature=prior_temperature,
            temperature=temperature,
            max_train=max_train,
            seed=seed,
        )
        for k, v in self.defaults.items():
            if given[k] is None:
                given[k] = v
        super().__init__(**given)
        for k, v in given.items():
            setattr(self, k, v)
        if not (prior_temperature == "auto" or (isinstance(prior_temperature, (int, float)) and prior_temperature > 0)):
            raise ValueError(f"{self.name}: prior_temperature must be 'auto' or > 0; got {prior_temperature!r}")
        self.mlp: ResidualMLP | None = None
        self.nonnegative = False

    # --- the prior (implemented per subclass) ----------------------------------------------------
    def prior(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def propose(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _fit_prior(self, train: Features) -> None:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------
    def _build(self) -> None:
        self.mlp = ResidualMLP(self._dim(), self.hidden, self.n_hidden, self.tied)  # float32: the training's cost

    def _dim(self) -> int:
        return self.std_dim if self.pooled == "std_features" else self.dim

    def project(self, z: torch.Tensor) -> torch.Tensor:
        if self.nonnegative:
            z = z.clamp_min(0)
        return normalise(z) if self.normalized else z

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        return normalise(z) if self.normalized else z

    def hybrid(self, z: torch.Tensor) -> torch.Tensor:
        """E_prior(z) / T_prior + E_θ(z) / T (the prior in float64, the MLP in float32, z's dtype out)."""
        return (self.prior(z.double()) / self.prior_scale).to(z.dtype) + (self.mlp(z.float()) / self.temperature).to(
            z.dtype
        )

    def _fit(self, train: Features) -> None:
        x = getattr(train, self.pooled)
        self.nonnegative = bool(all(float(np.asarray(x[a:b]).min()) >= 0 for a, b in row_blocks(len(x))))
        self._fit_prior(train)
        gen = torch.Generator().manual_seed(self.seed)
        rows = np.arange(len(x))
        if self.max_train is not None and len(rows) > self.max_train:  # a seeded subset bounds the fit's time
            rows = np.sort(np.random.default_rng(self.seed).choice(len(x), self.max_train, replace=False))
        real_all = self._prepare(torch.as_tensor(np.asarray(x[rows]), dtype=torch.float64))
        with torch.no_grad():
            p = torch.cat([self.prior(real_all[a:b]) for a, b in row_blocks(len(real_all), 4096)])
        real_all = real_all.float()
        self.prior_scale = (
            float(p.std().clamp_min(1e-12)) if self.prior_temperature == "auto" else float(self.prior_temperature)
        )
        torch.manual_seed(self.seed)
        self._build()
        opt = torch.optim.Adam(self.mlp.parameters(), lr=self.lr, betas=(0.0, 0.999))
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[max(1, self.epochs // 2)], gamma=0.1)
        n_batches = math.ceil(len(real_all) / self.batch_size)
        total = self.epochs * n_batches
        for epoch in range(self.epochs):
            order = torch.randperm(len(real_all), generator=gen)
            for i in range(n_batches):
                real = real_all[order[i * self.batch_size : (i + 1) * self.batch_size]]
                start = self.project(self.propose(len(real), gen).float())
                self.mlp.eval()
                moved = sgld(start, self.hybrid, self.steps, self.step_size, self.noise, self.project, gen)
                self.mlp.train()
                neg = torch.cat([moved, start])
                real = real + 1e-4 * torch.randn(real.shape, generator=gen, dtype=real.dtype)
                neg = neg + 1e-4 * torch.randn(neg.shape, generator=gen, dtype=neg.dtype)
                loss = cd_loss(self.mlp(real) / self.temperature, self.mlp(neg) / self.temperature, self.l2)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.progress is not None:
                    self.progress(epoch * n_batches + i + 1, total)
            sched.step()
            log.info("%s epoch %d/%d: CD loss %.4f", self.name, epoch + 1, self.epochs, float(loss.detach()))
        self.mlp.eval()

    def _score(self, x, start, stop):
        return self.hybrid(self._prepare(block(getattr(x, self.pooled), start, stop)))


class _GMMHybrid(FittedGaussian, HybridEnergy):
    _state = ("mlp", "prior_scale", "nonnegative", "means", "cov", "counts")
    needs = ("labels",)
    defaults = dict(steps=20, step_size=1e-4, noise=5e-3, l2=10.0)

    def _fit_prior(self, train):
        self.set_gaussian(fit_tied_gaussian(getattr(train, self.pooled), train.labels, normalize=True))

    def prior(self, z):
        return -self.gaussian.log_density(z)

    def propose(self, n, generator):
        return self.gaussian.sample(n, generator)


@register_detector
class HEATGMM(_GMMHybrid):
    """HEAT-GMM: the tied-covariance GMM prior on normalised avg-pooled features, plus a residual."""

    name = "heat_gmm"


@register_detector
class HEATGMMStd(_GMMHybrid):
    """HEAT-GMM-std: the same on std-pooled features."""

    name = "heat_gmm_std"
    pooled = "std_features"
    needs = ("labels", "std_features")


@register_detector
class HEATEL(HybridEnergy):
    """HEAT-EL: the energy of the head's logits on raw avg-pooled features, plus a residual; SGLD
    starts from N(0, I)."""

    name = "heat_el"
    normalized = False
    needs = ("head",)
    _state = ("mlp", "prior_scale", "nonnegative", "head")
    defaults = dict(steps=40, step_size=1e-1, noise=1e-1, l2=0.1)

    def _fit_prior(self, train):
        self.head = train.head

    def prior(self, z):
        return energy(self.head(z))

    def propose(self, n, generator):
        return torch.randn(n, self.dim, generator=generator, dtype=torch.float64)


def compose(energies: list[torch.Tensor], beta: float) -> torch.Tensor:
    """E^β of standardised energies: β = 0 the sum (a product of experts), β > 0 logsumexp(β·E)/β (a
    soft maximum), β = ±inf the maximum / minimum."""
    e = torch.stack(energies, dim=1)  # (B, K)
    if beta == 0:
        return e.sum(1)
    if math.isinf(beta):
        return e.amax(1) if beta > 0 else e.amin(1)
    return torch.logsumexp(beta * e, dim=1) / beta


@register_detector
class Composition(Detector):
    """Detectors combined after z-scoring each with its mean and std over ID training features
    (a seeded sample of ``calibration`` rows; the authors use one batch of 256)."""

    name = "compose"

    def __init__(
        self,
        components: list[str] | tuple[str, ...] = ("heat_gmm", "heat_gmm_std", "heat_el"),
        beta: float = 0.0,
        calibration: int = 10000,
        seed: int = 0,
        component_options: dict | None = None,
    ) -> None:
        super().__init__(
            components=list(components),
            beta=beta,
            calibration=calibration,
            seed=seed,
            component_options=component_options or {},
        )
        if not components:
            raise ValueError(f"{self.name}: no component detector to compose")
        self.beta, self.calibration, self.seed = float(beta), calibration, seed
        self.members = self._members(list(components))
        self.mean = self.std = None

    def _members(self, names: list[str]) -> list[Detector]:
        opts = self.options["component_options"]
        return [create_detector(n, **opts.get(n, {})) for n in names]

    @property
    def needs(self) -> tuple[str, ...]:  # what every member needs
        return tuple(sorted({n for m in self.members for n in m.needs}))

    def _fit(self, train):
        for m in self.members:
            if m.dim is None:  # not already fitted (e.g. by the same run's own heat_gmm, reused as it is)
                m.fit(train)
        rows = np.arange(len(train))
        if len(rows) > self.calibration:
            rows = np.sort(np.random.default_rng(self.seed).choice(len(rows), self.calibration, replace=False))
        sample = _take(train, rows)
        scores = torch.stack([torch.as_tensor(m.score(sample)) for m in self.members])  # (K, n)
        self.mean, self.std = scores.mean(1), scores.std(1).clamp_min(1e-12)

    def set_progress(self, progress) -> None:
        super().set_progress(progress)
        for m in self.members:
            m.set_progress(progress)

    def _score(self, x, start, stop):  # the members read the same rows (their checks were made by score)
        e = [
            (m._score(x, start, stop).to(torch.float64) - self.mean[k]) / self.std[k]
            for k, m in enumerate(self.members)
        ]
        return compose(e, self.beta)

    def state_dict(self):
        out = {**self._header(), "mean": self.mean, "std": self.std}
        for k, m in enumerate(self.members):
            out.update({f"m{k}.{key}": v for key, v in m.state_dict().items()})
        return out

    def load_state_dict(self, state):
        self._read_header(state)
        self.mean, self.std = state["mean"], state["std"]
        for k, m in enumerate(self.members):
            m.load_state_dict({key[len(f"m{k}.") :]: v for key, v in state.items() if key.startswith(f"m{k}.")})


@register_detector
class HEAT(Composition):
    """HEAT: the composition (z-scored sum by default) of HEAT-GMM, HEAT-GMM-std and HEAT-EL; a member
    whose input the ID features lack (no std_features, no head) is left out, with a warning, and the
    fitted detector records the members it has."""

    name = "heat"

    def missing(self, feats):
        """Nothing, while one member can be fitted; what every member needs otherwise."""
        lacking = [m.missing(feats) for m in self.members]
        return [] if any(not x for x in lacking) else sorted({n for x in lacking for n in x})

    def fit(self, train):
        kept = [m for m in self.members if m.dim is not None or not m.missing(train)]
        if not kept:
            raise ValueError(
                f"heat: none of {', '.join(self.options['components'])} can be fitted on these features "
                f"({'; '.join(m.name + ' needs ' + ', '.join(m.missing(train)) for m in self.members)})"
            )
        if len(kept) < len(self.members):
            left = [m.name for m in self.members if m not in kept]
            log.warning(
                "heat: %s left out of the composition (the ID features lack %s)",
                ", ".join(left),
                ", ".join(sorted({n for m in self.members if m not in kept for n in m.missing(train)})),
            )
        self.members = kept
        self.options["components"] = [m.name for m in kept]
        return super().fit(train)


def _take(x: Features, rows: np.ndarray) -> Features:
    sub = lambda a: None if a is None else np.asarray(a[rows])
    return Features(
        np.asarray(x.features[rows]), sub(x.std_features), sub(x.logits), sub(x.labels), x.head, sub(x.local_logits)
    )
