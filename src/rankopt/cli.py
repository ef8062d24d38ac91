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
from rankopt.atomic import atomic_write, atomic_write_text
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


def load_example(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in EXAMPLES:
        raise CliError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    with resources.as_file(resources.files("rankopt") / "examples" / f"{name}.npz") as p:
        emb, labels = load_npz(p, "example")
    return emb.astype(np.float32), labels


def _metric_list(text: str | None) -> list[str] | None:
    return None if text is None else [m.strip() for m in text.split(",") if m.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
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
        print(json.dumps(summary))
    else:
        print(_table(summary, source, result.n_ranked, args))
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


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from rankopt.train.config import apply_overrides, load_config
        from rankopt.train.run import is_rank_zero, load_run, train_run
    except ImportError as err:
        raise CliError(f"training needs the train extra: pip install 'rankopt[train]' ({err})") from None
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):  # no hardware banners or tips
        logging.getLogger(name).setLevel(logging.WARNING)
    overrides = list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.root={args.data_dir}")
    if args.skip_bad_images:
        overrides.append("data.skip_bad_images=true")
    if args.resume:
        if args.recipe:
            raise CliError("give either a RECIPE or --resume RUN_DIR, not both")
        cfg = apply_overrides(load_run(args.resume), overrides)  # e.g. more epochs for the saved run
        metrics, run_dir = train_run(cfg, args.resume, resume=True, progress=not args.json)
    else:
        cfg = load_config(args.recipe or "fashion-mnist", overrides)
        if args.run_dir:
            check_writable(Path(args.run_dir) / "config.yaml", "--run-dir")
        metrics, run_dir = train_run(cfg, args.run_dir, progress=not args.json)
    if not is_rank_zero():
        return 0  # a process DDP launched: rank 0 reports
    if args.json:
        print(json.dumps(metrics))
    else:
        print(_run_summary(metrics, cfg))
    return 0


def _run_summary(result: dict, cfg) -> str:
    """The test table of a run, with how its weights were selected."""
    sel, test = result["selection"], result["test"]
    if sel["split"] is None:
        chosen = f"the last epoch ({sel['epoch']} of {sel['epochs_run']}; no validation split)"
    else:
        chosen = f"epoch {sel['epoch']} of {sel['epochs_run']}, best {sel['split']} {sel['metric']} {sel['value']:.4f}"
    t = result.get("protocol", {}).get("test", {})
    how = f"{t.get('split', 'test')} ({t.get('mode', '')}, {test.get('n_queries', '?')} queries)"
    width = max([len(k) for k in test] + [6])
    lines = [f"\nrankopt train — {cfg.recipe}, run folder {result['run_dir']}",
             f"selected: {chosen}", f"test: {how}\n", f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
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


def _epoch_bar(entry: dict, cfg) -> None:
    """One progress line per epoch on stderr (redrawn in place on a terminal)."""
    done, width = entry["epoch"], 24
    fill = int(width * done / cfg.epochs)
    valid = f"  valid ndcg@{cfg.k} {entry[f'valid/ndcg@{cfg.k}']:.4f}" if f"valid/ndcg@{cfg.k}" in entry else ""
    line = f"epoch {done:>{len(str(cfg.epochs))}}/{cfg.epochs} [{'#' * fill}{'.' * (width - fill)}] loss {entry['loss']:.4f}{valid}  {entry['seconds']:.1f} s"
    tty = sys.stderr.isatty()
    print(("\r" if tty else "") + line, end="" if tty and done < cfg.epochs else "\n", file=sys.stderr, flush=True)


def _recsys_table(metrics: dict) -> str:
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_recsys_train(args: argparse.Namespace) -> int:
    from rankopt.recsys.runner import RecConfig, run_recsys

    fields = ("model", "loss", "negatives", "protocol", "user_repr", "epochs", "dim", "layers", "k", "lr", "seed", "rating_threshold",
              "n_neg", "n_pos", "tau", "softmax_tau", "eval_every", "patience", "time_budget", "device", "ppr_mix", "ppr_m", "valid_ratio",
              "refit")
    cfg = RecConfig(**{f: getattr(args, f) for f in fields})
    if args.run_dir:
        check_writable(Path(args.run_dir) / "config.json", "--run-dir")
    metrics, run_dir = run_recsys(args.data_dir, cfg, args.run_dir, progress=_epoch_bar)
    if args.json:
        print(json.dumps(metrics))
    else:
        sel = metrics["selection"]
        chosen = (f"epoch {sel['epoch']} of {sel['epochs_run']}, best valid {sel['metric']} {sel['value']:.4f}"
                  if sel["split"] else f"the last epoch ({sel['epoch']}; no validation split)")
        refit = metrics["run"]["refit"]
        print(f"rankopt recsys train: {cfg.model} + {cfg.loss} ({cfg.negatives} negatives), {cfg.protocol}; run folder {run_dir}")
        print(f"selected: {chosen}" + (f"; refit on train + valid for {refit['epochs']} epochs" if refit else ""))
        print("test (train and valid items masked):")
        print(_recsys_table(metrics["test"]))
    return 0


def cmd_recsys_evaluate(args: argparse.Namespace) -> int:
    from rankopt.recsys.runner import evaluate_run

    metrics = evaluate_run(args.run_dir, device=args.device)
    print(json.dumps(metrics) if args.json else _recsys_table(metrics))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rankopt")
    except PackageNotFoundError:
        return "unknown (not installed)"


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
        help="comma-separated: ap, map@r, r-precision, hit@K (alias r@K: >= 1 relevant in the top K), recall@K "
        "(relevant in top K / all relevant), p@K, mrr, ndcg, ndcg@K, hap, asi; binary metrics take /levelN "
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
                    help="print one JSON object: every metric, n_queries and n_excluded")
    ev.add_argument("--per-query", metavar="OUT.csv", help="write one row per query (index, each metric)")
    ev.set_defaults(func=cmd_evaluate)

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

    from rankopt.recsys.runner import LOSSES, MODELS

    rs = sub.add_parser("recsys", help="top-k recommendation with GNNs trained on rank losses (ITEM)")
    rsub = rs.add_subparsers(dest="recsys_command", metavar="ACTION", required=True)
    rt = rsub.add_parser(
        "train", help="train a recommender on a folder of interactions", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="DATA_DIR: LightGCN train.txt/valid.txt/test.txt, pair files data1.txt/test1.txt, one RecBole "
                    ".inter or one CSV (user,item[,rating][,timestamp]); detected. Model selection on the validation "
                    "split; test Recall@K / NDCG@K with the LightGCN conventions.",
    )
    rt.add_argument("data_dir", metavar="DATA_DIR")
    rt.add_argument("--model", default="lightgcn", choices=MODELS, help="lightgcnpp = LightGCN++ (RecSys 2024)")
    rt.add_argument("--loss", default="item-ndcg", choices=LOSSES,
                    help="bpr (baseline), item-ndcg (ITEM smooth NDCG), supndcg, suprecall, softmax (sampled softmax)")
    rt.add_argument("--negatives", default="uniform", choices=("uniform", "ppr"),
                    help="candidate losses: uniform, or PPR hard negatives mixed with uniform ones (--ppr-mix)")
    rt.add_argument("--protocol", default="transductive", choices=("transductive", "inductive"))
    rt.add_argument("--user-repr", default="auto", choices=("auto", "id", "items"),
                    help="users by a trained ID embedding or by the mean of their items (auto: items for inductive)")
    rt.add_argument("--epochs", type=int, default=10)
    rt.add_argument("--eval-every", type=int, default=1, help="validate every this many epochs")
    rt.add_argument("--patience", type=int, default=0, help="stop after this many validations without a better NDCG@K (0: never)")
    rt.add_argument("--time-budget", type=float, help="start no epoch after this many seconds of training")
    rt.add_argument("--dim", type=int, default=64)
    rt.add_argument("--layers", type=int, default=3, help="message-passing layers (GNNs)")
    rt.add_argument("--k", type=int, default=20, help="K of Recall@K and NDCG@K")
    rt.add_argument("--lr", type=float, help="Adam learning rate (default: 1e-3 for bpr, 1e-2 for the candidate losses)")
    rt.add_argument("--n-neg", type=int, default=50, help="negatives per user and step (candidate losses)")
    rt.add_argument("--n-pos", type=int, default=10, help="positives sampled per user and step (candidate losses)")
    rt.add_argument("--ppr-mix", type=float, default=0.5, help="share of PPR negatives among the negatives")
    rt.add_argument("--ppr-m", type=int, default=100, help="PPR top-M items kept per user")
    rt.add_argument("--tau", type=float, default=0.1, help="ITEM loss: sigmoid temperature (cosine scores)")
    rt.add_argument("--softmax-tau", type=float, default=0.1, help="sampled softmax temperature (cosine scores)")
    rt.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--rating-threshold", type=float, help="keep interactions rated at least this (explicit ratings only)")
    rt.add_argument("--valid-ratio", type=float, default=0.1,
                    help="data without a validation split: carve this share of each user's training items for model selection")
    rt.add_argument("--refit", action="store_true", help="after selection, retrain on train + valid for the selected epochs")
    rt.add_argument("--run-dir", help="where to write the run (default: runs/recsys-<data>-<time>)")
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
