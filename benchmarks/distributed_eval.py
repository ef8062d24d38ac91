"""Exact evaluation of a gallery sharded across processes: a synthetic 2M × 128 gallery, 2,000
queries with their own labels, the default metric set (whole-list AP, MRR, NDCG included).

Runs, each as its own command, timed end to end (reading the files included):
  one process:          rankopt evaluate q.npz --gallery g.npz --json
  N processes (gloo):   torchrun --nproc-per-node N -m rankopt evaluate q.npz --gallery g.npz --distributed --json
and prints the time, the peak memory of the largest process, and whether the JSON equals the
one-process JSON (it must: the counts are exact).

Usage: python benchmarks/distributed_eval.py [--gallery 2000000] [--queries 2000] [--procs 1,2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make(folder: Path, n_gallery: int, n_queries: int, dim: int = 128, seed: int = 0) -> tuple[Path, Path]:
    """Classes of ~10 items around random centres; queries drawn from the same classes."""
    rng = np.random.default_rng(seed)
    n_classes = n_gallery // 10
    centres = rng.standard_normal((n_classes, dim), dtype=np.float32)
    g_labels = rng.integers(0, n_classes, n_gallery)
    gallery = np.empty((n_gallery, dim), dtype=np.float32)
    for s in range(0, n_gallery, 200_000):  # in slices: the noise of 2M rows at once would double the memory
        e = min(s + 200_000, n_gallery)
        gallery[s:e] = centres[g_labels[s:e]] + 1.5 * rng.standard_normal((e - s, dim), dtype=np.float32)
    q_labels = rng.integers(0, n_classes, n_queries)
    queries = centres[q_labels] + 1.5 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    g_path, q_path = folder / "gallery.npz", folder / "queries.npz"
    np.savez(g_path, embeddings=gallery, labels=g_labels)
    np.savez(q_path, embeddings=queries, labels=q_labels)
    return q_path, g_path


_MEASURE = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
    "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)"
)


def run(cmd: list[str]) -> tuple[float, float, dict]:
    """Seconds, peak RSS (GB) of the largest process it started, and the JSON it printed. A fresh
    Python process runs the command, so that the peak is this command's alone."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    peak_kb = int([x for x in proc.stderr.splitlines() if x.startswith("PEAK")][-1].split()[1])
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return elapsed, peak_kb / 2**20, json.loads(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gallery", type=int, default=2_000_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--procs", default="1,2")
    args = ap.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        q_path, g_path = make(Path(tmp), args.gallery, args.queries)
        common = ["evaluate", str(q_path), "--gallery", str(g_path), "--json"]
        rows = [("one process", *run([str(bin_dir / "rankopt"), *common]))]
        for n in (int(x) for x in args.procs.split(",")):
            cmd = [
                str(bin_dir / "torchrun"),
                "--nproc-per-node",
                str(n),
                "--master-port",
                "29533",
                "-m",
                "rankopt",
                *common,
                "--distributed",
            ]
            rows.append((f"{n} process{'es' if n > 1 else ''}, --distributed", *run(cmd)))
    reference = rows[0][3]
    print(f"\ngallery {args.gallery:,} × 128, {args.queries:,} queries, default metrics\n")
    print("| run | seconds | peak RSS of the largest process | JSON equal to one process |")
    print("|---|---|---|---|")
    for name, sec, rss, out in rows:
        same = all(abs(out[k] - v) <= 1e-12 if isinstance(v, float) else out[k] == v for k, v in reference.items())
        print(f"| {name} | {sec:.1f} | {rss:.2f} GB | {'yes' if same else 'NO'} |")
    print("\n" + ", ".join(f"{k} {v:.4f}" for k, v in reference.items() if isinstance(v, float)))


if __name__ == "__main__":
    main()
