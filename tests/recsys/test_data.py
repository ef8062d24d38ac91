"""Interaction readers on the real shared files and on small malformed ones; split invariants."""

from pathlib import Path

import numpy as np
import pytest

from rankopt.recsys import Interactions, inductive_split, load_directory, read_lightgcn, read_recbole, temporal_split

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "recsys"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared recsys data not present")


@needs_shared
def test_gowalla_standard_split_counts():
    d = load_directory(SHARED / "gowalla")
    assert (d.n_users, d.n_items) == (29858, 40981)
    assert len(d.train) + len(d.valid) == 810128 and len(d.test) == 217242


@needs_shared
def test_lastfm_pairs_and_ml100k_recbole():
    lastfm = load_directory(SHARED / "lastfm")
    assert len(lastfm.train) == 42135 and len(lastfm.test) == 10533 and lastfm.n_users == 1880
    ml = load_directory(SHARED / "ml-100k", rating_threshold=4)
    total = len(ml.train) + len(ml.valid) + len(ml.test)
    assert total < 100000 and ml.n_users == 943  # implicit: ratings >= 4 only


def test_malformed_lines_name_file_and_line(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2\n1 x 3\n")
    with pytest.raises(ValueError, match=r"train.txt:2: expected an integer id, got 'x'"):
        read_lightgcn(tmp_path / "train.txt")
    (tmp_path / "a.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\tbad\n")
    with pytest.raises(ValueError, match=r"a.inter:2: rating must be a number"):
        read_recbole(tmp_path / "a.inter")
    with pytest.raises(FileNotFoundError, match="no train.txt"):
        load_directory(tmp_path / "..")


def test_csv_temporal_split_and_remapping(tmp_path):
    rows = ["user,item,rating,timestamp"] + [f"u{u},i{(u * 7 + k) % 13},5,{k}" for u in range(5) for k in range(10)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    d = load_directory(tmp_path)
    assert d.n_users == 5 and list(d.user_ids[:2]) == ["u0", "u1"]
    # temporal: each user's test interactions are newer than all of its training ones
    for u in range(5):
        tr = d.train.timestamp[d.train.user == u]
        te = d.test.timestamp[d.test.user == u]
        assert len(tr) == 8 and len(te) == 1 and tr.max() < te.min()
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(Interactions(d.train.user, d.train.item))


def test_inductive_split_never_leaks_held_out_users(tmp_path):
    lines = [f"{u} " + " ".join(str((u * 3 + k) % 50) for k in range(8)) for u in range(40)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.txt").write_text(
        "\n".join(f"{u} {(u * 3 + 8) % 50}" for u in range(40)) + "\n"
    )  # unseen in train
    d = inductive_split(load_directory(tmp_path), held_out=0.25, context=0.5, seed=1)
    held = set(np.unique(d.test.user).tolist())
    assert len(held) == 10
    assert not held & set(np.unique(d.train.user).tolist())  # no held-out user trains
    assert set(np.unique(d.context.user).tolist()) <= held
    assert len(d.context) + len(d.test) == 10 * 9


def test_random_per_user_split_of_a_timestamped_file(tmp_path):
    rows = ["user,item,rating,timestamp"] + [f"u{u},i{(u * 7 + k) % 23},5,{k}" for u in range(6) for k in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    temporal = load_directory(tmp_path)
    random = load_directory(tmp_path, split="random", seed=0)
    assert load_directory(tmp_path, split="temporal").test.timestamp.tolist() == temporal.test.timestamp.tolist()
    newest_last = 0
    for u in range(6):
        tr, te = random.train.timestamp[random.train.user == u], random.test.timestamp[random.test.user == u]
        va = random.valid.timestamp[random.valid.user == u]
        assert (len(tr), len(va), len(te)) == (16, 2, 2)  # 80/10/10 per user
        assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(20))  # a partition of the user's items
        newest_last += tr.max() < te.min()
    assert newest_last < 6  # not the temporal cut: some test item is older than some training item
    again = load_directory(tmp_path, split="random", seed=0)
    assert again.test.item.tolist() == random.test.item.tolist()  # seeded
    assert load_directory(tmp_path, split="random", seed=1).test.item.tolist() != random.test.item.tolist()
    with pytest.raises(ValueError, match="split='weekly'"):
        load_directory(tmp_path, split="weekly")
    (tmp_path / "d.csv").write_text("user,item\n" + "\n".join(f"{u},{k}" for u in range(3) for k in range(10)) + "\n")
    with pytest.raises(ValueError, match="no timestamp column"):
        load_directory(tmp_path, split="temporal")
