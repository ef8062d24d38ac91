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
    DETECTORS.register(_cls.name, _cls, doc=(_cls.__doc__ or "").strip().splitlines()[0])


def create_detector(name: str, **options):
    """The detector ``name`` with ``options``; an option it does not take is an error naming those it does."""
    import difflib
    import inspect

    entry = DETECTORS.entry(name)
    accepted = [p for p in inspect.signature(entry.factory).parameters if p != "self"]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"detector {entry.name} has no option {unknown[0]!r}{hint}; its options: {', '.join(accepted) or 'none'}")
    return entry.factory(**options)


def detector_names(include_compose: bool = False) -> list[str]:
    """The detectors a default `rankopt ood` runs (the generic composition is for users' own lists)."""
    return [n for n in DETECTORS.names() if include_compose or n != "compose"]
