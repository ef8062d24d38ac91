"""Every OOD detector by the name users type (``--detectors``), with what it needs declared."""

from __future__ import annotations

from rankopt.ood import baselines, heat
from rankopt.registry import Registry

__all__ = ["DETECTORS", "create_detector", "detector_names"]

DETECTORS = Registry("OOD detector", normalize=lambda s: s.lower().replace("-", "_"))
for _cls in (baselines.MSP, baselines.MaxLogit, baselines.Energy, baselines.GEN, baselines.Mahalanobis,
             baselines.RelativeMahalanobis, baselines.KNN, baselines.ViM, baselines.ReAct, baselines.ASH,
             baselines.SCALE, baselines.GMMPrior, baselines.GMMStdPrior, heat.HEATGMM, heat.HEATGMMStd, heat.HEATEL,
             heat.Composition, heat.HEAT):
    DETECTORS.register(_cls.name, _cls, needs=_cls.needs if isinstance(_cls.needs, tuple) else None,
                       doc=(_cls.__doc__ or "").strip().splitlines()[0])


def create_detector(name: str, **options):
    return DETECTORS.create(name, **options)


def detector_names(include_compose: bool = False) -> list[str]:
    """The detectors a default `rankopt ood` runs (the generic composition is for users' own lists)."""
    return [n for n in DETECTORS.names() if include_compose or n != "compose"]
