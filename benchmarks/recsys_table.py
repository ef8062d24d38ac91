"""Recommendation table (ITEM, issue 5): models × losses × protocols on the shared recsys data, with the
packaged recipes' (untuned) settings. The tuned, multi-seed comparison of the losses, with paired
tests, is ``benchmarks/recsys_tuning.py``.

    python benchmarks/recsys_table.py                       # ML-100k, Last.fm, ML-1M on the CPU
    python benchmarks/recsys_table.py --datasets gowalla --device cuda
    python benchmarks/recsys_table.py --table               # only print the table of what was measured

Every cell is a packaged recipe (``rankopt recsys train <dataset>-<model>-<variant>``: the settings live
there, not here) run by ``rankopt.runs.start_run`` on the one run engine: model selection on
the validation split (best validation NDCG@20; Last.fm's validation split is carved from its training
file), early stopping after ``--patience`` validations without improvement, a time cap per run
(``--budget``, else the recipe's ``train.time_limit``), test Recall@20 / NDCG@20 with the LightGCN
conventions. Rows are appended to a JSON-lines file as they finish,
so an interrupted benchmark continues where it stopped; the table is printed from that file.

Columns: trans. / ind. = transductive / inductive protocol (10% of users held out, half of each one's
interactions given as context); s/ep = training seconds per epoch (validation excluded); to best =
training seconds until the selected epoch (time to convergence); a ``*`` marks a run stopped by the time
cap while still improving (not converged).

    python benchmarks/recsys_table.py --replay benchmarks/results/recsys-v1.jsonl --datasets ml-100k

replays recorded runs under today's evaluation protocol: each transductive run again for exactly the
epochs it ran (no time cap: the same seeds give the same training, checked on the validation NDCG and
the selected epoch), tested with train *and* valid items masked. Speed columns are carried over from
the recorded (quiet-machine) run; inductive rows, whose test masking did not change, are copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rankopt.config import load_config
from rankopt.runs import start_run

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "recsys"
DATASETS = ("ml-100k", "lastfm", "ml-1m", "gowalla")
VARIANTS = (
    "bpr",
    "item-uniform",
    "item-ppr",
    "softmax",
)  # the recipes' last name part; their settings are in the recipes
MODELS = ("mf", "lightgcn", "ngcf", "lightgcnpp")


def key(row: dict) -> tuple:
    return row["dataset"], row["model"], row["variant"], row["protocol"]


def measure(dataset: str, model: str, variant: str, protocol: str, args, replay: dict | None = None) -> dict:
    recipe = f"{dataset}-{model}-{variant}"
    overrides = [
        f"data.root={args.root / dataset}",
        f"data.protocol={protocol}",
        f"train.device={args.device}",
        f"train.seed={args.seed}",
    ]
    if replay is None:
        overrides += [f"train.epochs={args.epochs}", f"train.patience={args.patience}"]
        overrides += [f"train.time_limit={args.budget}"] if args.budget else []
    else:  # the recorded run's exact length, no time cap
        overrides += [
            f"train.epochs={replay['epochs_run']}",
            f"train.patience={replay.get('patience', args.patience)}",
            "train.time_limit=null",
        ] + ([f"train.eval_every={replay['eval_every']}"] if "eval_every" in replay else [])
    cfg = load_config(recipe, overrides, task="recsys")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result, _ = start_run(cfg, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
    test, sel, timing = result["test"], result["selection"], result["timing"]
    row = {
        "dataset": dataset,
        "model": model,
        "variant": variant,
        "protocol": protocol,
        "recall@20": test["recall@20"],
        "ndcg@20": test["ndcg@20"],
        "valid_ndcg@20": sel["value"],
        "seconds_per_epoch": timing["seconds_per_epoch"],
        "seconds_to_best": timing["seconds_to_best"],
        "best_epoch": sel["epoch"],
        "epochs_run": sel["epochs_run"],
        "wall_seconds": wall,
        "patience": cfg.train.patience,
        "eval_every": cfg.train.eval_every,
        "n_users": test["n_users"],
        "device": args.device,
        "lr": cfg.optim.lr,
        "masked": "train+valid",
        "recipe": recipe,
    }
    if replay is None:
        limit = cfg.train.time_limit
        row["capped"] = bool(
            limit is not None and sel["epochs_run"] < cfg.train.epochs and timing["seconds_to_best"] >= 0.8 * limit
        )
    else:
        same = sel["epoch"] == replay["best_epoch"] + 1 and sel["value"] == replay["valid_ndcg@20"]
        row.update(
            {k: replay[k] for k in ("seconds_per_epoch", "seconds_to_best", "capped")},
            replayed=True,
            same_training=bool(same),
            recorded_recall=replay["recall@20"],
            recorded_ndcg=replay["ndcg@20"],
        )
    return row


def table(rows: list[dict], fallback: list[dict] = ()) -> str:
    """Markdown tables; a cell missing from ``rows`` is taken from ``fallback`` (an older results file)
    and marked † (tested with training items masked only)."""
    out = []
    by = {key(r): r for r in rows}
    for r in fallback:
        by.setdefault(key(r), {**r, "old": r["protocol"] == "transductive"})  # inductive test masking is unchanged
    rows = list(by.values())
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        out += [
            f"\n**{dataset}**\n",
            "| model | loss | trans. R@20 | trans. N@20 | ind. R@20 | ind. N@20 | s/ep | to best (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model in MODELS:
            for variant in VARIANTS:
                t, i = by.get((dataset, model, variant, "transductive")), by.get((dataset, model, variant, "inductive"))
                if t is None and i is None:
                    continue
                cell = lambda r, m: "–" if r is None else f"{r[m]:.4f}" + ("†" if r.get("old") else "")
                speed = t or i
                star = "*" if speed["capped"] else ""
                out.append(
                    f"| {model} | {variant} | {cell(t, 'recall@20')} | {cell(t, 'ndcg@20')} | {cell(i, 'recall@20')} | "
                    f"{cell(i, 'ndcg@20')} | {speed['seconds_per_epoch']:.2f} | {speed['seconds_to_best']:.0f}{star} |"
                )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "lastfm", "ml-1m"], choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--protocols", nargs="+", default=["transductive", "inductive"], choices=["transductive", "inductive"]
    )
    parser.add_argument("--epochs", type=int, default=1000, help="epoch cap (the time cap usually ends a run first)")
    parser.add_argument("--patience", type=int, default=10, help="validations without improvement before stopping")
    parser.add_argument(
        "--budget", type=float, help="seconds of fitting per run (default: the recipe's train.time_limit)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=ROOT, help="folder holding the datasets' folders")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("results") / "recsys.jsonl")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and stop")
    parser.add_argument("--replay", type=Path, help="a results file of earlier runs to replay under today's protocol")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.is_file() else []
    if args.replay and not args.table:
        done = {key(r) for r in rows}
        old = [json.loads(line) for line in args.replay.read_text().splitlines()]
        for rec in old:
            if key(rec) in done or rec["dataset"] not in args.datasets:
                continue
            row = dict(rec) if rec["protocol"] == "inductive" else measure(*key(rec), args, replay=rec)
            print(json.dumps(row), file=sys.stderr, flush=True)
            with args.results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
    elif not args.table:
        if args.device == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads()))
        done = {key(r) for r in rows}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            if not (args.root / dataset).is_dir():
                sys.exit(f"{args.root / dataset} is missing: pass --root with the recsys data folders")
            for protocol in args.protocols:
                for model in args.models:
                    for variant in args.variants:
                        if (dataset, model, variant, protocol) in done:
                            continue
                        row = measure(dataset, model, variant, protocol, args)
                        print(json.dumps(row), file=sys.stderr, flush=True)
                        with args.results.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        rows.append(row)
    old = [json.loads(line) for line in args.replay.read_text().splitlines()] if args.replay else []
    print(table(rows, [r for r in old if r["dataset"] in args.datasets]))


if __name__ == "__main__":
    main()
