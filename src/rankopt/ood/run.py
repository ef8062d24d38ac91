"""`rankopt ood`: fit detectors on ID training features, score the ID test set and each OOD set,
compute the metrics, and write ``ood.json``, ``ood_scores.npz`` and the fitted detectors.

On a run folder: features of the run's selected checkpoint (or of a frozen packaged backbone) for its
training split (ID train, less the carved validation items), its test queries (ID test) and the
offline OOD sets (rankopt.ood.sets), cached under ``RUN/ood/<backbone>/``. On features users bring:
the same from npz files."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rankopt.atomic import atomic_write, atomic_write_text
from rankopt.ood.detector import DETECTORS, Detector, create_detector, detector_names, save_detector
from rankopt.ood.features import Features, fit_linear_probe, load_features
from rankopt.ood.heat import Composition
from rankopt.ood.metrics import METRICS, ood_metrics

__all__ = ["ood_run_folder", "ood_feature_files", "evaluate_detectors", "DEFAULT_SETS", "ProgressFactory"]

log = logging.getLogger(__name__)
DEFAULT_SETS = ("mnist", "digits", "textures", "faces", "noise")
ProgressFactory = Callable[[str, str], object]  # (label, unit) → a context manager yielding progress(done, total)


def _no_progress(label: str, unit: str):
    from contextlib import nullcontext

    return nullcontext(None)


def with_head(train: Features) -> Features:
    """Give ID training features a linear head when they have neither logits nor a head but labels:
    a probe fitted on them, so that logit-based detectors exist for embedding models."""
    if train.head is None and train.logits is None and train.labels is not None:
        log.info("fitting a linear probe on %d ID training features (no classifier head given)", len(train))
        train.head = fit_linear_probe(train)
    return train


def evaluate_detectors(
    train: Features,
    id_test: Features,
    ood: dict[str, Features],
    names: list[str],
    out_dir: Path,
    prefix: str = "ood",
    options: dict | None = None,
    progress: ProgressFactory = _no_progress,
    extra: dict | None = None,
) -> dict:
    """Fit every detector of ``names`` on ``train``, score ``id_test`` and each OOD set, write
    ``<prefix>.json`` (with ``extra`` keys), ``<prefix>_scores.npz`` and ``<prefix>_detectors/<name>.pt``;
    returns the JSON object.
    A detector the features cannot feed (no labels, no std_features, no head) is skipped with the
    reason recorded under "skipped"."""
    if not ood:
        raise ValueError("no OOD set to score against")
    options = options or {}
    for x in [id_test, *ood.values()]:
        if x.dim != train.dim:
            raise ValueError(f"features have dimension {x.dim} but the ID training features have {train.dim}")
    fitted: dict[str, Detector] = {}
    results, skipped, scores, timing = {}, {}, {}, {}
    det_dir = out_dir / f"{prefix}_detectors"
    for name in names:
        det = create_detector(name, **options.get(name, {}))
        if isinstance(det, Composition):  # members this call already fitted are reused, not trained twice
            own = det.options["component_options"]
            for k, m in enumerate(det.members):
                if m.name in fitted and m.name not in own:
                    det.members[k] = fitted[m.name]
                    own[m.name] = fitted[m.name].options  # so that the saved composition rebuilds them alike
        lacking = det.missing(train)
        if lacking:
            skipped[name] = f"needs {', '.join(lacking)}"
            log.warning("%s skipped: the ID features lack %s", name, ", ".join(lacking))
            continue
        start = time.perf_counter()
        with progress(f"fitting {name}", "batch") as bar:
            det.set_progress(bar)
            det.fit(train)
            det.set_progress(None)
        fit_s = time.perf_counter() - start
        fitted[name] = det
        start = time.perf_counter()
        s_id = det.score(id_test)
        per = {}
        scores[f"{name}/id"] = s_id
        for set_name, x in ood.items():
            s = det.score(x)
            scores[f"{name}/{set_name}"] = s
            per[set_name] = ood_metrics(s_id, s)
        timing[name] = {"fit_s": round(fit_s, 3), "score_s": round(time.perf_counter() - start, 3)}
        results[name] = {"per_ood": per, "mean": {m: float(np.mean([v[m] for v in per.values()])) for m in METRICS}}
        save_detector(det, det_dir / f"{name}.pt")
        threshold = float(np.quantile(s_id, 0.95, method="inverted_cdf"))  # accepts 95% of the ID test set
        atomic_write_text(
            det_dir / f"{name}.json",
            json.dumps({"name": name, "threshold_95_id": threshold, "options": det.options}, indent=2),
        )
    out = {
        "detectors": results,
        "skipped": skipped,
        "n_id_train": len(train),
        "n_id_test": len(id_test),
        "n_ood": {k: len(v) for k, v in ood.items()},
        "timing": timing,
        "conventions": {
            "scores": "larger = more OOD",
            "auroc": "OOD positive",
            "aupr_in": "ID positive",
            "aupr_out": "OOD positive",
            "fpr95_id": "fraction of OOD accepted when 95% of ID is accepted (HEAT, most papers)",
            "fpr95_ood": "fraction of ID flagged when 95% of OOD is flagged (OpenOOD, pytorch-ood)",
        },
        **(extra or {}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f"{prefix}_scores.npz", lambda f: np.savez(f, **scores))
    atomic_write_text(out_dir / f"{prefix}.json", json.dumps(out, indent=2))
    return out


def check_names(
    detectors: list[str] | None, sets: list[str] | None, cosines: bool = False
) -> tuple[list[str], list[str] | None]:
    from rankopt.ood.sets import OOD_SETS

    names = detector_names(cosines=cosines) if not detectors else [DETECTORS.entry(d).name for d in detectors]
    if sets is not None:
        sets = [OOD_SETS.entry(s).name for s in sets]
    return names, sets


def ood_run_folder(
    run_dir: str | Path,
    sets: list[str] | None = None,
    detectors: list[str] | None = None,
    backbone: str | None = None,
    options: dict | None = None,
    seed: int = 0,
    progress: ProgressFactory = _no_progress,
) -> dict:
    """`rankopt ood RUN_DIR`: the run's ID train / test features (cached), the OOD sets, every detector."""
    from rankopt.ood.extract import cached_features, extract, packaged_extractor, run_backbone_extractor, run_extractor
    from rankopt.ood.sets import load_ood_set
    from rankopt.runs import RunFolder
    from rankopt.train.run import run_splits

    folder = RunFolder(run_dir)
    if folder.task() == "prompts":  # a vision-language run: its towers and prompts make the features
        from rankopt.prompts.ood import ood_prompt_run

        if backbone is not None:
            raise ValueError("--backbone goes with an image run; a prompt run's features are its own towers'")
        names, sets = check_names(detectors, sets, cosines=True)
        return ood_prompt_run(folder, folder.config(), sets, names, options, seed, progress)
    names, sets = check_names(detectors, sets)
    extractor, cfg = run_extractor(folder)
    if backbone is not None and Path(backbone).is_dir():  # another run's backbone, e.g. a pre-training run
        extractor = run_backbone_extractor(RunFolder(backbone))
        backbone = Path(backbone).resolve().name
    elif backbone is not None:
        extractor = packaged_extractor(backbone)
    trained_classes = cfg.data.options.get("classes") if cfg.data.name == "fashion-mnist" else None
    if sets is None:
        sets = list(DEFAULT_SETS) + (["heldout"] if trained_classes is not None else [])
    tag = backbone or "model"
    cache = folder.file("ood") / tag
    splits, note = run_splits(folder, cfg)
    if note:
        log.warning(note)

    def features_of(name: str, data: Callable[[], object], fit_probe: bool = False) -> Features:
        def make():  # only on a cache miss: the images are not even loaded otherwise
            with progress(f"features: {name}", "image") as bar:
                feats = extract(extractor, data(), num_workers=cfg.data.num_workers, progress=bar)
            return with_head(feats) if fit_probe else feats

        return cached_features(cache, name, extractor.source, make)

    prefix = "ood" if backbone is None else f"ood-{backbone}"
    with folder.lock():  # the results go into the run folder: one writer at a time
        train, id_test = (
            features_of("id_train", lambda: splits.train, fit_probe=True),
            features_of("id_test", lambda: splits.test.queries),
        )
        ood = {
            s: features_of(
                f"ood_{s}", lambda s=s: load_ood_set(s, seed, trained_classes=trained_classes, data_dir=cfg.data.root)
            )
            for s in sets
        }
        return evaluate_detectors(
            train, id_test, ood, names, folder.path, prefix, options, progress, extra={"backbone": tag}
        )


def ood_feature_files(
    id_train: str | Path,
    id_test: str | Path,
    ood_files: list[str | Path],
    out_dir: str | Path,
    detectors: list[str] | None = None,
    options: dict | None = None,
    progress: ProgressFactory = _no_progress,
) -> dict:
    """`rankopt ood --features ID_TRAIN.npz --id-test ID_TEST.npz --ood-features a.npz,b.npz`: each OOD
    set named by its file's stem."""
    names, _ = check_names(detectors, None)
    train = with_head(load_features(id_train, "ID training features"))
    test = load_features(id_test, "ID test features")
    ood = {}
    for f in ood_files:
        stem = Path(f).stem
        if stem in ood:
            raise ValueError(f"two OOD files are named {stem!r}: their scores would collide")
        ood[stem] = load_features(f, "OOD features")
    return evaluate_detectors(train, test, ood, names, Path(out_dir), "ood", options, progress)
