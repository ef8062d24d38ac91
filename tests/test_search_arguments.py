"""prepare_search's less travelled arguments, each against a hand-written expectation: query_index
("leading" and explicit, and its errors), the overflow-safe cosine normalisation, rows_per_chunk's
arithmetic, and the label checks of a search with and without a separate gallery. Written for the
search survivors of the fresh mutation sample (docs/testing.md)."""

from __future__ import annotations

import pytest
import torch

from rankopt.search import check_query_gallery_labels, prepare_search, rows_per_chunk


def _gallery() -> torch.Tensor:
    return torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [-1.0, 1.0]], dtype=torch.float64)


def test_leading_queries_are_removed_from_their_own_rankings_by_index():
    gal = _gallery()
    search = prepare_search(gal[:2], gal, query_index="leading", similarity="dot")
    assert search.self_index.tolist() == [0, 1]
    assert search.n_ranked == 3  # each query ranks the 3 gallery items that are not itself
    _, idx = search.topk(0, 2, 3)
    # by hand: query (1, 0) scores 0, 3, −1 on items 1..3; query (0, 2) scores 0, 8, 2 on items 0, 2, 3
    assert idx.tolist() == [[2, 1, 3], [2, 3, 0]]


def test_leading_queries_that_are_not_the_first_gallery_rows_are_refused():
    gal = _gallery()
    with pytest.raises(ValueError, match=r"put the 2 queries first in the gallery"):
        prepare_search(gal[1:3], gal, query_index="leading")
    with pytest.raises(ValueError, match=r"first rows of the gallery are not the queries"):
        prepare_search(gal, gal[:2], query_index="leading")  # more queries than gallery rows


def test_explicit_query_index_is_checked():
    gal = _gallery()
    search = prepare_search(gal[[2, 0]], gal, query_index=[2, 0])
    assert search.self_index.tolist() == [2, 0] and search.self_index.dtype == torch.int64
    with pytest.raises(ValueError, match=r"^query_index goes with a separate gallery"):
        prepare_search(gal, query_index=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"^query_index has shape \(3,\); expected \(2,\), one gallery index per"):
        prepare_search(gal[:2], gal, query_index=[0, 1, 2])
    with pytest.raises(ValueError, match=r"query_index must lie in \[0, 4\)"):
        prepare_search(gal[:2], gal, query_index=[-1, 1])
    assert prepare_search(gal[:2], gal, query_index=[0, 3]).self_index.tolist() == [0, 3]  # the last row is valid
    assert prepare_search(gal[:2], gal).self_index is None  # a separate gallery without index: nothing removed


def test_cosine_normalises_rows_whose_squared_norm_overflows():
    # float32 squares of 3e30 overflow to inf; the row is still the direction (0.6, 0.8)
    q = torch.tensor([[3e30, 4e30], [0.0, 5.0]], dtype=torch.float32)
    out = prepare_search(q).queries
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert out.dtype == torch.float32


def test_rows_per_chunk_by_hand():
    assert rows_per_chunk(1000, 10, 4) == 25  # 1000 bytes / (10 cells × 4 bytes)
    assert rows_per_chunk(1000, 10, 8) == 12  # rounded down
    assert rows_per_chunk(10, 10, 4) == 1  # less than one row still makes progress
    assert rows_per_chunk(10, 10, 4, minimum=7) == 7
    assert rows_per_chunk(100, 0, 4) == 100  # no column: one byte per row, not a division by zero
    for bad in (0, -5):
        with pytest.raises(ValueError, match=f"memory_budget={bad} must be a positive number of bytes"):
            rows_per_chunk(bad, 10, 4)


def test_label_checks_of_shared_and_separate_galleries():
    gal = _gallery()
    shared = prepare_search(gal)
    ql, gl = check_query_gallery_labels(shared, [3, 1, 3, 2], None)
    assert ql.tolist() == [[3], [1], [3], [2]] and gl is ql and ql.dtype == torch.int64
    with pytest.raises(ValueError, match=r"^gallery_labels was given without gallery embeddings$"):
        check_query_gallery_labels(shared, [3, 1, 3, 2], [3, 1, 3, 2])
    with pytest.raises(ValueError, match=r"labels has 3 rows but embeddings has 4"):
        check_query_gallery_labels(shared, [3, 1, 3], None)
    separate = prepare_search(gal[:2], gal)
    ql, gl = check_query_gallery_labels(separate, [[1, 0], [2, 0]], [[1, 0], [2, 0], [1, 1], [3, 1]])
    assert ql.shape == (2, 2) and gl.tolist() == [[1, 0], [2, 0], [1, 1], [3, 1]]
    with pytest.raises(ValueError, match=r"^gallery embeddings were given without gallery_labels$"):
        check_query_gallery_labels(separate, [1, 2], None)
    with pytest.raises(ValueError, match=r"gallery_labels has 3 rows but gallery has 4"):
        check_query_gallery_labels(separate, [1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"^query_labels has 1 label columns but gallery_labels has 2; both"):
        check_query_gallery_labels(separate, [1, 2], [[1, 0], [2, 0], [1, 1], [3, 1]])
