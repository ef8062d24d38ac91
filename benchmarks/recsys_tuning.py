"""The fair comparison of rank losses for recommendation (issue 13): every loss tuned on the same grid,
on validation only, with the same budget; the selected setting run with 3 seeds; paired tests.

    python benchmarks/recsys_tuning.py tune --dataset ml-100k --model lightgcn     # grid, then 3 seeds
    python benchmarks/recsys_tuning.py tune --dataset ml-100k --split random       # the random per-user split
    python benchmarks/recsys_tuning.py curves --dataset gowalla --budget 600       # equal wall time, BPR vs ITEM
    python benchmarks/recsys_tuning.py table                                       # print what was measured

Every run is ``rankopt.runs.start_run`` on the one run engine (selection on the validation
split, test with train + valid masked). Budget, the same for every loss: at most ``--epochs`` epochs,
validation every 2 epochs, stop after ``--patience`` validations without a better NDCG@20 but not before
epoch ``--min-epochs`` (dot-score runs and small learning rates plateau before they learn), and a time
cap (``--cap`` seconds, a safety: a run it stops is marked). Grid, coordinate-wise from a common start
(lr 1e-3, weight decay 1e-4 = LightGCN's, 500 negatives), every knob that applies to a loss:

1. learning rate × (score type × temperature): lr ∈ {1e-3, 5e-3, 1e-2}; item-ndcg and softmax:
   score ∈ {cosine, dot} with τ ∈ {0.05, 0.1, 0.2} on cosine and {0.03, 0.1, 0.3, 1} on dot; ccl: margin ∈
   {0, 0.2, 0.4, 0.6, 0.8} × negative weight ∈ {10, 150} (cosine by definition); bpr: lr only (no
   temperature, one negative by definition);
2. at the best of 1: weight decay ∈ {0, 1e-5, 1e-4, 1e-3} (L2 on the step's layer-0 embeddings, the
   same term for every loss);
3. at the best of 2: negatives ∈ {100, 500, all} (candidate losses).

``--transfer DATASET`` (when the full grid does not fit the time): each loss keeps the setting selected
on DATASET and only its learning rate is tuned again, on this dataset's validation split.

The best validation NDCG@20 of the seed-0 trials selects; the selected setting then runs with seeds
0, 1, 2 (the data split is fixed: ``data.split_seed`` = 0). Test NDCG@20 per user is kept for the
paired comparison: per user, the mean over the 3 seeds; the difference of two losses with a 95% paired
bootstrap interval and a randomisation (sign-flip) test p-value over users (rankopt.report.stats).
Rows go to a JSON-lines file as they finish, so the benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rankopt.config import load_config
from rankopt.report.stats import paired_bootstrap_ci, randomization_test
from rankopt.runs import start_run

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "recsys"
RESULTS = Path(__file__).with_name("results") / "recsys-tuned.jsonl"
DATA_OPTIONS = {"ml-100k": {"data.rating_threshold": 4.0}, "lastfm": {}, "ml-1m": {}, "gowalla": {}}
LOSSES = ("bpr", "item-ndcg", "softmax", "ccl")
LRS = (1e-3, 5e-3, 1e-2)
TAUS = {"cosine": (0.05, 0.1, 0.2), "dot": (0.03, 0.1, 0.3, 1.0)}
MARGINS = (0.0, 0.2, 0.4, 0.6, 0.8)
CCL_WEIGHTS = (10.0, 150.0)  # w, the negative term's weight (150: the loss's default)
DECAYS = (0.0, 1e-5, 1e-4, 1e-3)
NEGATIVES = (100, 500, "all")
START = {"optim.weight_decay": 1e-4, "loss.n_neg": 500}
SEEDS = (0, 1, 2)
SPLIT_NAMES = {
    ("ml-100k", "auto"): "temporal per-user 80/10/10",
    ("ml-100k", "random"): "random per-user 80/10/10",
    ("lastfm", "auto"): "LightGCN-PyTorch's data1/test1, 10% of training carved for validation",
    ("ml-1m", "auto"): "LightGCN++'s",
    ("gowalla", "auto"): "LightGCN's",
}
PAIRS = (("bpr", "item-ndcg"), ("softmax", "item-ndcg"), ("ccl", "item-ndcg"), ("bpr", "ccl"), ("bpr", "softmax"))


def stage1(loss: str) -> list[dict]:
    """The first stage's settings of a loss: learning rate × (score type × temperature | margin)."""
    start = {"optim.weight_decay": START["optim.weight_decay"]} | (
        {} if loss == "bpr" else {"loss.n_neg": START["loss.n_neg"]}
    )
    if loss == "bpr":
        knobs = [{}]
    elif loss == "ccl":
        knobs = [
            {"loss.margin": m} | ({"loss.neg_weight": w} if w != 150.0 else {}) for m in MARGINS for w in CCL_WEIGHTS
        ]
    else:
        knobs = [{"loss.score": s, "loss.tau": t} for s, taus in TAUS.items() for t in taus]
    return [start | {"optim.lr": lr} | k for lr in LRS for k in knobs]


