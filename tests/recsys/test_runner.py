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
                                                  ("ngcf", "item-ndcg", "uniform"), ("lightgcnpp", "softmax", "ppr"),
                                                  ("lightgcn", "suprecall", "uniform")])
def test_train_then_evaluate_gives_the_same_test_metrics(tmp_path, capsys, model, loss, negatives):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    rc = main(["recsys", "train", str(data), "--model", model, "--loss", loss, "--negatives", negatives, "--epochs", "30", "--k", "5",
               "--dim", "16", "--lr", "0.05", "--run-dir", str(tmp_path / "run"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["selection"]["split"] == "valid" and out["test"]["ndcg@5"] > 0.2  # groups are easy to learn
    assert out == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert main(["recsys", "evaluate", str(tmp_path / "run"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["ndcg@5"] == pytest.approx(out["test"]["ndcg@5"]) and again["recall@5"] == pytest.approx(out["test"]["recall@5"])


def test_inductive_protocol_serves_new_users(tmp_path, capsys):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    rc = main(["recsys", "train", str(data), "--protocol", "inductive", "--epochs", "30", "--k", "5", "--dim", "16",
               "--lr", "0.05", "--run-dir", str(tmp_path / "run"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["run"]["protocol"] == "inductive" and out["test"]["n_users"] >= 1 and out["test"]["ndcg@5"] > 0.2


def test_inductive_graph_holds_context_never_targets(tmp_path, monkeypatch):
    """The held-out users' target items never reach training or the graph; their context edges join the
    graph only for serving them."""
    import numpy as np

    from rankopt.recsys import runner

    data_dir = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    cfg = runner.RecConfig(protocol="inductive", epochs=2, dim=8, k=5, held_out=0.25)
    data = runner.load_data(data_dir, cfg)
    held = np.unique(data.test.user)
    graphs = []
    original = runner.Recommender.set_graph

    def spy(self, interactions):
        graphs.append(set(zip(interactions.user.tolist(), interactions.item.tolist())))
        return original(self, interactions)

    monkeypatch.setattr(runner.Recommender, "set_graph", spy)
    runner.run_recsys(data_dir, cfg, tmp_path / "run")
    targets = set(zip(data.test.user.tolist(), data.test.item.tolist()))
    context = set(zip(data.context.user.tolist(), data.context.item.tolist()))
    assert graphs and all(not (g & targets) for g in graphs)
    training_graph = graphs[0]
    assert not {u for u, _ in training_graph} & set(held.tolist())
    assert any(context <= g for g in graphs[1:])  # served with their context
    assert not (targets & context)


def test_killed_run_resumes_to_the_same_result(tmp_path, capsys):
    """A run interrupted after an epoch continues from its checkpoint and ends where an uninterrupted
    run ends."""
    from rankopt.recsys import runner

    data_dir = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    cfg = runner.RecConfig(epochs=4, dim=8, k=5, lr=0.05, negatives="ppr")
    whole, _ = runner.run_recsys(data_dir, cfg, tmp_path / "whole")

    def crash(entry, cfg):
        if entry["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_recsys(data_dir, cfg, tmp_path / "resumed", progress=crash)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file() and not (tmp_path / "resumed" / "model.pt").exists()
    resumed, _ = runner.run_recsys(data_dir, cfg, tmp_path / "resumed")
    assert resumed["selection"]["epochs_run"] == 4
    for key in ("test", "selection", "valid"):
        assert resumed[key] == whole[key], key
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="another configuration"):
        runner.run_recsys(data_dir, runner.RecConfig(epochs=5, dim=8, k=5), tmp_path / "resumed")


def test_bad_data_dir(tmp_path, capsys):
    assert main(["recsys", "train", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def _brute_force_test(run_dir, data_dir, k):
    """Recall@k / NDCG@k of the saved model by a plain loop: each test user's train and valid items
    removed from the ranking, LightGCN's formulas."""
    import numpy as np
    import torch

    from rankopt.recsys import runner

    cfg = runner.RecConfig(**{key: v for key, v in json.loads((run_dir / "config.json").read_text()).items() if key != "data_dir"})
    data = runner.load_data(data_dir, cfg)
    graph = runner.Interactions.concat([data.train, data.valid]) if cfg.refit else data.train
    model = runner.build_model(cfg, data.n_users, data.n_items, graph)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        users, items = model.embeddings()
    recall, ndcg = [], []
    for u in np.unique(data.test.user):
        known = set(data.train.item[data.train.user == u]) | set(data.valid.item[data.valid.user == u])
        target = set(data.test.item[data.test.user == u])
        scores = (users[u] @ items.T).tolist()
        ranked = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if i not in known or i in target][:k]
        hits = [1.0 if i in target else 0.0 for i in ranked]
        recall.append(sum(hits) / len(target))
        idcg = sum(1 / np.log2(p + 2) for p in range(min(k, len(target))))
        ndcg.append(sum(h / np.log2(p + 2) for p, h in enumerate(hits)) / idcg)
    return float(np.mean(recall)), float(np.mean(ndcg))


@pytest.mark.parametrize("refit", [False, True])
def test_test_ranking_masks_train_and_valid_items(tmp_path, capsys, refit):
    """Validation positives are known at test time: ranked as negatives they would push test items
    down (each synthetic user's valid items are of its own group, so they score high)."""
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    args = ["recsys", "train", str(data), "--epochs", "12", "--k", "5", "--dim", "16", "--lr", "0.05",
            "--run-dir", str(tmp_path / "run"), "--json"] + (["--refit"] if refit else [])
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    recall, ndcg = _brute_force_test(tmp_path / "run", data, 5)
    assert out["test"]["recall@5"] == pytest.approx(recall, abs=1e-9)
    assert out["test"]["ndcg@5"] == pytest.approx(ndcg, abs=1e-9)
    if refit:
        assert out["run"]["refit"] == {"on": "train+valid", "epochs": out["selection"]["epoch"]}
