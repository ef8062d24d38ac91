"""Exact k-NN: same neighbours as a dense brute force, self removed by index, faiss equal to torch."""

import pytest
import torch

from rankopt.search import knn


def test_knn_matches_dense_search_in_small_chunks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, dtype=torch.float64, generator=g)
    vals, idx = knn(x, 5, memory_budget=3000)
    xn = torch.nn.functional.normalize(x, dim=1)
    s = xn @ xn.T
    s.fill_diagonal_(float("-inf"))
    want_vals, want_idx = s.topk(5, dim=1)
    assert torch.equal(idx, want_idx)
    assert torch.allclose(vals, want_vals)
    assert not (idx == torch.arange(120).unsqueeze(1)).any()


def test_knn_separate_gallery_euclidean():
    g = torch.Generator().manual_seed(1)
    q, gal = torch.randn(30, 4, dtype=torch.float64, generator=g), torch.randn(50, 4, dtype=torch.float64, generator=g)
    _, idx = knn(q, 3, gal, similarity="euclidean")
    assert torch.equal(idx, torch.cdist(q, gal).topk(3, largest=False).indices)


def test_faiss_knn_equals_torch():
    pytest.importorskip("faiss")
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(2))
    for sim in ("cosine", "euclidean"):
        vt, it = knn(x, 4, similarity=sim)
        vf, i_f = knn(x, 4, similarity=sim, backend="faiss")
        assert torch.equal(it, i_f)
        assert torch.allclose(vt, vf, atol=1e-4)


def test_k_out_of_range():
    with pytest.raises(ValueError, match="between 1 and the 9 items"):
        knn(torch.randn(10, 3), 10)


def test_cosine_normalises_a_separate_gallery():
    """Gallery rows of very unequal norms: cosine ranks by angle, as a brute-force cosine does."""
    g = torch.Generator().manual_seed(2)
    q = torch.randn(20, 5, dtype=torch.float64, generator=g)
    gal = torch.randn(40, 5, dtype=torch.float64, generator=g) * torch.logspace(-2, 2, 40, dtype=torch.float64).unsqueeze(1)
    vals, idx = knn(q, 4, gal)
    cos = torch.nn.functional.cosine_similarity(q.unsqueeze(1), gal.unsqueeze(0), dim=2)
    want_vals, want_idx = cos.topk(4, dim=1)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(vals, want_vals)


def test_mixed_precision_inputs_search_in_float32_and_name_what_is_wrong():
    """float32 queries with a float64 gallery: both cast to one dtype (float32, the cheaper), scores
    equal float64 brute force to float32 precision; errors name the argument at fault."""
    from rankopt.search import check_query_gallery_labels, prepare_search

    g = torch.Generator().manual_seed(2)
    q, gal = torch.randn(5, 4, generator=g), torch.randn(9, 4, generator=g, dtype=torch.float64)
    search = prepare_search(q, gal, similarity="dot")
    scores = search.scores(0, 5)
    assert scores.dtype == torch.float32
    assert torch.allclose(scores.double(), q.double() @ gal.T, atol=1e-5)
    assert prepare_search(q.double(), gal, similarity="dot").scores(0, 5).dtype == torch.float64
    with pytest.raises(ValueError, match="backend"):
        prepare_search(q, gal, backend="annoy")
    bad = q.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="queries"):
        prepare_search(bad, gal)
    with pytest.raises(ValueError, match="query_labels has 4 rows but queries has 5"):
        check_query_gallery_labels(search, torch.arange(4), torch.arange(9))