def yaml_value(v) -> str:
    """A value as --set reads it (YAML 1.1 reads 1e-05 as text: floats get a point and a signed exponent)."""
    return f"{v:.8e}" if isinstance(v, float) else json.dumps(v)


def run_key(row: dict) -> str:
    return json.dumps(
        [row["kind"], row["dataset"], row["split"], row["model"], row["loss"], row["setting"], row["seed"]],
        sort_keys=True,
    )


class Bench:
    """Runs and records; ``args`` carries the dataset, model, split and budget."""

    def __init__(self, args) -> None:
        self.args = args
        rows = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.is_file() else []
        self.done = {run_key(r): r for r in rows}  # a run measured again replaces the earlier row
        self.rows = list(self.done.values())

    def run(self, kind: str, loss: str, setting: dict, seed: int = 0, extra: dict | None = None) -> dict:
        a = self.args
        row = {
            "kind": kind,
            "dataset": a.dataset,
            "split": a.split,
            "model": a.model,
            "loss": loss,
            "setting": setting,
            "seed": seed,
        }
        old = self.done.get(run_key(row))
        if old is not None and not (
            kind != "curve"
            and old.get("min_epochs", 0) < a.min_epochs
            and old["epochs_run"] < a.min_epochs
            and not old["capped"]
        ):
            return old  # (a run that early stopping ended before --min-epochs is measured again)
        options = DATA_OPTIONS[a.dataset] | {
            "data.root": str(a.root / a.dataset),
            "model.name": a.model,
            "loss.name": loss,
            "train.seed": seed,
            "train.device": a.device,
            "train.eval_every": 2,
            "train.epochs": a.epochs,
            "train.patience": a.patience,
            "train.time_limit": a.cap,
            "train.min_epochs": a.min_epochs,
        }
        options |= {"data.split": a.split} if a.split != "auto" else {}
        options |= (extra or {}) | setting
        cfg = load_config(None, [f"{k}={yaml_value(v)}" for k, v in options.items()], task="recsys")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result, folder = start_run(cfg, Path(tmp) / "run", progress=False)
            wall = time.perf_counter() - t0
            with open(folder.per_query_path) as f:
                per_user = {int(r["user"]): float(r["ndcg@20"]) for r in csv.DictReader(f)}
        sel, test = result["selection"], result["test"]
        row |= {
            "min_epochs": a.min_epochs,
            "valid_ndcg@20": sel["value"],
            "recall@20": test["recall@20"],
            "ndcg@20": test["ndcg@20"],
            "best_epoch": sel["epoch"],
            "epochs_run": sel["epochs_run"],
            "wall_seconds": wall,
            "seconds_per_epoch": result["timing"]["seconds_per_epoch"],
            "seconds_to_best": result["timing"]["seconds_to_best"],
            "capped": bool(sel["epochs_run"] < a.epochs and wall >= a.cap),
            "device": a.device,
            "resolved": {
                "lr": cfg.optim.lr,
                "weight_decay": cfg.optim.weight_decay,
                "score": cfg.loss.score,
                "tau": cfg.loss.tau,
                "n_neg": cfg.loss.n_neg,
            },
        }
        if kind == "seed":
            row["per_user_ndcg@20"] = per_user
        if kind == "curve":
            row["history"] = [
                {k: h[k] for k in ("epoch", "seconds", "valid/ndcg@20") if k in h} for h in result["history"]
            ]
        print(
            json.dumps({k: v for k, v in row.items() if k not in ("per_user_ndcg@20", "history")}),
            file=sys.stderr,
            flush=True,
        )
        self.args.results.parent.mkdir(parents=True, exist_ok=True)
        with self.args.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.done[run_key(row)] = row
        self.rows = list(self.done.values())
        return row

    def best(self, rows: list[dict]) -> dict:
        return max(rows, key=lambda r: r["valid_ndcg@20"])  # the first of equals: the earlier, simpler setting

    def transfer(self, loss: str, source: dict) -> dict:
        """The setting selected elsewhere with only the learning rate tuned again here (seed 0)."""
        return self.best([self.run("trial", loss, source | {"optim.lr": lr}) for lr in LRS])["setting"]

    def tune(self, loss: str) -> dict:
        """Stages 1–3 on seed 0; returns the selected setting."""
        best = self.best([self.run("trial", loss, s) for s in stage1(loss)])
        best = self.best(
            [best]
            + [
                self.run("trial", loss, best["setting"] | {"optim.weight_decay": d})
                for d in DECAYS
                if d != best["setting"]["optim.weight_decay"]
            ]
        )
        if loss != "bpr":
            best = self.best(
                [best]
                + [
                    self.run("trial", loss, best["setting"] | {"loss.n_neg": n})
                    for n in NEGATIVES
                    if n != best["setting"]["loss.n_neg"]
                ]
            )
        return best["setting"]


