"""The ``rankopt`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from rankopt import recipes
from rankopt.atomic import atomic_write
from rankopt.progress import progress_bar
from rankopt.metrics.evaluate import NO_POSITIVE, aggregate, evaluate_per_query
from rankopt.metrics.ranking import TIES
from rankopt.search import BACKENDS, SIMILARITIES

log = logging.getLogger("rankopt")

EXAMPLES = {"digits": "scikit-learn's 8×8 digits (1,797 images; raw pixels as embeddings; labels [digit, parity])"}


class CliError(Exception):
    """A user mistake: printed as one line, exit code 2."""


# what a bad file, value, device or environment raises; anything else is a bug and keeps its traceback
INPUT_ERRORS = (CliError, ValueError, TypeError, OSError, ImportError, RuntimeError, FloatingPointError, EOFError,
                zipfile.BadZipFile)
try:  # Lightning's word for a trainer setting this machine cannot honour (devices, strategy)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    INPUT_ERRORS += (MisconfigurationException,)
except ImportError:  # without the train extra there is no trainer to misconfigure
    pass


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (CliError, ValueError, OSError)) else f"{type(err).__name__}: {text}"


def check_writable(path: str | Path, what: str) -> Path:
    """Create the folder of an output path and make sure it can be written, before any work."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".rankopt-check-"):
            pass
    except OSError as err:
        raise CliError(f"{what} {path}: cannot write to {path.parent} ({err.strerror or err})") from None
    return path


