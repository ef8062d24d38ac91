"""Gallery-sharded exact evaluation with real processes (gloo): 3 processes, each holding a third of
the gallery rows, give what one process holding everything gives — flat and hierarchical labels,
leave-one-out and a separate gallery, ties spanning shard boundaries — and the torchrun command
prints the single-process JSON."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rankopt.collectives import shard_bounds
from rankopt.metrics import evaluate
from rankopt.metrics.distributed import evaluate_distributed

METRICS = ["ap", "mrr", "ndcg", "hit@1", "hit@5", "map@r", "r-precision", "recall@4", "p@3", "mrr@3", "map@4"]
HIER = METRICS + ["hap", "asi", "ap/level1"]


def data(n=150, levels=1, seed=0):
    """Small-integer embeddings: every score exact in float32 whatever the blocking, and ties all
    over the ranking (duplicates under different labels, ties spanning the shards)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (n, 3), generator=g).float()
    x[x.abs().sum(dim=1) == 0, 0] = 1.0  # no zero row: cosine is defined everywhere
    fine = torch.randint(0, 12, (n,), generator=g)
    labels = fine if levels == 1 else torch.stack([fine, fine // 4], dim=1)
    return x, labels


def _worker(rank, world, init_file, cases, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = []
    for x, labels, queries, query_labels, metrics, similarity in cases:
        a, b = shard_bounds(len(x), world, rank)
        kwargs = dict(metrics=metrics, similarity=similarity, memory_budget=4096)  # several query blocks
        if queries is None:
            results.append(evaluate_distributed(x[a:b], labels[a:b], **kwargs))
        else:
            qa, qb = shard_bounds(len(queries), world, rank)
            results.append(evaluate_distributed(x[a:b], labels[a:b], queries[qa:qb], query_labels[qa:qb], **kwargs))
    torch.save(results, f"{out_file}.{rank}")
    dist.destroy_process_group()


@pytest.mark.processes
def test_three_processes_equal_one():
    flat, hier = data(), data(levels=2, seed=1)
    gallery, gallery_labels = data(n=100, levels=2, seed=2)
    queries, query_labels = data(n=40, levels=2, seed=3)
    cases = [
        (*flat, None, None, METRICS, "dot"),
        (*flat, None, None, METRICS, "cosine"),
        (*hier, None, None, HIER, "euclidean"),
        (gallery, gallery_labels, queries, query_labels, HIER, "dot"),
        (*data(n=7, seed=4), None, None, ["ap", "hit@1"], "dot"),  # fewer rows than a block, shards of 2-3
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        mp.spawn(_worker, args=(3, os.path.join(tmp, "init"), cases, out), nprocs=3, join=True)
        per_rank = [torch.load(f"{out}.{r}") for r in range(3)]
    assert per_rank[0] == per_rank[1] == per_rank[2]  # every process holds the same result
    for got, (x, labels, q, ql, metrics, similarity) in zip(per_rank[0], cases):
        want = (
            evaluate(x, labels, metrics=metrics, similarity=similarity)
            if q is None
            else evaluate(q, ql, x, labels, metrics=metrics, similarity=similarity)
        )
        for name in metrics + ["n_queries", "n_excluded"]:
            assert got[name] == pytest.approx(want[name], abs=1e-12), (similarity, name)


def test_needs_a_process_group():
    x, labels = data()
    with pytest.raises(RuntimeError, match="torchrun"):
        evaluate_distributed(x, labels)


def test_shard_bounds_cover_every_row_once():
    for n in (0, 1, 7, 10):
        for world in (1, 3, 4):
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


@pytest.mark.processes
def test_torchrun_command_prints_the_single_process_json(tmp_path):
    x, labels = data(n=90, levels=2, seed=5)
    np.savez(tmp_path / "emb.npz", embeddings=x.numpy(), labels=labels.numpy())
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--metrics", ",".join(HIER), "--similarity", "dot", "--json", "--memory-budget", "0.01"]
    run = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "3",
            "--master-port",
            "29517",
            "-m",
            "rankopt",
            "evaluate",
            str(tmp_path / "emb.npz"),
            "--distributed",
            "--per-query",
            str(tmp_path / "pq.csv"),
            *common,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 prints, the others do not
    single = subprocess.run(
        [sys.executable, "-m", "rankopt", "evaluate", str(tmp_path / "emb.npz"), *common],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    got, want = json.loads(lines[0]), json.loads(single.stdout.strip().splitlines()[-1])
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == (pytest.approx(want[k], abs=1e-12) if isinstance(want[k], float) else want[k]), k
    assert len((tmp_path / "pq.csv").read_text().splitlines()) == 91
    outside = subprocess.run(
        [sys.executable, "-m", "rankopt", "evaluate", str(tmp_path / "emb.npz"), "--distributed"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert outside.returncode == 2 and "torchrun" in outside.stderr