def selected_rows(rows: list[dict], dataset: str, split: str, model: str) -> dict[str, list[dict]]:
    """The seed rows of the selected setting of each loss (the setting of its best seed-0 trial)."""
    out = {}
    for loss in LOSSES:
        trials = [
            r
            for r in rows
            if r["kind"] == "trial"
            and (r["dataset"], r["split"], r["model"], r["loss"]) == (dataset, split, model, loss)
        ]
        seeds = [
            r
            for r in rows
            if r["kind"] == "seed"
            and (r["dataset"], r["split"], r["model"], r["loss"]) == (dataset, split, model, loss)
        ]
        if trials:
            chosen = max(trials, key=lambda r: r["valid_ndcg@20"])["setting"]
            seeds = [r for r in seeds if r["setting"] == chosen]
        if seeds:
            out[loss] = sorted(seeds, key=lambda r: r["seed"])
    return out


def per_user_mean(seeds: list[dict]) -> dict[int, float]:
    users = set.intersection(*(set(r["per_user_ndcg@20"]) for r in seeds))
    return {u: float(np.mean([r["per_user_ndcg@20"][u] for r in seeds])) for u in sorted(users)}


def setting_text(loss: str, r: dict) -> str:
    s = r["resolved"]
    parts = [f"lr {s['lr']:g}", f"wd {s['weight_decay']:g}"]
    if loss != "bpr":
        parts += (
            [s["score"]] + ([f"τ {s['tau']:g}"] if loss in ("item-ndcg", "softmax") else []) + [f"{s['n_neg']} neg"]
        )
    if loss == "ccl":
        parts.append(f"m {r['setting'].get('loss.margin', 0.8):g}, w {r['setting'].get('loss.neg_weight', 150.0):g}")
    return ", ".join(parts)


