"""rankopt recsys train / evaluate end to end on small files; the inductive protocol."""

import json
from pathlib import Path

import pytest

from rankopt.cli import main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "recsys"


def synthetic(tmp_path, n_users=80, n_items=40):
    import numpy as np

    rng = np.random.default_rng(0)
    lines_train, lines_valid, lines_test = [], [], []
    for u in range(n_users):
        group = u % 4  # users of a group like the same block of 10 items, each a different subset
        items = (group * 10 + rng.permutation(10)).tolist()
        lines_train.append(f"{u} " + " ".join(map(str, items[:6])))
        lines_valid.append(f"{u} {items[6]} {items[7]}")
        lines_test.append(f"{u} {items[8]} {items[9]}")
    for name, lines in (("train.txt", lines_train), ("valid.txt", lines_valid), ("test.txt", lines_test)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("model,loss,negatives", [("lightgcn", "bpr", "uniform"), ("lightgcn", "item-ndcg", "uniform"),
                                                  ("lightgcn", "item-ndcg", "ppr"), ("mf", "supndcg", "uniform"),
                                                  ("ngcf", "item-ndcg", "uniform")])
def test_train_then_evaluate_gives_the_same_test_metrics(tmp_path, capsys, model, loss, negatives):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    rc = main(["recsys", "train", str(data), "--model", model, "--loss", loss, "--negatives", negatives, "--epochs", "30", "--k", "5",
               "--dim", "16", "--lr", "0.05", "--run-dir", str(tmp_path / "run"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["selected_on"] == "valid" and out["ndcg@5"] > 0.2  # groups are easy to learn
    assert main(["recsys", "evaluate", str(tmp_path / "run"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["ndcg@5"] == pytest.approx(out["ndcg@5"]) and again["recall@5"] == pytest.approx(out["recall@5"])


def test_inductive_protocol_serves_new_users(tmp_path, capsys):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    rc = main(["recsys", "train", str(data), "--protocol", "inductive", "--epochs", "30", "--k", "5", "--dim", "16",
               "--lr", "0.05", "--run-dir", str(tmp_path / "run"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"] == "inductive" and out["n_users"] >= 1 and out["ndcg@5"] > 0.2


def test_bad_data_dir(tmp_path, capsys):
    assert main(["recsys", "train", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err
