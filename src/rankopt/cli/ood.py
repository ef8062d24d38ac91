"""``rankopt ood``: out-of-distribution detection in a trained model's feature space.

``rankopt ood RUN_DIR`` (or ``--features ...``; the action ``detect`` is the default): fit every
detector on ID training features and score the ID test set and the OOD sets; ``rankopt ood score
DETECTOR NEW.npz``: score new features with a fitted detector. (A run folder named ``score`` or
``detect`` is given as ``./score``.)"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rankopt.atomic import atomic_write
from rankopt.cli.evaluate import metric_list
from rankopt.cli.tables import ood_table
from rankopt.io import check_writable
from rankopt.progress import progress_bar

__all__ = ["register", "default_action"]


def default_action(argv: list[str]) -> list[str]:
    """``rankopt ood RUN ...`` is ``rankopt ood detect RUN ...``: ``detect`` is the default action."""
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    if i is None or argv[i] != "ood" or argv[i + 1 : i + 2] in (["detect"], ["score"], ["-h"], ["--help"]):
        return argv
    return [*argv[: i + 1], "detect", *argv[i + 1 :]]


def _detector_names() -> str:
    from rankopt.ood.detector import DETECTORS

    return ", ".join(n for n in DETECTORS.names() if n != "compose")


def register(groups) -> None:
    import rankopt.ood  # noqa: F401 - fills the detector registry the help texts list
    from rankopt.ood.detector import detector_names
    from rankopt.ood.run import DEFAULT_SETS
    from rankopt.ood.sets import OOD_SETS

    n = len(detector_names())  # what an image run gets by default; a prompt run adds MCM and GL-MCM
    actions = groups.parser_of(
        ("ood", "detect"),
        f"out-of-distribution detection in a model's feature space (HEAT and {n - 1} other detectors; "
        "MCM and GL-MCM on prompt runs)",
    )
    od = actions.add_parser(
        "detect",
        help="(default action) fit the detectors and evaluate them on the OOD sets",
        description=(
            "rankopt ood RUN_DIR: features of the run's selected checkpoint (or --backbone efficientnet_lite0, frozen "
            "ImageNet weights) for its training items (ID train), its test items (ID test) and offline OOD sets; every "
            "detector fitted on ID train; AUROC, AUPR-In/Out and FPR at 95% TPR in both conventions per OOD set; "
            "writes RUN_DIR/ood.json, ood_scores.npz and the fitted detectors (ood_detectors/). "
            "rankopt ood --features ID_TRAIN.npz --id-test ID_TEST.npz --ood-features A.npz,B.npz: the same on "
            "features you bring ('features' (N, d), optional 'std_features', 'logits', 'labels', 'head_weight', "
            "'head_bias')."
        ),
    )
    od.add_argument("run_dir", nargs="?", metavar="RUN_DIR")
    od.add_argument(
        "--ood",
        metavar="SET[,SET...]",
        help=f"OOD sets: {', '.join(OOD_SETS.names())} (heldout: the Fashion-MNIST classes a run did not train "
        f"on); default: {', '.join(DEFAULT_SETS)} (+ heldout where it applies)",
    )
    od.add_argument("--detectors", metavar="NAME[,NAME...]", help=f"{_detector_names()} (default: all)")
    od.add_argument(
        "--option",
        action="append",
        metavar="DETECTOR.KEY=VALUE",
        help="a detector's option, e.g. heat_gmm.epochs=10, knn.k=100, heat.beta=inf (repeatable)",
    )
    od.add_argument(
        "--backbone",
        metavar="NAME|RUN",
        help="features of a frozen packaged backbone (efficientnet_lite0) or of another run's backbone (e.g. "
        "rankopt pretrain's) instead of the run's model; results go to ood-NAME.json",
    )
    od.add_argument("--features", metavar="ID_TRAIN.npz", help="ID training features you bring")
    od.add_argument("--id-test", metavar="ID_TEST.npz", help="ID test features you bring")
    od.add_argument("--ood-features", metavar="A.npz[,B.npz]", help="OOD features you bring (named by file stem)")
    od.add_argument("-o", "--output", help="with --features: the output folder (default .)")
    od.add_argument("--seed", type=int, default=0, help="seed of the sampled OOD sets (textures, noise; default 0)")
    od.add_argument("--json", action="store_true", help="last line: ood.json as one JSON object")
    od.set_defaults(func=run)

    sc = actions.add_parser(
        "score",
        help="score new features with a fitted detector",
        description="rankopt ood score DETECTOR.pt NEW.npz, or RUN_DIR NEW.npz with --detector NAME "
        "(default heat): one outlier score per row of NEW.npz's 'features' (larger = more "
        "OOD), and how many exceed the threshold that accepts 95% of the ID test set.",
    )
    sc.add_argument("detector", metavar="DETECTOR.pt|RUN_DIR")
    sc.add_argument("features", metavar="NEW.npz")
    sc.add_argument(
        "--detector",
        "--detectors",
        dest="name",
        default="heat",
        help=f"with RUN_DIR: the detector, one of {_detector_names()}",
    )
    sc.add_argument(
        "--backbone", metavar="NAME", help="with RUN_DIR: the detectors fitted on a packaged backbone's features"
    )
    sc.add_argument("-o", "--output", metavar="SCORES.npy", help="write the scores here instead of printing them")
    sc.add_argument("--json", action="store_true", help="print one JSON object (the scores included without -o)")
    sc.set_defaults(func=score)


def _options(items: list[str] | None) -> dict:
    """--option DETECTOR.KEY=VALUE (repeatable; VALUE read as YAML) → {detector: {key: value}}."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        det, dot, opt = key.partition(".")
        if not sep or not dot or not det or not opt:
            raise ValueError(f"--option {item!r}: expected DETECTOR.KEY=VALUE, e.g. heat_gmm.epochs=10")
        try:
            out.setdefault(det.strip().lower().replace("-", "_"), {})[opt.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ValueError(f"--option {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
    return out


def run(args: argparse.Namespace) -> int:
    try:
        from rankopt.ood import run as ood_run
    except ImportError as err:
        raise ImportError(f"rankopt ood needs the train extra: pip install 'rankopt[train]' ({err})") from None
    detectors, sets = metric_list(args.detectors), metric_list(args.ood)
    options = _options(args.option)

    def progress(label, unit):
        return progress_bar(label, enabled=None if not args.json else False, unit=unit)

    if args.features or args.id_test or args.ood_features:
        if args.run_dir:
            raise ValueError("give either RUN_DIR or --features/--id-test/--ood-features, not both")
        if not (args.features and args.id_test and args.ood_features):
            raise ValueError(
                "features you bring need all three: --features ID_TRAIN.npz --id-test ID_TEST.npz "
                "--ood-features A.npz[,B.npz]"
            )
        if sets is not None or args.backbone:
            raise ValueError(
                "--ood and --backbone go with a run folder; with --features the OOD sets are --ood-features"
            )
        out_dir = Path(args.output or ".")
        check_writable(out_dir / "ood.json", "-o")
        out = ood_run.ood_feature_files(
            args.features, args.id_test, metric_list(args.ood_features), out_dir, detectors, options, progress
        )
        title = f"rankopt ood — features {args.features} (written to {out_dir})"
    else:
        if not args.run_dir:
            raise ValueError("expected a RUN_DIR (or: rankopt ood score DETECTOR new.npz, or --features ...)")
        run_dir = Path(args.run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder {run_dir} does not exist")
        if args.output:
            raise ValueError("-o goes with --features; a run's results are written into its folder")
        check_writable(run_dir / "ood.json", "RUN_DIR")
        out = ood_run.ood_run_folder(run_dir, sets, detectors, args.backbone, options, args.seed, progress)
        title = f"rankopt ood — {run_dir} (features: {out['backbone']})"
    print(json.dumps(out) if args.json else ood_table(out, title))
    return 0


def score(args: argparse.Namespace) -> int:
    """rankopt ood score DETECTOR.pt|RUN_DIR NEW.npz."""
    from rankopt.ood import load_detector, load_features

    where = Path(args.detector)
    if where.is_dir():
        folder = where / ("ood_detectors" if not args.backbone else f"ood-{args.backbone}_detectors")
        where = folder / f"{args.name}.pt"
        if not where.is_file():
            found = sorted(p.stem for p in folder.glob("*.pt"))
            raise FileNotFoundError(
                f"no fitted detector {args.name!r} in {folder}"
                + (f"; found {', '.join(found)}" if found else ": run rankopt ood on it first")
            )
    detector = load_detector(where)
    scores = detector.score(load_features(args.features, "features to score"))
    meta_path = where.with_suffix(".json")
    threshold = json.loads(meta_path.read_text()).get("threshold_95_id") if meta_path.is_file() else None
    flagged = None if threshold is None else int((scores > threshold).sum())
    if args.output:
        out = check_writable(args.output, "-o")
        atomic_write(out, lambda f: np.save(f, scores))
    summary = {
        "detector": detector.name,
        "n": int(len(scores)),
        "threshold_95_id": threshold,
        "n_flagged": flagged,
        **({"output": str(args.output)} if args.output else {}),
    }
    if args.json:
        print(json.dumps({**summary, **({} if args.output else {"scores": scores.tolist()})}))
    else:
        if not args.output:
            print("\n".join(f"{v:.6g}" for v in scores))
        note = (
            ""
            if threshold is None
            else f"; {flagged} above the threshold that accepts 95% of the ID test set ({threshold:.6g})"
        )
        print(f"{detector.name}: {len(scores)} scores (larger = more OOD){note}", file=sys.stderr)
    return 0
