"""rankopt train / embed on a tiny Fashion-MNIST written in IDX format; config errors."""

import json

import numpy as np
import pytest
import torch

from miniatures import write_fashion
from rankopt.cli import main
from rankopt.config import load_config
from rankopt.metrics import evaluate


@pytest.fixture()
def tiny_fashion(tmp_path):
    return write_fashion(tmp_path, 320, 120)


def run_cli(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_train_embed_evaluate_agree(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, _ = run_cli(
        [
            "train",
            "--data-dir",
            str(tiny_fashion),
            "--run-dir",
            str(run),
            "--set",
            "train.epochs=1",
            "--set",
            "data.batch_size=40",
            "--set",
            "data.m=4",
            "--json",
        ],
        capsys,
    )
    assert rc == 0
    reported = json.loads(out.strip().splitlines()[-1])
    assert reported == json.loads((run / "metrics.json").read_text())  # the --json line is metrics.json
    assert reported["run_dir"] == str(run) and 0 <= reported["test"]["map@r"] <= 1
    assert reported["selection"]["split"] == "valid" and reported["test"]["n_queries"] == 120
    rc, _, _ = run_cli(["embed", str(run / "checkpoints" / "best.ckpt"), "-o", str(tmp_path / "emb.npz")], capsys)
    assert rc == 0
    data = np.load(tmp_path / "emb.npz")
    again = evaluate(data["embeddings"], data["labels"], metrics=["hit@1", "map@r", "ap", "hap", "asi", "ndcg"])
    for k in ("hit@1", "map@r", "ap", "hap", "asi", "ndcg"):
        assert again[k] == pytest.approx(reported["test"][k], abs=1e-6), k
    rows = (run / "test_per_query.csv").read_text().splitlines()  # per-query values of the test, mean = metric
    header = rows[0].split(",")
    ap = [float(r.split(",")[header.index("ap")]) for r in rows[1:]]
    assert len(ap) == 120 and sum(ap) / len(ap) == pytest.approx(reported["test"]["ap"], abs=1e-9)
    # resume for one more epoch continues the same run
    rc, out, _ = run_cli(["train", "--resume", str(run), "--set", "train.epochs=2", "--json"], capsys)
    resumed = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and resumed["run_dir"] == str(run) and resumed["selection"]["epochs_run"] == 2
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and resumed["history"][0] == reported["history"][0]
    assert len(list((run / "logs").iterdir())) == 2  # both parts' logs kept
    resumed_log = (run / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    epoch_col = resumed_log[0].split(",").index("epoch")
    epochs = {row.split(",")[epoch_col] for row in resumed_log[1:]}
    assert "0" not in epochs and "1" in epochs  # the resumed part starts at epoch 2 (Lightning's 0-based 1)


def test_resuming_a_finished_run_changes_nothing(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    rc, _, _ = run_cli(
        [
            "train",
            "--data-dir",
            str(tiny_fashion),
            "--run-dir",
            str(run),
            "--set",
            "train.epochs=1",
            "--set",
            "data.batch_size=40",
            "--set",
            "data.m=4",
            "--json",
        ],
        capsys,
    )
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    rc, out, _ = run_cli(["train", "--resume", str(run)], capsys)
    assert rc == 0 and "map@r" in out and "selected: epoch 1 of 1" in out
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


def test_existing_run_is_not_overwritten(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    rc, _, err = run_cli(["train", "--data-dir", str(tiny_fashion), "--run-dir", str(run)], capsys)
    assert rc == 2 and "already holds a run" in err


@pytest.mark.parametrize(
    "recipe,overrides,match",
    [
        ("fashion-mnst", [], "did you mean fashion-mnist"),
        ("fashion-mnist", ["train.epoch=3"], "unknown config key train.epoch; did you mean train.epochs"),
        ("fashion-mnist", ["train.epochs=three"], "train.epochs: expected int"),
        ("fashion-mnist", ["train.epochs=true"], "train.epochs: expected int"),
        ("fashion-mnist", ["optim.lr_head=false"], "optim.lr_head: expected float"),
        ("fashion-mnist", ["optim.optimizer=rmsprop"], "rmsprop"),
        ("fashion-mnist", ["nokey"], "not key=value"),
    ],
)
def test_config_errors(recipe, overrides, match):
    with pytest.raises(ValueError, match=match):
        load_config(recipe, overrides)


def test_every_packaged_recipe_loads():
    from rankopt.config import recipe_names

    names = recipe_names()
    assert "fashion-mnist" in names and len(names) >= 10
    for name in names:
        cfg = load_config(name)
        assert cfg.train.epochs >= 1 and cfg.data.batch_size % cfg.data.m == 0


def test_missing_checkpoint_for_embed(tmp_path, capsys):
    rc, _, err = run_cli(["embed", str(tmp_path / "none.ckpt"), "-o", str(tmp_path / "e.npz")], capsys)
    assert rc == 2 and "does not exist" in err


def test_unique_memory_trains(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, err = run_cli(
        [
            "train",
            "--data-dir",
            str(tiny_fashion),
            "--run-dir",
            str(run),
            "--set",
            "train.epochs=1",
            "--set",
            "data.batch_size=40",
            "--set",
            "data.m=4",
            "--set",
            "loss.memory_unique=true",
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert (
        int(state["loss.occupied"].sum()) > 0 and state["loss.embeddings"].shape[0] == 290
    )  # one slot per training item


def test_unreadable_checkpoint_for_embed_is_one_line(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        run_cli(
            [
                "train",
                "--data-dir",
                str(tiny_fashion),
                "--run-dir",
                str(run),
                "--set",
                "train.epochs=1",
                "--set",
                "data.batch_size=40",
                "--set",
                "data.m=4",
                "--json",
            ],
            capsys,
        )[0]
        == 0
    )
    (run / "checkpoints" / "empty.ckpt").write_bytes(b"")
    rc, _, err = run_cli(["embed", str(run / "checkpoints" / "empty.ckpt"), "-o", str(tmp_path / "e.npz")], capsys)
    assert rc == 2 and "cannot be read" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_exponent_floats_are_read_as_numbers():
    """YAML 1.1 reads 1e-5 (no point) as text: a float field takes it as the number it is."""
    cfg = load_config("fashion-mnist", ["optim.lr_head=1e-5", "optim.weight_decay=2E+1"])
    assert cfg.optim.lr_head == 1e-5 and cfg.optim.weight_decay == 20.0
    with pytest.raises(ValueError, match="optim.lr_head: expected float"):
        load_config("fashion-mnist", ["optim.lr_head=1e-5x"])
