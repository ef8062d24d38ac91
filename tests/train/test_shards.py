"""Sharded evaluation with real processes (gloo on CPU): every query counted once, numbers equal to
one process's."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rankopt.metrics import evaluate
from rankopt.metrics.evaluate import evaluate_per_query
from rankopt.train.shards import ShardSampler, evaluate_shards, gather_in_order

METRICS = ["hit@1", "hit@5", "map@r", "ap", "mrr", "ndcg", "hap", "asi", "ap/level1"]


def _data(seed=0, n=61, n_gallery=47):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, 8, generator=g).round(decimals=1)  # rounding makes ties
    fine = torch.randint(0, 9, (n,), generator=g)
    labels = torch.stack([fine, fine // 3], dim=1)
    gallery = torch.randn(n_gallery, 8, generator=g).round(decimals=1)
    g_fine = torch.randint(0, 9, (n_gallery,), generator=g)
    return emb, labels, gallery, torch.stack([g_fine, g_fine // 3], dim=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        emb, labels, gallery, g_labels = _data()
        q = torch.tensor(ShardSampler(len(emb), world, rank).indices, dtype=torch.int64)
        g = torch.tensor(ShardSampler(len(gallery), world, rank).indices, dtype=torch.int64)
        loo = evaluate_shards(emb[q], labels[q], q, len(emb), metrics=METRICS)
        qg = evaluate_shards(
            emb[q], labels[q], q, len(emb), (gallery[g], g_labels[g], g, len(gallery)), metrics=METRICS
        )
        order = gather_in_order(emb[q] * 2, q, len(emb))
        torch.save({"loo": loo, "qg": qg, "order_ok": bool(torch.equal(order, emb * 2))}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_equals_one_process(world, tmp_path):
    mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, start_method="spawn")
    emb, labels, gallery, g_labels = _data()
    single_loo = evaluate(emb, labels, metrics=METRICS)
    single_qg = evaluate(emb, labels, gallery, g_labels, metrics=METRICS)
    for rank in range(world):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert got["order_ok"]
        assert got["loo"]["n_queries"] == len(emb) and got["qg"]["n_queries"] == len(emb)  # each query once
        for name in METRICS + ["n_excluded"]:
            assert got["loo"][name] == single_loo[name], name  # exactly: same rows, same order of the mean
            assert got["qg"][name] == single_qg[name], name


def test_shards_cover_every_item_once():
    for n, world in [(10, 3), (2, 4), (0, 2), (7, 1)]:
        shards = [ShardSampler(n, world, r).indices for r in range(world)]
        assert sorted(sum(shards, [])) == list(range(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_gather_in_order_single_process_checks_coverage():
    values = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(gather_in_order(values, torch.tensor([2, 0, 1]), 3), values[[1, 2, 0]])
    with pytest.raises(ValueError, match="exactly once"):
        gather_in_order(values, torch.tensor([0, 0, 1]), 3)


def test_query_index_removes_each_query_from_a_gallery_holding_it():
    emb, labels, _, _ = _data(seed=4)
    rows = np.array([3, 10, 11, 40])
    own = evaluate_per_query(emb[rows], labels[rows], emb, labels, metrics=METRICS, query_index=rows)
    whole = evaluate_per_query(emb, labels, metrics=METRICS)
    for name in METRICS:
        np.testing.assert_allclose(own.values[name], whole.values[name][rows], rtol=0, atol=1e-12)
