"""rankopt recsys train / evaluate end to end on small files, on the one run engine: the inductive
protocol, test masking, a real kill and resume, recipes and the config checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from miniatures import kill_beside_reference, untimed
from rankopt.cli import main
from rankopt.config import load_config

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


@pytest.mark.parametrize(
    "model,loss,negatives",
    [
        ("lightgcn", "bpr", "uniform"),
        ("lightgcn", "item-ndcg", "uniform"),
        ("lightgcn", "item-ndcg", "ppr"),
        ("mf", "supndcg", "uniform"),
        ("ngcf", "item-ndcg", "uniform"),
        ("lightgcnpp", "softmax", "ppr"),
        ("lightgcn", "suprecall", "uniform"),
        ("lightgcn", "ccl", "uniform"),
        ("lightgcn", "item-ndcg", "all"),
        ("mf", "softmax", "all"),
        ("lightgcn", "item-ndcg", "ppr-proportional"),
    ],
)
def test_train_then_evaluate_gives_the_same_test_metrics(tmp_path, capsys, model, loss, negatives):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    sampling = {
        "all": ["--set", "loss.n_neg=all"],
        "ppr-proportional": ["--negatives", "ppr", "--set", "loss.ppr_sampling=proportional"],
    }
    flags = sampling.get(negatives, ["--negatives", negatives]) + (
        ["--set", "loss.n_neg=20"] if negatives != "all" and loss != "bpr" else []
    )
    rc = main(
        [
            "recsys",
            "train",
            str(data),
            "--model",
            model,
            "--loss",
            loss,
            *flags,
            "--epochs",
            "30",
            "--k",
            "5",
            "--dim",
            "16",
            "--lr",
            "0.05",
            "--run-dir",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["selection"]["split"] == "valid" and out["test"]["ndcg@5"] > 0.2  # groups are easy to learn
    assert out == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert main(["recsys", "evaluate", str(tmp_path / "run"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["ndcg@5"] == pytest.approx(out["test"]["ndcg@5"]) and again["recall@5"] == pytest.approx(
        out["test"]["recall@5"]
    )


def test_inductive_protocol_serves_new_users(tmp_path, capsys):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    rc = main(
        [
            "recsys",
            "train",
            str(data),
            "--protocol",
            "inductive",
            "--epochs",
            "30",
            "--k",
            "5",
            "--dim",
            "16",
            "--lr",
            "0.05",
            "--run-dir",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"]["name"] == "inductive" and out["test"]["n_users"] >= 1 and out["test"]["ndcg@5"] > 0.2


def _cfg(data_dir, *overrides):
    return load_config(None, [f"data.root={data_dir}", *overrides], task="recsys")


def test_inductive_graph_holds_context_never_targets(tmp_path, monkeypatch):
    """The held-out users' target items never reach training or the graph; their context edges join the
    graph only for serving them."""
    import numpy as np

    from rankopt.recsys import models
    from rankopt.recsys.run import load_data
    from rankopt.runs import start_run

    data_dir = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    cfg = _cfg(
        data_dir,
        "data.protocol=inductive",
        "train.epochs=2",
        "model.dim=8",
        "train.metrics=[recall@5, ndcg@5]",
        "train.monitor=ndcg@5",
        "data.held_out=0.25",
    )
    data = load_data(cfg)
    held = np.unique(data.test.user)
    graphs = []
    original = models.Recommender.set_graph

    def spy(self, interactions):
        graphs.append(set(zip(interactions.user.tolist(), interactions.item.tolist())))
        return original(self, interactions)

    monkeypatch.setattr(models.Recommender, "set_graph", spy)
    start_run(cfg, tmp_path / "run", progress=False)
    targets = set(zip(data.test.user.tolist(), data.test.item.tolist()))
    context = set(zip(data.context.user.tolist(), data.context.item.tolist()))
    assert graphs and all(not (g & targets) for g in graphs)
    training_graph = graphs[0]
    assert not {u for u, _ in training_graph} & set(held.tolist())
    assert any(context <= g for g in graphs[1:])  # served with their context
    assert not (targets & context)


def _bigger(path, n_users=3000, n_items=600):
    """Enough users that an epoch lasts a few hundred milliseconds: long enough to kill one mid-way."""
    import numpy as np

    rng = np.random.default_rng(1)
    lines = {"train.txt": [], "valid.txt": [], "test.txt": []}
    for u in range(n_users):
        items = (u % 30) * 20 + rng.permutation(20)
        lines["train.txt"].append(f"{u} " + " ".join(map(str, items[:14])))
        lines["valid.txt"].append(f"{u} {items[14]} {items[15]}")
        lines["test.txt"].append(f"{u} {items[16]} {items[17]}")
    path.mkdir()
    for name, rows in lines.items():
        (path / name).write_text("\n".join(rows) + "\n")
    return path


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    """A real `rankopt recsys train` process killed (SIGKILL) during epoch 2 continues with --resume from
    epoch 1's checkpoint and ends exactly where an uninterrupted run ends (PPR negatives: the sampler's
    generator state comes back from the checkpoint)."""
    data = _bigger(tmp_path / "data")
    rankopt = str(Path(sys.executable).parent / "rankopt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [
        "recsys",
        "train",
        str(data),
        "--epochs",
        "3",  # killed in epoch 2: a third epoch runs after the resume
        "--negatives",
        "ppr",
        "--dim",
        "16",
        "--k",
        "5",
        "--json",
        "--set",
        "data.batch_users=64",
    ]
    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    reference = [rankopt, *args, "--run-dir", str(tmp_path / "straight")]
    straight = kill_beside_reference(reference, [rankopt, *args, "--run-dir", str(run)], run, env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert torch.load(last, weights_only=False)["epoch"] == 0, "the kill came after epoch 2 ended"
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run(
        [rankopt, "recsys", "train", "--resume", str(run), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (straight, resumed))
    for key in ("test", "selection", "valid", "history"):
        assert untimed(a[key]) == untimed(b[key]), key
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    assert (run / "test_per_query.csv").read_text() == (tmp_path / "straight" / "test_per_query.csv").read_text()


def test_resuming_a_finished_run_changes_nothing_and_an_occupied_folder_is_refused(tmp_path, capsys):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    run = tmp_path / "run"
    assert (
        main(["recsys", "train", str(data), "--epochs", "2", "--dim", "8", "--k", "5", "--run-dir", str(run), "--json"])
        == 0
    )
    first = capsys.readouterr().out.strip().splitlines()[-1]
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["recsys", "train", "--resume", str(run), "--json"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == first
    assert files == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["recsys", "train", str(data), "--epochs", "2", "--run-dir", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 2  # an image command on a recommendation run
    assert "is a recsys run: use rankopt recsys train" in capsys.readouterr().err


def test_bad_data_dir(tmp_path, capsys):
    assert main(["recsys", "train", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def _brute_force_test(run_dir, data_dir, k):
    """Recall@k / NDCG@k of the saved model by a plain loop: each test user's train and valid items
    removed from the ranking, LightGCN's formulas."""
    import numpy as np

    from rankopt.recsys.data import Interactions
    from rankopt.recsys.run import build_model, load_data
    from rankopt.runs import RunFolder

    cfg = RunFolder(run_dir).config("recsys")
    data = load_data(cfg)
    graph = Interactions.concat([data.train, data.valid]) if cfg.train.refit else data.train
    model = build_model(cfg, data.n_users, data.n_items, graph)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tested = metrics["protocol"]["refit"]["checkpoint"] if cfg.train.refit else metrics["selection"]["checkpoint"]
    state = torch.load(run_dir / tested, weights_only=True)["state_dict"]
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
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
    args = [
        "recsys",
        "train",
        str(data),
        "--epochs",
        "12",
        "--k",
        "5",
        "--dim",
        "16",
        "--lr",
        "0.05",
        "--run-dir",
        str(tmp_path / "run"),
        "--json",
    ] + (["--refit"] if refit else [])
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    recall, ndcg = _brute_force_test(tmp_path / "run", data, 5)
    assert out["test"]["recall@5"] == pytest.approx(recall, abs=1e-9)
    assert out["test"]["ndcg@5"] == pytest.approx(ndcg, abs=1e-9)
    if refit:
        assert out["protocol"]["refit"] == {
            "on": "train+valid",
            "epochs": out["selection"]["epoch"],
            "checkpoint": "refit/checkpoints/last.ckpt",
        }


