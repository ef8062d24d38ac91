"""Metrics called the way pytorch-metric-learning and RecBole users call them: their names, PML's
``ref_includes_query``, and the same numbers as PML's AccuracyCalculator."""

import warnings

import numpy as np
import pytest
import torch

from rankopt.metrics import evaluate, parse_metric

PML_NAMES = [
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
    "mean_average_precision",
    "mean_reciprocal_rank",
]


def data(seed=0, n=300, d=16, classes=25):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g).add(0.2)  # raw, unequal norms
    y = torch.randint(0, classes, (n,), generator=g)
    y[:3] = torch.tensor([100, 101, 102])  # lone queries: PML and rankopt both leave them out
    return x, y


def pml_accuracy(query, query_labels, reference, reference_labels, ref_includes_query):
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=tuple(PML_NAMES), device=torch.device("cpu"))
    return calc.get_accuracy(query, query_labels, reference, reference_labels, ref_includes_query=ref_includes_query)


def test_pml_names_give_pml_numbers_written_the_pml_way():
    x, y = data()
    want = pml_accuracy(x, y, x, y, ref_includes_query=True)
    got = evaluate(x, y, x, y, ref_includes_query=True, similarity="euclidean", metrics=PML_NAMES)
    for name in PML_NAMES:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name
    assert got["similarity"] == "euclidean"
    assert got["n_excluded"] == 3


def test_pml_names_with_a_separate_reference_set():
    x, y = data()
    q, ql, r, rl = x[:100], y[:100], x[100:], y[100:]
    want = pml_accuracy(q, ql, r, rl, ref_includes_query=False)
    got = evaluate(q, ql, r, rl, similarity="euclidean", metrics=PML_NAMES)
    for name in PML_NAMES:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name


def test_ref_includes_query_equals_leave_one_out():
    x, y = data(seed=1)
    ref = torch.cat([x, x[:50] + 1.0])  # the queries first, then more items
    ref_y = torch.cat([y, y[:50]])
    leave_one_out = evaluate(ref, ref_y, metrics="map@r,hit@1,ap")
    included = evaluate(ref, ref_y, ref, ref_y, ref_includes_query=True, metrics="map@r,hit@1,ap")
    assert included == leave_one_out
    q_only = evaluate(x, y, ref, ref_y, ref_includes_query=True, metrics="map@r,hit@1,ap")
    per_query = evaluate(ref[:300], ref_y[:300], ref, ref_y, metrics="hit@1")  # self included: every hit@1 is 1
    assert per_query["hit@1"] == 1.0 and q_only["hit@1"] < 1.0
    with pytest.raises(ValueError, match="first rows of the gallery are not the queries"):
        evaluate(x, y, ref.flip(0), ref_y.flip(0), ref_includes_query=True)
    with pytest.raises(ValueError, match="needs the gallery"):
        evaluate(x, y, ref_includes_query=True)


def test_gallery_that_is_the_query_set_warns():
    x, y = data()
    with pytest.warns(UserWarning, match="every query will retrieve itself"):
        out = evaluate(x, y, x, y, metrics="hit@1")
    assert out["hit@1"] == 1.0
    with pytest.warns(UserWarning, match="every query will retrieve itself"):
        evaluate(x, y, x.clone(), y, metrics="hit@1")  # equal content, another tensor
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(x, y, x + 1e-3, y, metrics="hit@1")
        evaluate(x, y, x, y, metrics="hit@1", ref_includes_query=True)


def test_recbole_and_pml_aliases_equal_the_rankopt_metric():
    x, y = data(seed=2)
    out = evaluate(x, y, metrics="hr@10,hit@10,precision@5,p@5,precision_at_1,hit@1,mean_reciprocal_rank,mrr")
    assert out["hr@10"] == out["hit@10"] and out["precision@5"] == out["p@5"]
    assert out["precision_at_1"] == out["hit@1"] and out["mean_reciprocal_rank"] == out["mrr"]


def test_unknown_peer_name_suggests_the_peer_name():
    with pytest.raises(ValueError, match="did you mean precision_at_1"):
        parse_metric("precision_at1")
    with pytest.raises(ValueError, match="ambiguous.*hit@10.*recall@10"):
        parse_metric("r@10", ambiguous_r=True)
    assert parse_metric("r@10").kind == "hit"


def test_cli_json_states_the_similarity(tmp_path, capsys):
    import json

    from rankopt.cli import main

    x, y = data()
    np.savez(tmp_path / "e.npz", embeddings=x.numpy(), labels=y.numpy())
    assert main(["evaluate", str(tmp_path / "e.npz"), "--metrics", "precision_at_1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["similarity"] == "cosine" and out["ties"] == "expected" and "precision_at_1" in out