def load_npz(path: str | Path, what: str = "file") -> tuple[np.ndarray, np.ndarray]:
    """Read ``embeddings`` (N, d) and ``labels`` (N,) or (N, L) from an npz file."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"{what} {p} does not exist")
    if p.is_dir():
        raise CliError(f"{what} {p} is a directory; expected an .npz file")
    if p.stat().st_size == 0:
        raise CliError(f"{what} {p} is empty; expected an .npz with arrays 'embeddings' and 'labels'")
    try:
        with np.load(p, allow_pickle=False) as data:
            missing = [k for k in ("embeddings", "labels") if k not in data.files]
            if missing:
                raise CliError(
                    f"{what} {p} has no array {', '.join(repr(m) for m in missing)}; "
                    f"found {data.files or 'no arrays'}; expected 'embeddings' (N, d) float and 'labels' (N,) or (N, L) int"
                )
            return data["embeddings"], data["labels"]
    except CliError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise CliError(f"{what} {p} is not a readable .npz file ({err})") from None


def load_npz_rows(path: str | Path, world: int, rank: int, what: str = "file") -> tuple[np.ndarray, np.ndarray]:
    """This process's contiguous shard of the rows of ``embeddings`` and ``labels`` in an npz file,
    reading only those rows (the arrays are read from the archive by offset, never whole)."""
    from rankopt.collectives import shard_bounds

    load_npz_header(path, what)  # the checks and messages of load_npz, without reading the arrays
    out = []
    with zipfile.ZipFile(path) as archive:
        shapes = []
        for key in ("embeddings", "labels"):
            with archive.open(f"{key}.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                if fortran or dtype.hasobject or not shape:
                    raise CliError(f"{what} {path}: '{key}' must be a C-ordered numeric array")
                shapes.append(shape)
                start, stop = shard_bounds(shape[0], world, rank)
                row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
                f.seek(start * row, 1)
                rows = np.empty((stop - start, *shape[1:]), dtype=dtype)
                if f.readinto(memoryview(rows).cast("B")) != rows.nbytes:
                    raise CliError(f"{what} {path}: '{key}' is shorter than its header says")
                out.append(rows)
        if shapes[0][0] != shapes[1][0]:
            raise CliError(f"{what} {path}: {shapes[0][0]} embeddings but {shapes[1][0]} labels")
    return out[0], out[1]


def load_npz_header(path: str | Path, what: str) -> None:
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        load_npz(p, what)  # raises the message naming the problem
    try:
        with zipfile.ZipFile(p) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise CliError(f"{what} {p} is not a readable .npz file ({err})") from None
    missing = [k for k in ("embeddings", "labels") if f"{k}.npy" not in names]
    if missing:
        raise CliError(f"{what} {p} has no array {', '.join(repr(m) for m in missing)}; expected 'embeddings' (N, d) "
                       "float and 'labels' (N,) or (N, L) int")


def load_example(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in EXAMPLES:
        raise CliError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    with resources.as_file(resources.files("rankopt") / "examples" / f"{name}.npz") as p:
        emb, labels = load_npz(p, "example")
    return emb.astype(np.float32), labels


def _metric_list(text: str | None) -> list[str] | None:
    return None if text is None else [m.strip() for m in text.split(",") if m.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.distributed:
        return _evaluate_distributed(args)
    if args.example and args.file:
        raise CliError("give either FILE or --example, not both")
    if args.example:
        emb, labels = load_example(args.example)
        source = f"example {args.example}"
    elif args.file:
        emb, labels = load_npz(args.file)
        source = args.file
    else:
        raise CliError("nothing to evaluate: give FILE.npz or --example digits")
    gallery = gallery_labels = None
    if args.gallery:
        gallery, gallery_labels = load_npz(args.gallery, "gallery file")
    if args.per_query:
        check_writable(args.per_query, "--per-query")  # before the work, not after it
    with progress_bar("ranking queries") as bar:
        result = evaluate_per_query(
            emb, labels, gallery, gallery_labels, metrics=_metric_list(args.metrics), ties=args.ties,
            similarity=args.similarity, device=args.device, backend=args.backend,
            memory_budget=int(args.memory_budget * (1 << 20)), progress=bar,
        )
    summary = aggregate(result, args.no_positive)
    if args.per_query:
        result.write_csv(args.per_query)
    if args.json:
        print(json.dumps({**summary, "similarity": args.similarity, "ties": args.ties}))
    else:
        print(_table(summary, source, result.n_ranked, args))
    return 0


def _evaluate_distributed(args: argparse.Namespace) -> int:
    """One process of ``torchrun ... -m rankopt evaluate FILE --distributed``: reads its shard of the
    gallery rows (and of the queries), evaluates exactly with the others, rank 0 prints."""
    import os

    import torch
    import torch.distributed as dist

    from rankopt.metrics.distributed import evaluate_distributed

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise CliError("--distributed runs under torchrun: torchrun --nproc-per-node N -m rankopt evaluate FILE --distributed")
    if args.example or not args.file:
        raise CliError("--distributed evaluates a FILE.npz (each process reads its own rows of it)")
    if args.backend != "torch":
        raise CliError("--distributed ranks with the torch backend only")
    device = args.device or "cpu"
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        world, rank = dist.get_world_size(), dist.get_rank()
        if args.per_query and rank == 0:
            check_writable(args.per_query, "--per-query")
        emb, labels = load_npz_rows(args.file, world, rank)
        queries = query_labels = None
        if args.gallery:
            queries, query_labels = emb, labels
            emb, labels = load_npz_rows(args.gallery, world, rank, "gallery file")
        with progress_bar("ranking queries", enabled=None if rank == 0 else False) as bar:
            summary, result = evaluate_distributed(
                emb, labels, queries, query_labels, metrics=_metric_list(args.metrics), ties=args.ties,
                no_positive=args.no_positive, similarity=args.similarity, device=device,
                memory_budget=int(args.memory_budget * (1 << 20)), per_query=True, progress=bar,
            )
        if rank == 0:
            if args.per_query:
                result.write_csv(args.per_query)
            if args.json:
                print(json.dumps({**summary, "similarity": args.similarity, "ties": args.ties}))
            else:
                print(_table(summary, f"{args.file} ({world} processes)", result.n_ranked, args))
    finally:
        dist.destroy_process_group()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        from rankopt.report import compare, report
    except ImportError as err:
        raise CliError(f"rankopt report needs matplotlib and Jinja2: pip install 'rankopt[report]' ({err})") from None
    output = args.output or ("compare.html" if len(args.paths) > 1 else "report.html")
    check_writable(output, "-o")
    if len(args.paths) > 1:
        if args.gallery:
            raise CliError("--gallery goes with one embeddings file, not a comparison")
        _, summary = compare(args.paths, output=output, seed=args.seed)
    else:
        _, summary = report(args.paths[0], gallery=args.gallery, output=output, seed=args.seed)
    if args.json:
        print(json.dumps({**summary, "output": str(output)}))
    else:
        print(f"wrote {output}")
    return 0


def _table(summary: dict, source: str, n_ranked: int, args: argparse.Namespace) -> str:
    metric_items = [(k, v) for k, v in summary.items() if not k.startswith("n_")]
    width = max(len(k) for k, _ in metric_items + [("metric", 0)])
    lines = [
        f"rankopt evaluate — {source}",
        f"{summary['n_queries']} queries, {n_ranked} ranked items each, similarity={args.similarity}, "
        f"ties={args.ties}, no_positive={args.no_positive}",
        "",
        f"{'metric'.ljust(width)}  value",
        f"{'-' * width}  ------",
    ]
    lines += [f"{k.ljust(width)}  {v:.4f}" for k, v in metric_items]
    extra = [f"{k} = {v}" for k, v in summary.items() if k.startswith("n_excluded")]
    lines += ["", "; ".join(extra) + " (queries without a relevant item)"]
    return "\n".join(lines)


def _load_train_modules():
    try:
        from rankopt.train import config, run
    except ImportError as err:
        raise CliError(f"training needs the train extra: pip install 'rankopt[train]' ({err})") from None
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):  # no hardware banners or tips
        logging.getLogger(name).setLevel(logging.WARNING)
    return config, run


def _train(args: argparse.Namespace, task: str, recipe: str | None, overrides: list[str], default_recipe: str | None):
    """The one training command of every task: a recipe (or a run to resume) plus --set overrides →
    a validated config → the task's run function. Prints the summary or the JSON line."""
    config, run = _load_train_modules()
    if task == "images":
        train_fn = run.train_run
    else:
        from rankopt.recsys.run import train_recsys as train_fn
    if args.resume:
        if recipe:
            raise CliError("give either a RECIPE or --resume RUN_DIR, not both")
        cfg = config.apply_overrides(run.load_run(args.resume, task=task), overrides)  # e.g. more epochs
        metrics, run_dir = train_fn(cfg, args.resume, resume=True, progress=not args.json)
    else:
        cfg = config.load_config(recipe or default_recipe, overrides, task=task)
        if args.run_dir:
            check_writable(Path(args.run_dir) / "config.yaml", "--run-dir")
        metrics, run_dir = train_fn(cfg, args.run_dir, progress=not args.json)
    if not run.is_rank_zero():
        return 0  # a process DDP launched: rank 0 reports
    print(json.dumps(metrics) if args.json else _run_summary(metrics, cfg))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.root={args.data_dir}")
    if args.skip_bad_images:
        overrides.append("data.skip_bad_images=true")
    return _train(args, "images", args.recipe, overrides, "fashion-mnist")