def test_the_defaults_are_the_tuned_settings_and_config_yaml_records_them(tmp_path, capsys):
    import yaml

    from rankopt.recsys.config import tuned as tuned_of

    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    assert (
        main(
            [
                "recsys",
                "train",
                str(data),
                "--loss",
                "item-ndcg",
                "--epochs",
                "1",
                "--dim",
                "8",
                "--set",
                "data.batch_users=40",
                "--run-dir",
                str(tmp_path / "run"),
                "--json",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    tuned = tuned_of("item-ndcg")
    assert saved["optim"] == {"lr": tuned["lr"], "weight_decay": tuned["weight_decay"]}
    # the tuned 500 negatives, clamped to the 39 items a user of this 40-item catalogue can miss
    assert (saved["loss"]["score"], saved["loss"]["n_neg"]) == (tuned["score"], min(tuned["n_neg"], 39))
    assert saved["loss"]["tau"] == tuned["tau"][tuned["score"]]
    # a value given is kept; the temperature follows the score type asked for
    assert (
        main(
            [
                "recsys",
                "train",
                str(data),
                "--loss",
                "softmax",
                "--epochs",
                "1",
                "--dim",
                "8",
                "--lr",
                "0.02",
                "--set",
                "loss.score=dot",
                "--set",
                "loss.n_neg=all",
                "--run-dir",
                str(tmp_path / "run2"),
                "--json",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "run2" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.02 and saved["loss"]["n_neg"] == "all"
    assert saved["loss"]["tau"] == tuned_of("softmax")["tau"]["dot"]
    assert (
        main(
            [
                "recsys",
                "train",
                str(data),
                "--loss",
                "bpr",
                "--epochs",
                "1",
                "--dim",
                "8",
                "--run-dir",
                str(tmp_path / "run3"),
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "run3" / "config.yaml").read_text())
    assert saved["optim"] == {"lr": tuned_of("bpr")["lr"], "weight_decay": tuned_of("bpr")["weight_decay"]}
    ccl = load_config(None, ["loss.name=ccl", "loss.margin=0.1"], task="recsys").validate().loss
    assert (ccl.margin, ccl.neg_weight, ccl.n_neg) == (0.1, tuned_of("ccl")["neg_weight"], tuned_of("ccl")["n_neg"])


def test_splits_do_not_move_with_the_training_seed(tmp_path):
    from rankopt.recsys.run import load_data

    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "data1.txt").write_text(
        "\n".join(f"{u}\t{i}\t1" for u in range(30) for i in rng.choice(60, 12, replace=False)) + "\n"
    )
    (tmp_path / "data" / "test1.txt").write_text(
        "\n".join(f"{u}\t{i}\t1" for u in range(30) for i in rng.choice(60, 2, replace=False)) + "\n"
    )
    carve = lambda *sets: load_data(
        load_config(None, [f"data.root={tmp_path / 'data'}", *sets], task="recsys").validate()
    )
    a, b = carve("train.seed=0"), carve("train.seed=5")
    assert a.valid.item.tolist() == b.valid.item.tolist() and a.train.item.tolist() == b.train.item.tolist()
    assert carve("data.split_seed=3").valid.item.tolist() != a.valid.item.tolist()
    held = lambda *sets: set(carve("data.protocol=inductive", *sets).test.user.tolist())
    assert held("train.seed=0") == held("train.seed=9") != held("data.split_seed=4")


def test_validation_on_a_fixed_sample_of_users(tmp_path, capsys):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    assert (
        main(
            [
                "recsys",
                "train",
                str(data),
                "--epochs",
                "3",
                "--k",
                "5",
                "--dim",
                "8",
                "--set",
                "data.valid_users=17",
                "--set",
                "loss.n_neg=20",
                "--run-dir",
                str(tmp_path / "run"),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["valid"]["n_users"] == 17 and out["test"]["n_users"] == 80  # the test still ranks every user
    assert main(["recsys", "train", str(data), "--set", "data.valid_users=0"]) == 2
    assert "data.valid_users=0" in capsys.readouterr().err


def test_early_stopping_waits_for_min_epochs(tmp_path, capsys):
    """A flat validation curve (a learning rate that moves nothing): patience 1 stops at the second
    validation, unless train.min_epochs holds it back (as the tuned default does); the time limit is not
    held back."""
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    base = [
        "recsys",
        "train",
        str(data),
        "--loss",
        "bpr",
        "--lr",
        "1e-12",
        "--epochs",
        "9",
        "--k",
        "5",
        "--dim",
        "8",
        "--patience",
        "1",
        "--json",
    ]
    runs = {}
    for name, extra in (
        ("plain", ["--set", "train.min_epochs=0"]),
        ("default", []),
        ("held", ["--set", "train.min_epochs=6"]),
        ("capped", ["--set", "train.min_epochs=6", "--time-limit", "1e-6"]),
    ):
        assert main(base + extra + ["--run-dir", str(tmp_path / name)]) == 0
        runs[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["selection"]["epochs_run"]
    # the default is the tuned protocol's (not before epoch 40), so all 9 epochs run
    assert runs == {"plain": 2, "default": 9, "held": 6, "capped": 1}
