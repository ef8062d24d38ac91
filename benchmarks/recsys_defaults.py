"""Do the shipped recommendation defaults give the tuned result under a newcomer's stopping rule?
(issue 28 §3)

    python benchmarks/recsys_defaults.py --root DATA/ml-100k          # 3 seeds per loss, then the table

Each loss runs as a newcomer would run it — ``rankopt recsys train DATA --rating-threshold 4 --model
lightgcn --loss LOSS --epochs 300 --patience 10`` (validation every epoch), every other setting the
shipped default — and its test NDCG@20 is printed next to the tuned row of
``benchmarks/recsys_tuning.py`` (validation every 2 epochs, patience 8, not before epoch 40). The tuned
values come with the protocol they were selected under (``train.min_epochs`` unset = 40), so a natural
patience no longer stops a dot-score run at its early peak. Rows go to a JSON-lines file (resumable).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from jsonl_rows import Rows

from rankopt.config import load_config
from rankopt.runs import start_run

RESULTS = Path(__file__).with_name("results") / "recsys-defaults.jsonl"
TUNED = Path(__file__).with_name("results") / "recsys-tuned.jsonl"
LOSSES = ("bpr", "item-ndcg", "softmax", "ccl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the ML-100k folder (RecBole .inter)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = Rows(RESULTS)
    for loss in LOSSES:
        for seed in range(args.seeds):
            if rows.find(loss=loss, seed=seed):
                continue
            cfg = load_config(
                None,
                [
                    f"data.root={args.root}",
                    "data.rating_threshold=4",
                    "model.name=lightgcn",
                    f"loss.name={loss}",
                    "train.epochs=300",
                    "train.patience=10",
                    f"train.seed={seed}",
                ],
                task="recsys",
            )
            with tempfile.TemporaryDirectory() as tmp:
                result, _ = start_run(cfg, Path(tmp) / "run", progress=False)
            row = {
                "loss": loss,
                "seed": seed,
                "ndcg@20": result["test"]["ndcg@20"],
                "recall@20": result["test"]["recall@20"],
                "best_epoch": result["selection"]["epoch"],
                "epochs_run": result["selection"]["epochs_run"],
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            }
            rows.add(row)
    tuned = [r for r in Rows(TUNED) if r["kind"] == "seed" and r["dataset"] == "ml-100k" and r.get("split") == "auto"]
    print("\nML-100k, LightGCN, test NDCG@20 (mean ± std over seeds)\n")
    print("| loss | shipped default, --patience 10 | epochs run | tuned row (recsys_tuning.py) | default / tuned |")
    print("|---|---|---|---|---|")
    bpr = np.mean([r["ndcg@20"] for r in rows if r["loss"] == "bpr"])
    for loss in LOSSES:
        d = [r for r in rows if r["loss"] == loss]
        t = [r["ndcg@20"] for r in tuned if r["loss"] == loss]
        if not d:
            continue
        dm = np.mean([r["ndcg@20"] for r in d])
        ds = np.std([r["ndcg@20"] for r in d], ddof=1) if len(d) > 1 else 0.0
        tm = f"{np.mean(t):.4f}" if t else "—"
        ratio = f"{dm / np.mean(t):.3f}" if t else "—"
        print(
            f"| {loss} | {dm:.4f} ± {ds:.4f} ({dm / bpr:.2f}× BPR) | {np.mean([r['epochs_run'] for r in d]):.0f} | "
            f"{tm} | {ratio} |"
        )


if __name__ == "__main__":
    main()
