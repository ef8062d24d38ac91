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
    gal = torch.randn(40, 5, dtype=torch.float64, generator=g) * torch.logspace(
        -2, 2, 40, dtype=torch.float64
    ).unsqueeze(1)
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


def test_faiss_over_several_query_blocks_equals_torch():
    pytest.importorskip("faiss")
    x = torch.randn(90, 8, generator=torch.Generator().manual_seed(3))
    vt, it = knn(x, 4, memory_budget=2000)  # a few queries per block
    vf, i_f = knn(x, 4, backend="faiss", memory_budget=2000)
    assert i_f.shape == (90, 4) and torch.equal(it, i_f)
    assert torch.allclose(vt, vf, atol=1e-4)


def test_input_errors_name_the_argument_and_the_numbers():
    from rankopt.search import check_query_gallery_labels, prepare_search

    q, gal = torch.randn(5, 4), torch.randn(9, 4)
    with pytest.raises(ValueError, match=r"^gallery has dimension 3 but queries have 4$"):
        prepare_search(q, torch.randn(9, 3))
    zero = q.clone()
    zero[2] = 0
    with pytest.raises(ValueError, match=r"^embeddings row 2 is all zeros"):
        prepare_search(zero)
    with pytest.raises(ValueError, match=r"^queries row 2 is all zeros"):
        prepare_search(zero, gal)
    with pytest.raises(ValueError, match=r"^gallery row 2 is all zeros"):
        prepare_search(q, torch.cat([gal[:2], torch.zeros(1, 4), gal[3:]]))
    with pytest.raises(ValueError, match=r"query_index must lie in \[0, 9\), the gallery's rows"):
        prepare_search(q, gal, query_index=torch.tensor([0, 1, 2, 3, 9]))
    search = prepare_search(q, gal)
    with pytest.raises(ValueError, match="query_labels"):
        check_query_gallery_labels(search, torch.arange(5).float() + 0.5, torch.arange(9))


def test_cosine_divides_each_row_by_its_own_norm():
    from rankopt.search import prepare_search

    q = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])  # 2 rows of 3: a row-wise norm, not a broadcast
    assert torch.allclose(prepare_search(q).queries, torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]))


def test_overflow_bounds_of_dot_and_euclidean_scores():
    """float32: |q·g| <= |q||g| for dot; |2 q·g − |g|²| <= 2|q||g| + |g|² for euclidean."""
    from rankopt.search import prepare_search

    def rows(sq_norm):  # two rows of squared norm sq_norm
        return torch.full((2, 1), sq_norm**0.5, dtype=torch.float32)

    prepare_search(rows(1.5e38), rows(1.5e38), similarity="dot")  # 1.5e38 < 3.4e38: fine
    prepare_search(rows(1.0e38), rows(1.0e38), similarity="euclidean")  # 2e38 + 1e38 = 3e38: fine
    with pytest.raises(ValueError, match="similarities would overflow torch.float32"):
        prepare_search(rows(1.5e38), rows(1.5e38), similarity="euclidean")  # 3e38 + 1.5e38 overflows
    with pytest.raises(ValueError, match="similarities would overflow"):
        prepare_search(rows(4.0e38), rows(4.0e38), similarity="dot")
