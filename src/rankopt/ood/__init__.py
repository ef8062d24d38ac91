"""Post-hoc out-of-distribution detection in the feature space of a trained model: HEAT's hybrid
energies and their composition, the classical detectors, and the OOD metrics (both FPR95
conventions). Features in, outlier scores out (larger = more OOD)."""

from rankopt.ood.baselines import (
    ASH,
    GEN,
    KNN,
    MSP,
    SCALE,
    Energy,
    GMMPrior,
    GMMStdPrior,
    Mahalanobis,
    MaxLogit,
    ReAct,
    RelativeMahalanobis,
    ViM,
)
from rankopt.ood.detector import DETECTORS, Detector, create_detector, detector_names, load_detector, save_detector
from rankopt.ood.features import Features, LinearHead, fit_linear_probe, load_features, save_features
from rankopt.ood.heat import HEAT, HEATEL, HEATGMM, Composition, HEATGMMStd, compose
from rankopt.ood.metrics import METRICS, ood_metrics

__all__ = [
    "Detector",
    "Features",
    "LinearHead",
    "fit_linear_probe",
    "load_features",
    "save_features",
    "save_detector",
    "load_detector",
    "ood_metrics",
    "METRICS",
    "DETECTORS",
    "create_detector",
    "detector_names",
    "MSP",
    "MaxLogit",
    "Energy",
    "GEN",
    "Mahalanobis",
    "RelativeMahalanobis",
    "KNN",
    "ViM",
    "ReAct",
    "ASH",
    "SCALE",
    "GMMPrior",
    "GMMStdPrior",
    "HEATGMM",
    "HEATGMMStd",
    "HEATEL",
    "HEAT",
    "Composition",
    "compose",
]