# short flags of `rankopt recsys train`: sugar over config keys (their defaults live in the config only)
RECSYS_FLAGS = {"model": "model.name", "loss": "loss.name", "negatives": "loss.negatives", "epochs": "train.epochs",
                "seed": "train.seed", "device": "train.device", "protocol": "data.protocol", "lr": "optim.lr",
                "dim": "model.dim", "patience": "train.patience", "time_limit": "train.time_limit",
                "rating_threshold": "data.rating_threshold"}


def _cutoffs(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise CliError(f"--k {text!r}: give cut-offs as integers, e.g. --k 10,20,50") from None
    if not ks or min(ks) < 1:
        raise CliError(f"--k {text!r}: give positive cut-offs, e.g. --k 10,20,50")
    return ks


def cmd_recsys_train(args: argparse.Namespace) -> int:
    recipe, overrides = args.recipe, []
    if recipe is not None and ("/" in recipe or recipe.startswith(".")) and not Path(recipe).exists():
        raise CliError(f"{recipe} is not a folder of interaction files (nor a recipe file)")
    if recipe is not None and Path(recipe).is_dir():  # `rankopt recsys train DATA_DIR`: the defaults on a folder
        overrides += [f"data.root={recipe}", f"recipe=recsys-{Path(recipe).resolve().name}"]
        recipe = None
    if args.data_dir:
        overrides.append(f"data.root={args.data_dir}")
    overrides += [f"{key}={json.dumps(getattr(args, flag))}" for flag, key in RECSYS_FLAGS.items()
                  if getattr(args, flag) is not None]
    if args.refit:
        overrides.append("train.refit=true")
    if args.k:
        from rankopt.recsys.evaluation import metrics_at

        ks = _cutoffs(args.k)
        overrides += [f"train.metrics={json.dumps(metrics_at(ks))}", f"train.monitor=ndcg@{20 if 20 in ks else ks[0]}"]
    overrides += list(args.set or [])  # --set last: it wins over the short flags
    return _train(args, "recsys", recipe, overrides, None)


def _run_summary(result: dict, cfg) -> str:
    """The test table of a run, with how its weights were selected and tested."""
    sel, test = result["selection"], result["test"]
    if sel["split"] is None:
        chosen = f"the last epoch ({sel['epoch']} of {sel['epochs_run']}; no validation split)"
    else:
        chosen = f"epoch {sel['epoch']} of {sel['epochs_run']}, best {sel['split']} {sel['metric']} {sel['value']:.4f}"
    protocol = result.get("protocol", {})
    if cfg.task == "recsys":
        refit = protocol.get("refit")
        chosen += f"; refit on train + valid for {refit['epochs']} epochs" if refit else ""
        masked = "train and valid items" if protocol.get("masked_at_test") == "train+valid" else "context items"
        title = f"rankopt recsys train — {cfg.model.name} + {cfg.loss.name}, {cfg.data.protocol}"
        how = f"{test.get('n_users', '?')} users, {masked} masked"
    else:
        t = protocol.get("test", {})
        title = f"rankopt train — {cfg.recipe}"
        how = f"{t.get('split', 'test')} ({t.get('mode', '')}, {test.get('n_queries', '?')} queries)"
    width = max([len(k) for k in test] + [6])
    lines = [f"\n{title}, run folder {result['run_dir']}", f"selected: {chosen}", f"test: {how}\n",
             f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{k.ljust(width)}  {v:.4f}" for k, v in test.items() if not k.startswith("n_")]
    return "\n".join(lines)


def cmd_embed(args: argparse.Namespace) -> int:
    try:
        from rankopt.train.run import embed_dataset
    except ImportError as err:
        raise CliError(f"embedding needs the train extra: pip install 'rankopt[train]' ({err})") from None
    out = check_writable(args.output, "-o")
    emb, labels = embed_dataset(args.checkpoint, args.dataset, args.data_dir, args.split)
    atomic_write(out, lambda f: np.savez(f, embeddings=emb, labels=labels))
    print(f"wrote {len(emb)} embeddings of dimension {emb.shape[1]} to {out}")
    return 0


def _recsys_table(metrics: dict) -> str:
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_recsys_evaluate(args: argparse.Namespace) -> int:
    _load_train_modules()
    from rankopt.recsys.run import evaluate_run

    metrics = evaluate_run(args.run_dir, device=args.device)
    print(json.dumps(metrics) if args.json else _recsys_table(metrics))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rankopt")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _ood_options(items: list[str] | None) -> dict:
    """--option DETECTOR.KEY=VALUE (repeatable; VALUE read as YAML) → {detector: {key: value}}."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        det, dot, opt = key.partition(".")
        if not sep or not dot or not det or not opt:
            raise CliError(f"--option {item!r}: expected DETECTOR.KEY=VALUE, e.g. heat_gmm.epochs=10")
        try:
            out.setdefault(det.strip().lower().replace("-", "_"), {})[opt.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise CliError(f"--option {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
    return out


def _ood_table(out: dict, title: str) -> str:
    results = out["detectors"]
    sets = list(out["n_ood"])
    width = max([len("detector")] + [len(n) for n in results])
    cols = [s[:9] for s in sets]
    head = f"{'detector'.ljust(width)}  AUROC  FPR95-ID  FPR95-OOD  AUPR-In  | AUROC per set: " + "  ".join(c.rjust(8) for c in cols)
    lines = [title, f"ID train {out['n_id_train']}, ID test {out['n_id_test']}; OOD: "
             + ", ".join(f"{k} {v}" for k, v in out["n_ood"].items()), "", head, "-" * len(head)]
    for name, r in results.items():
        m = r["mean"]
        lines.append(f"{name.ljust(width)}  {m['auroc']:.3f}  {m['fpr95_id']:8.3f}  {m['fpr95_ood']:9.3f}  {m['aupr_in']:7.3f}  | "
                     + " " * 15 + "  ".join(f"{r['per_ood'][s]['auroc']:8.3f}" for s in sets))
    lines += ["", "means over the OOD sets; FPR95-ID: OOD accepted when 95% of ID is (HEAT, most papers); "
              "FPR95-OOD: ID flagged when 95% of OOD is (OpenOOD, pytorch-ood)"]
    lines += [f"skipped {k}: {v}" for k, v in out.get("skipped", {}).items()]
    return "\n".join(lines)


def cmd_ood(args: argparse.Namespace) -> int:
    try:
        from rankopt.ood import run as ood_run
    except ImportError as err:
        raise CliError(f"rankopt ood needs the train extra: pip install 'rankopt[train]' ({err})") from None
    target = list(args.target or [])
    if target[:1] == ["score"]:
        return _ood_score(target[1:], args)
    detectors, sets = _metric_list(args.detectors), _metric_list(args.ood)
    options = _ood_options(args.option)

    def progress(label, unit):
        return progress_bar(label, enabled=None if not args.json else False, unit=unit)

    if args.features or args.id_test or args.ood_features:
        if target:
            raise CliError("give either RUN_DIR or --features/--id-test/--ood-features, not both")
        if not (args.features and args.id_test and args.ood_features):
            raise CliError("features you bring need all three: --features ID_TRAIN.npz --id-test ID_TEST.npz --ood-features A.npz[,B.npz]")
        if sets is not None or args.backbone:
            raise CliError("--ood and --backbone go with a run folder; with --features the OOD sets are --ood-features")
        out_dir = Path(args.output or ".")
        check_writable(out_dir / "ood.json", "-o")
        out = ood_run.ood_feature_files(args.features, args.id_test, _metric_list(args.ood_features), out_dir, detectors,
                                        options, progress)
        title = f"rankopt ood — features {args.features} (written to {out_dir})"
    else:
        if len(target) != 1:
            raise CliError("expected one RUN_DIR (or: rankopt ood score DETECTOR new.npz, or --features ...)")
        run_dir = Path(target[0])
        if not run_dir.is_dir():
            raise CliError(f"run folder {run_dir} does not exist")
        if args.output:
            raise CliError("-o goes with --features; a run's results are written into its folder")
        check_writable(run_dir / "ood.json", "RUN_DIR")
        _load_train_modules()
        out = ood_run.ood_run_folder(run_dir, sets, detectors, args.backbone, options, args.seed, progress)
        title = f"rankopt ood — {run_dir} (features: {out['backbone']})"
    print(json.dumps(out) if args.json else _ood_table(out, title))
    return 0


def _ood_score(rest: list[str], args: argparse.Namespace) -> int:
    """rankopt ood score DETECTOR new.npz: DETECTOR a saved .pt, or a run folder / output folder with --detector."""
    from rankopt.ood import load_detector, load_features

    if len(rest) != 2:
        raise CliError("usage: rankopt ood score DETECTOR.pt|RUN_DIR new.npz [--detector NAME] [-o scores.npy]")
    where, features = Path(rest[0]), rest[1]
    if where.is_dir():
        name = (args.detectors or "heat").split(",")[0].strip()
        folder = where / ("ood_detectors" if not args.backbone else f"ood-{args.backbone}_detectors")
        where = folder / f"{name}.pt"
        if not where.is_file():
            found = sorted(p.stem for p in folder.glob("*.pt"))
            raise CliError(f"no fitted detector {name!r} in {folder}" + (f"; found {', '.join(found)}" if found
                           else ": run rankopt ood on it first"))
    detector = load_detector(where)
    scores = detector.score(load_features(features, "features to score"))
    meta_path = where.with_suffix(".json")
    threshold = json.loads(meta_path.read_text()).get("threshold_95_id") if meta_path.is_file() else None
    flagged = None if threshold is None else int((scores > threshold).sum())
    if args.output:
        out = check_writable(args.output, "-o")
        atomic_write(out, lambda f: np.save(f, scores))
    summary = {"detector": detector.name, "n": int(len(scores)), "threshold_95_id": threshold, "n_flagged": flagged,
               **({"output": str(args.output)} if args.output else {})}
    if args.json:
        print(json.dumps({**summary, **({} if args.output else {"scores": scores.tolist()})}))
    else:
        if not args.output:
            print("\n".join(f"{v:.6g}" for v in scores))
        note = "" if threshold is None else f"; {flagged} above the threshold that accepts 95% of the ID test set ({threshold:.6g})"
        print(f"{detector.name}: {len(scores)} scores (larger = more OOD){note}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rankopt", description="Train and evaluate models directly on ranking metrics."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr (and tracebacks of errors)")
    parser.add_argument("--version", action="version", version=f"rankopt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ev = sub.add_parser(
        "evaluate",
        help="exact ranking metrics of saved embeddings",
        description=(
            "Compute exact, tie-aware ranking metrics. FILE.npz holds 'embeddings' (N, d) float and "
            "'labels' (N,) or (N, L) int, column 0 the finest level. Without --gallery every item is a "
            "query ranked against all the others (itself removed by index)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument("file", nargs="?", metavar="FILE.npz", help="queries (and gallery, without --gallery)")
    ev.add_argument("--example", choices=sorted(EXAMPLES), help="evaluate a bundled example instead of FILE: "
                    + "; ".join(f"{k}: {v}" for k, v in EXAMPLES.items()))
    ev.add_argument("--gallery", metavar="G.npz", help="a separate gallery (In-Shop, DyML style); same keys as FILE")
    ev.add_argument(
        "--metrics",
        help="comma-separated: ap, map@r, r-precision, hit@K (alias r@K, hr@K: >= 1 relevant in the top K), recall@K "
        "(relevant in top K / all relevant), p@K (precision@K), mrr, mrr@K, map@K, ndcg, ndcg@K, hap, asi; "
        "pytorch-metric-learning's names too (precision_at_1, mean_average_precision_at_r ...); binary metrics take /levelN "
        "(relevant = shares >= N label columns). Default: hit@1,hit@10,map@r,r-precision,ap,mrr,ndcg "
        "(+ hap, asi, ap/levelN on hierarchical labels)",
    )
    ev.add_argument("--ties", choices=TIES, default="expected",
                    help="expected: exact expectation over random orders of tied scores; pessimistic: relevant "
                    "items last within a tie; optimistic: first")
    ev.add_argument("--no-positive", choices=NO_POSITIVE, default="exclude",
                    help="queries without a relevant item: exclude from the mean (and count), score zero, or fail")
    ev.add_argument("--similarity", choices=SIMILARITIES, default="cosine",
                    help="cosine: dot of L2-normalised vectors; dot: raw dot product; euclidean: -squared distance")
    ev.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    ev.add_argument("--backend", choices=BACKENDS, default="torch",
                    help="search backend; faiss serves top-k metrics only")
    ev.add_argument("--memory-budget", type=float, default=1024, metavar="MiB",
                    help="memory one block of queries may use")
    ev.add_argument("--json", action="store_true",
                    help="print one JSON object: every metric, n_queries, n_excluded, similarity and ties")
    ev.add_argument("--per-query", metavar="OUT.csv", help="write one row per query (index, each metric)")
    ev.add_argument("--distributed", action="store_true",
                    help="under torchrun: each process reads its shard of the gallery rows and the processes "
                    "evaluate exactly together (gloo on CPU, NCCL with --device cuda); the output equals one process's")
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser(
        "report",
        help="one self-contained HTML page of a run folder or embeddings .npz, or a comparison of runs",
        description=(
            "With one PATH (a run folder of rankopt train or rankopt recsys train, or an embeddings .npz): the "
            "metrics with 95%% bootstrap intervals, per-query AP, precision-recall and hit@k curves, a retrieval "
            "gallery (sampled and worst queries), training curves; for recommendation the metrics at every "
            "cut-off and NDCG by user activity. With several run folders tested on the same queries: the runs "
            "side by side with paired bootstrap intervals and randomisation-test p-values of every difference. "
            "The page makes no network request and opens from disk."
        ),
    )
    rp.add_argument("paths", nargs="+", metavar="PATH", help="run folder(s) or one embeddings .npz")
    rp.add_argument("-o", "--output", help="the HTML file (default report.html, or compare.html for several runs)")
    rp.add_argument("--gallery", metavar="G.npz", help="a separate gallery for an embeddings .npz")
    rp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, the tests and the sampled queries")
    rp.add_argument("--json", action="store_true", help="last line: the numbers of the page as one JSON object")
    rp.set_defaults(func=cmd_report)

    tr = sub.add_parser(
        "train",
        help="train an embedding model on a rank loss (default: ROADMAP on Fashion-MNIST, CPU, ~3 min)",
        description=(
            "Train with a recipe (a packaged name or a YAML file), overriding any value with --set. The run "
            "folder gets config.yaml, checkpoints/ (best, last; written atomically), logs/ and metrics.json. "
            f"Recipes: {', '.join(recipes.names())}."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tr.add_argument("recipe", nargs="?", help="recipe name or YAML path (default: fashion-mnist)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.epochs=5 --set loss.name=hap (repeatable)")
    tr.add_argument("--data-dir", help="the dataset folder (same as --set data.root=DIR)")
    tr.add_argument("--run-dir", help="where to write the run (default: runs/<recipe>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/checkpoints/last.ckpt")
    tr.add_argument("--skip-bad-images", action="store_true",
                    help="drop unreadable images (checked once, counted in the log) instead of failing on the first")
    tr.add_argument("--json", action="store_true", help="last line of stdout: one JSON object with the test metrics and run_dir")
    tr.set_defaults(func=cmd_train)

    em = sub.add_parser(
        "embed",
        help="write the embeddings of a dataset split with a trained checkpoint (the npz rankopt evaluate reads)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    em.add_argument("checkpoint", metavar="CHECKPOINT", help="RUN_DIR/checkpoints/best.ckpt or last.ckpt")
    em.add_argument("--dataset", help="dataset name (default: the run's)")
    em.add_argument("--data-dir", help="dataset folder (default: the run's)")
    em.add_argument("--split", help="which split to embed (default: the run's test queries)")
    em.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="where to write embeddings and labels")
    em.set_defaults(func=cmd_embed)

    od = sub.add_parser(
        "ood",
        help="out-of-distribution detection in a trained model's feature space (HEAT and 17 baselines)",
        description=(
            "rankopt ood RUN_DIR: features of the run's selected checkpoint (or --backbone efficientnet_lite0, frozen "
            "ImageNet weights) for its training split (ID train), its test split (ID test) and offline OOD sets; every "
            "detector fitted on ID train; AUROC, AUPR-In/Out and FPR at 95%% TPR in both conventions per OOD set; "
            "writes RUN_DIR/ood.json, ood_scores.npz and the fitted detectors (ood_detectors/). "
            "rankopt ood --features ID_TRAIN.npz --id-test ID_TEST.npz --ood-features A.npz,B.npz: the same on "
            "features you bring ('features' (N, d), optional 'std_features', 'logits', 'labels', 'head_weight', 'head_bias'). "
            "rankopt ood score DETECTOR.pt|RUN_DIR NEW.npz: score new features with a fitted detector."
        ),
    )
    od.add_argument("target", nargs="*", metavar="RUN_DIR | score DETECTOR NEW.npz")
    od.add_argument("--ood", metavar="SET[,SET...]", help="OOD sets: mnist, digits, textures, faces, noise, heldout "
                    "(the Fashion-MNIST classes a run did not train on); default: all that apply")
    od.add_argument("--detectors", metavar="NAME[,NAME...]",
                    help="msp, maxlogit, energy, gen, mahalanobis, rmd, knn, vim, react, ash, scale, gmm, gmm_std, "
                    "heat_gmm, heat_gmm_std, heat_el, heat (default: all); with score: the one to use (default heat)")
    od.add_argument("--option", action="append", metavar="DETECTOR.KEY=VALUE",
                    help="a detector's option, e.g. heat_gmm.epochs=10, knn.k=100, heat.beta=inf (repeatable)")
    od.add_argument("--backbone", metavar="NAME", help="features of a frozen packaged backbone (efficientnet_lite0) "
                    "instead of the run's model; results go to ood-NAME.json")
    od.add_argument("--features", metavar="ID_TRAIN.npz", help="ID training features you bring")
    od.add_argument("--id-test", metavar="ID_TEST.npz", help="ID test features you bring")
    od.add_argument("--ood-features", metavar="A.npz[,B.npz]", help="OOD features you bring (named by file stem)")
    od.add_argument("-o", "--output", help="with --features: the output folder (default .); with score: scores.npy")
    od.add_argument("--seed", type=int, default=0, help="seed of the sampled OOD sets (textures, noise)")
    od.add_argument("--json", action="store_true", help="last line: ood.json as one JSON object")
    od.set_defaults(func=cmd_ood)

    from rankopt.recsys.config import LOSSES, MODELS, NEGATIVES

    rs = sub.add_parser("recsys", help="top-k recommendation with GNNs trained on rank losses (ITEM)")
    rsub = rs.add_subparsers(dest="recsys_command", metavar="ACTION", required=True)
    rt = rsub.add_parser(
        "train", help="train a recommender on a folder of interactions",
        description="RECIPE: a packaged recipe (<dataset>-<model>-<variant>: "
                    f"{len(recipes.names('recsys'))} of them, e.g. ml-100k-lightgcn-item-ppr) or a YAML file, with "
                    "--data-dir; or directly a DATA_DIR: LightGCN train.txt/valid.txt/test.txt, pair files "
                    "data1.txt/test1.txt, one RecBole .inter or one CSV (user,item[,rating][,timestamp]); detected. "
                    "The short flags set config keys (their defaults are the config's); --set reaches every key. "
                    "Model selection on the validation split; test with train and valid items masked.",
    )
    rt.add_argument("recipe", nargs="?", metavar="RECIPE|DATA_DIR")
    rt.add_argument("--data-dir", help="the interactions folder (same as --set data.root=DIR)")
    rt.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value, e.g. --set loss.ppr_skip=100 --set data.batch_users=512 (repeatable)")
    rt.add_argument("--model", choices=MODELS, help="model.name; lightgcnpp = LightGCN++ (RecSys 2024)")
    rt.add_argument("--loss", choices=LOSSES,
                    help="loss.name: bpr (baseline), item-ndcg (ITEM smooth NDCG), supndcg, suprecall, softmax (sampled softmax), "
                         "ccl (SimpleX's cosine contrastive loss); unset settings take the loss's tuned values")
    rt.add_argument("--negatives", choices=NEGATIVES, help="loss.negatives: uniform, or PPR hard negatives mixed with uniform ones")
    rt.add_argument("--protocol", choices=("transductive", "inductive"), help="data.protocol")
    rt.add_argument("--epochs", type=int, help="train.epochs")
    rt.add_argument("--seed", type=int, help="train.seed")
    rt.add_argument("--device", help="train.device: cpu, cuda, cuda:1, ...")
    rt.add_argument("--lr", type=float, help="optim.lr (default: the loss's tuned value, rankopt.recsys.config.TUNED)")
    rt.add_argument("--dim", type=int, help="model.dim")
    rt.add_argument("--patience", type=int, help="train.patience: stop after this many validations without improvement")
    rt.add_argument("--time-limit", type=float, help="train.time_limit: seconds of fitting; the epoch crossing it is the last")
    rt.add_argument("--rating-threshold", type=float, help="data.rating_threshold (files with ratings only)")
    rt.add_argument("--k", metavar="K[,K...]", help="cut-offs: recall, ndcg, p, hit, mrr, map at each (train.metrics)")
    rt.add_argument("--refit", action="store_true", help="train.refit: after selection, retrain on train + valid")
    rt.add_argument("--run-dir", help="where to write the run (default: runs/<recipe>-<time>)")
    rt.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/checkpoints/last.ckpt")
    rt.add_argument("--json", action="store_true", help="last line of stdout: one JSON object with the test metrics and run_dir")
    rt.set_defaults(func=cmd_recsys_train)
    re_ = rsub.add_parser("evaluate", help="re-evaluate a finished recsys run on its test split")
    re_.add_argument("run_dir", metavar="RUN_DIR")
    re_.add_argument("--device", help="evaluate on this device (default: the run's)")
    re_.add_argument("--json", action="store_true")
    re_.set_defaults(func=cmd_recsys_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("rankopt: interrupted", file=sys.stderr)
        return 130
    except INPUT_ERRORS as err:
        # the one error boundary: bad input or environment → one line naming it, exit code 2
        # (-v shows the traceback too, for reporting a bug)
        if args.verbose and not isinstance(err, CliError):
            raise
        print(f"rankopt: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
