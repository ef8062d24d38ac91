"""Evaluation speed and peak memory at Stanford-Online-Products scale, against pytorch-metric-learning.

Builds a synthetic SOP-sized set (60,502 × 512, 11,316 classes of 2–12 images, 12 super-classes) and
times, each in its own process so that peak memory is its own:

  (a) pytorch-metric-learning AccuracyCalculator, k="max_bin_count": map@r, p@1, r-precision
  (b) rankopt.evaluate on the same three metrics
  (c) rankopt.evaluate on everything: ap, map@r, hit@1/10/100/1000, ndcg, hap, asi
  (d) a bare chunked matmul over the same data: the floor any exact method pays
  (e) rankopt.evaluate with no metrics named: the default set hit@1, hit@10, map@r, r-precision,
      ap, mrr, ndcg (fine labels), what `rankopt evaluate emb.npz` computes

Usage: python benchmarks/evaluate_speed.py [--device cuda] [--n 60502] [--cases a,b,c,d]
Prints a markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

CASES = {
    "a": "PML AccuracyCalculator (k=max_bin_count): map@r, p@1, r-precision",
    "b": "rankopt: map@r, p@1, r-precision",
    "c": "rankopt: ap, map@r, hit@1/10/100/1000, ndcg, hap, asi",
    "d": "bare chunked matmul (floor)",
    "e": "rankopt: the default set (hit@1, hit@10, map@r, r-precision, ap, mrr, ndcg)",
}


def make_data(n: int, dim: int = 512, seed: int = 0, noise: float = 2.4) -> tuple[torch.Tensor, torch.Tensor]:
    """SOP-like: 11,316 classes at full size (scaled down with n), sizes 2–12, 12 super-classes."""
    rng = np.random.default_rng(seed)
    n_classes = max(2, round(n * 11316 / 60502))
    sizes = np.full(n_classes, 2)
    extra = n - sizes.sum()
    sizes += np.bincount(rng.choice(n_classes, size=extra, p=None), minlength=n_classes).clip(max=10)
    while sizes.sum() < n:  # top up any class still under 12 after clipping
        sizes[rng.choice(np.flatnonzero(sizes < 12))] += 1
    fine = np.repeat(np.arange(n_classes), sizes)[:n]
    coarse = rng.integers(0, 12, size=n_classes)[fine]
    g = torch.Generator().manual_seed(seed)
    super_centers = torch.randn(12, dim, generator=g)
    centers = super_centers[torch.from_numpy(coarse[np.unique(fine, return_index=True)[1]])] + torch.randn(
        n_classes, dim, generator=g
    )
    x = centers[torch.from_numpy(fine)] + noise * torch.randn(n, dim, generator=g)
    x = torch.nn.functional.normalize(x, dim=1)
    labels = torch.from_numpy(np.stack([fine, coarse], axis=1)).to(torch.int64)
    return x, labels


def run_case(case: str, n: int, device: str, dim: int = 512) -> dict:
    x, labels = make_data(n, dim)
    dev = torch.device(device)
    x = x.to(dev)
    labels = labels.to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if case == "a":
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calc = AccuracyCalculator(
            include=("mean_average_precision_at_r", "precision_at_1", "r_precision"), k="max_bin_count", device=dev
        )
        out = calc.get_accuracy(x, labels[:, 0])
        values = {
            "map@r": out["mean_average_precision_at_r"],
            "p@1": out["precision_at_1"],
            "r-precision": out["r_precision"],
        }
    elif case == "e":
        from rankopt.metrics import evaluate

        out = evaluate(x, labels[:, :1], device=dev)
        values = {k: v for k, v in out.items() if not k.startswith("n_") and k != "similarity"}
    elif case in ("b", "c"):
        from rankopt.metrics import evaluate

        names = (
            ["map@r", "p@1", "r-precision"]
            if case == "b"
            else ["ap", "map@r", "hit@1", "hit@10", "hit@100", "hit@1000", "ndcg", "hap", "asi"]
        )
        # both sides rank the fine labels; rankopt gets the 2-level hierarchy only where it needs it
        lab = labels[:, :1] if case == "b" else labels
        out = evaluate(x, lab, metrics=names, device=dev)
        values = {k: out[k] for k in names}
    else:
        step = 4096
        acc = torch.zeros((), device=dev)
        for s in range(0, n, step):
            acc += (x[s : s + step] @ x.T).max()
        values = {"checksum": float(acc)}
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "case": case,
        "seconds": elapsed,
        "peak_rss": peak_rss,
        "extra_rss": peak_rss - base_rss,
        "values": values,
    }
    if dev.type == "cuda":
        result["peak_gpu"] = torch.cuda.max_memory_allocated()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--cases", default="d,b,e,a,c")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_case(args.worker, args.n, args.device, args.dim)))
        return
    results = {}
    for case in args.cases.split(","):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                case,
                "--n",
                str(args.n),
                "--dim",
                str(args.dim),
                "--device",
                args.device,
            ],
            capture_output=True,
            text=True,
            env=os.environ,
        )
        if proc.returncode != 0:
            print(f"case {case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"# {case}: {results[case]['seconds']:.2f} s", file=sys.stderr, flush=True)
    gpu = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nN = {args.n}, d = {args.dim}, {name}, torch {torch.__version__}\n")
    mem_col = "peak GPU memory" if gpu else "peak RSS (of which the run)"
    print(f"| case | what | time (s) | speed-up over (a) | time / floor (d) | {mem_col} |")
    print("|---|---|---|---|---|---|")
    for case in "abcde":
        if case not in results:
            continue
        r = results[case]
        va = results["a"]["seconds"] / r["seconds"] if "a" in results else float("nan")
        vd = r["seconds"] / results["d"]["seconds"] if "d" in results else float("nan")
        mem = (
            f"{r['peak_gpu'] / 2**30:.2f} GB"
            if gpu
            else f"{r['peak_rss'] / 2**30:.2f} GB ({r['extra_rss'] / 2**30:.2f} GB)"
        )
        print(f"| ({case}) | {CASES[case]} | {r['seconds']:.2f} | {va:.2f}× | {vd:.2f}× | {mem} |")
    print()
    for case in "abce":
        if case in results:
            vals = ", ".join(f"{k} {v:.4f}" for k, v in results[case]["values"].items())
            print(f"({case}) {vals}")


if __name__ == "__main__":
    main()