def table(rows: list[dict]) -> str:
    out = []
    groups = dict.fromkeys((r["dataset"], r["split"], r["model"]) for r in rows if r["kind"] in ("trial", "seed"))
    for dataset, split, model in groups:
        chosen = selected_rows(rows, dataset, split, model)
        if not chosen:
            continue
        n_trials = {
            loss: sum(
                1
                for r in rows
                if r["kind"] == "trial"
                and (r["dataset"], r["split"], r["model"], r["loss"]) == (dataset, split, model, loss)
            )
            for loss in chosen
        }
        out += [
            f"\n**{dataset}, {model}, {SPLIT_NAMES.get((dataset, split), split)} split**\n",
            "| loss | selected setting (trials) | valid N@20 | test R@20 | test N@20 | best epoch | s/ep | to best "
            "(s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for loss, seeds in chosen.items():
            stat = lambda m: (
                f"{np.mean([r[m] for r in seeds]):.4f} ± "
                f"{np.std([r[m] for r in seeds], ddof=1) if len(seeds) > 1 else 0:.4f}"
            )
            capped = "*" if any(r["capped"] for r in seeds) else ""
            out.append(
                f"| {loss} | {setting_text(loss, seeds[0])} ({n_trials[loss] or 'transferred'}) | "
                f"{stat('valid_ndcg@20')} | {stat('recall@20')} | "
                f"{stat('ndcg@20')} | {np.mean([r['best_epoch'] for r in seeds]):.0f} | "
                f"{np.mean([r['seconds_per_epoch'] for r in seeds]):.2f} | "
                f"{np.mean([r['seconds_to_best'] for r in seeds]):.0f}{capped} |"
            )
        lines = []
        for a, b in PAIRS:
            if a in chosen and b in chosen and len(chosen[a]) == len(chosen[b]) == len(SEEDS):
                ua, ub = per_user_mean(chosen[a]), per_user_mean(chosen[b])
                users = sorted(set(ua) & set(ub))
                va, vb = np.array([ua[u] for u in users]), np.array([ub[u] for u in users])
                lo, hi = paired_bootstrap_ci(va, vb, n_resamples=5000)
                p = randomization_test(va, vb, n_resamples=20000)
                per_seed = [rb["ndcg@20"] - ra["ndcg@20"] for ra, rb in zip(chosen[a], chosen[b])]
                lines.append(
                    f"| {b} − {a} | {vb.mean() - va.mean():+.4f} | [{lo:+.4f}, {hi:+.4f}] | {p:.2g} | "
                    f"{' / '.join(f'{d:+.4f}' for d in per_seed)} |"
                )
        if lines:
            out += [
                "",
                "| test N@20 difference | mean over users | 95% paired bootstrap | randomisation p | per seed (0 / 1 "
                "/ 2) |",
                "|---|---|---|---|---|",
            ] + lines
    curves = [r for r in rows if r["kind"] == "curve"]
    for dataset in dict.fromkeys(r["dataset"] for r in curves):
        out += [
            f"\n**{dataset}: validation NDCG@20 against training seconds (equal wall-time budget)**\n",
            "| loss | setting | budget (s) | epochs | s/ep | best valid N@20 (at s) | test R@20 | test N@20 | valid "
            "N@20 reached at s: 0.06 / 0.07 / 0.076 / 0.09 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in curves if r["dataset"] == dataset):
            t, points = 0.0, []
            for h in r["history"]:
                t += h.get("seconds", 0.0)
                if "valid/ndcg@20" in h:
                    points.append((t, h["valid/ndcg@20"]))
            best_t, best_v = max(points, key=lambda p: p[1])
            reach = [next((f"{t:.0f}" for t, v in points if v >= level), "–") for level in (0.06, 0.07, 0.076, 0.09)]
            out.append(
                f"| {r['loss']} | {setting_text(r['loss'], r)} | {r['setting']['train.time_limit']:.0f} "
                f"({r.get('device', 'cpu')}) | "
                f"{r['epochs_run']} | {r['seconds_per_epoch']:.1f} | "
                f"{best_v:.4f} ({best_t:.0f}) | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {' / '.join(reach)} |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("tune", "curves", "table"))
    parser.add_argument("--dataset", default="ml-100k", choices=tuple(DATA_OPTIONS))
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument(
        "--split", default="auto", choices=("auto", "random"), help="auto: the files' split (ML-100k: temporal)"
    )
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--patience", type=int, default=8, help="validations (every 2 epochs) without improvement")
    parser.add_argument(
        "--min-epochs", type=int, default=40, help="early stopping does not end a run before this epoch"
    )
    parser.add_argument("--cap", type=float, default=180.0, help="seconds per run (validation included): a safety cap")
    parser.add_argument("--budget", type=float, default=600.0, help="curves: seconds of fitting per loss")
    parser.add_argument("--settings-from", default="ml-100k", help="curves: use the settings selected on this dataset")
    parser.add_argument(
        "--transfer", help="tune: take each loss's setting selected on this dataset, re-tune only the learning rate"
    )
    parser.add_argument(
        "--no-retune", action="store_true", help="with --transfer: run the seeds at the transferred setting as it is"
    )
    parser.add_argument("--valid-users", type=int, default=3000, help="curves: validate on this fixed sample of users")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    bench = Bench(args)
    if args.action == "tune":
        if not (args.root / args.dataset).is_dir():
            sys.exit(f"{args.root / args.dataset} is missing: pass --root with the recsys data folders")
        torch.set_num_threads(max(1, torch.get_num_threads()))
        source = selected_rows(bench.rows, args.transfer, "auto", args.model) if args.transfer else {}
        for loss in args.losses:
            if args.transfer and loss not in source:
                sys.exit(f"no tuned {loss} setting on {args.transfer} yet: run `tune --dataset {args.transfer}` first")
            if args.transfer:
                setting = (
                    source[loss][0]["setting"] if args.no_retune else bench.transfer(loss, source[loss][0]["setting"])
                )
            else:
                setting = bench.tune(loss)
            for seed in SEEDS:
                bench.run("seed", loss, setting, seed)
    elif args.action == "curves":
        source = selected_rows(bench.rows, args.settings_from, "auto", args.model)
        for loss in ("bpr", "item-ndcg"):
            if loss not in source:
                sys.exit(
                    f"no tuned {loss} setting on {args.settings_from} yet: run `tune --dataset {args.settings_from}` "
                    "first"
                )
            bench.run(
                "curve",
                loss,
                source[loss][0]["setting"] | {"train.time_limit": args.budget},
                extra={
                    "train.eval_every": 1,
                    "train.patience": 0,
                    "train.epochs": 100000,
                    "data.valid_users": args.valid_users,
                },
            )
    print(table(bench.rows))


if __name__ == "__main__":
    main()
