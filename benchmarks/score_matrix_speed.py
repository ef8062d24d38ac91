"""Metrics of a recommender's (users × items) score matrix: rankopt.rank_metrics against torchmetrics.

The RecBole-style input: uniform scores in (0, 1) (positive, so torchmetrics ≥ 1.7.4 does not drop
any hit), history masked to -inf (torchmetrics: dropped from the rows instead, as it has no mask),
~1% of items relevant per user. Cases, each timed once after a warm-up on a small slice:

  (a) rank_metrics, recall@20 + ndcg@20, mask=history: the top-k path (what rankopt does now)
  (b) the same metrics through a full sort of every row (what rank_metrics did before the top-k path)
  (c) torchmetrics RetrievalRecall(top_k=20) + RetrievalNormalizedDCG(top_k=20) on the flattened
      matrix with row indexes (its documented way), history items removed first

Values: (a) = (b) exactly; (c) agrees to 1e-6 on recall (no ties in continuous scores).

Usage: python benchmarks/score_matrix_speed.py [--users 6040] [--items 3706] [--skip-torchmetrics]
Prints a markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rankopt.metrics import rank_metrics
from rankopt.metrics.names import parse_metrics
from rankopt.metrics.ranking import ranking_from_scores

METRICS = ["recall@20", "ndcg@20"]


def make(users: int, items: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.random((users, items)))
    history = torch.from_numpy(rng.random((users, items)) < 0.05)
    relevance = torch.from_numpy(rng.random((users, items)) < 0.01) & ~history
    return scores, history, relevance


def full_sort(scores, history, relevance, block=1024):
    """recall@20 and ndcg@20 by a full sort of each row (rank_metrics' former path), in blocks."""
    specs = parse_metrics(METRICS)
    out = {s.name: [] for s in specs}
    for start in range(0, len(scores), block):
        s = scores[start : start + block].masked_fill(history[start : start + block], float("-inf"))
        rel = relevance[start : start + block].to(torch.int64)
        counts = torch.stack([(rel == 0).sum(1), (rel == 1).sum(1)], dim=1)
        ranking = ranking_from_scores(s, rel, counts, 1, s.shape[1])
        for spec in specs:
            v = spec.compute(ranking)
            out[spec.name].append(torch.where(counts[:, 1] > 0, v, torch.full_like(v, float("nan"))))
    return {n: float(torch.cat(v).nanmean()) for n, v in out.items()}


def with_torchmetrics(scores, history, relevance):
    from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalRecall

    keep = ~history
    rows = torch.arange(len(scores)).unsqueeze(1).expand_as(scores)[keep]
    preds, target = scores[keep], relevance[keep]
    recall = RetrievalRecall(top_k=20, empty_target_action="skip")
    ndcg = RetrievalNormalizedDCG(top_k=20, empty_target_action="skip")
    return {
        "recall@20": float(recall(preds, target, indexes=rows)),
        "ndcg@20": float(ndcg(preds, target, indexes=rows)),
    }


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--skip-torchmetrics", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    scores, history, relevance = make(args.users, args.items)
    warm = slice(0, 64)
    rank_metrics(scores[warm], relevance[warm], METRICS, mask=history[warm])
    full_sort(scores[warm], history[warm], relevance[warm])

    cases = {}
    cases["a"] = timed(lambda: rank_metrics(scores, relevance, METRICS, mask=history, reduce="mean"))
    cases["b"] = timed(lambda: full_sort(scores, history, relevance))
    if not args.skip_torchmetrics:
        cases["c"] = timed(lambda: with_torchmetrics(scores, history, relevance))
    labels = {
        "a": "rank_metrics (top-k path)",
        "b": "full sort of every row",
        "c": "torchmetrics Retrieval{Recall,NormalizedDCG}",
    }
    base = cases["a"][0]
    print(f"\n{args.users} users × {args.items} items, {torch.get_num_threads()} threads\n")
    print("| case | seconds | × rank_metrics | recall@20 | ndcg@20 |")
    print("|---|---|---|---|---|")
    for key, (sec, out) in cases.items():
        print(
            f"| ({key}) {labels[key]} | {sec:.2f} | {sec / base:.1f} | {out['recall@20']:.6f} | {out['ndcg@20']:.6f} |"
        )
    assert abs(cases["a"][1]["recall@20"] - cases["b"][1]["recall@20"]) < 1e-12
    assert abs(cases["a"][1]["ndcg@20"] - cases["b"][1]["ndcg@20"]) < 1e-12


if __name__ == "__main__":
    main()
