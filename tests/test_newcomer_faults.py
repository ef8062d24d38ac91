"""What a newcomer hit (issue 28 §7), each answered: silent wrong numbers and runaway resources become
errors naming the problem or counted warnings; tracebacks and bare exits become one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from miniatures import write_fashion
from rankopt.cli import main


def one_line_error(argv, capsys, match: str) -> None:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err


# --- recommendation data ---------------------------------------------------------------------------
def _with_duplicates(root: Path) -> Path:
    root.mkdir()
    train = [f"{u} {u % 7} {(u + 1) % 7} {(u + 2) % 7}" for u in range(30)]
    test = [f"{u} {(u + 3) % 7} {(u + 3) % 7}" for u in range(30)]  # every test line twice
    test[0] = "0 0"  # a test pair user 0 trained on: leakage
    (root / "train.txt").write_text("\n".join(train + train[:5]) + "\n")  # 5 training lines repeated
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return root


def test_duplicate_lines_and_test_pairs_seen_in_training_are_dropped_and_said(tmp_path, caplog):
    from rankopt.recsys import load_directory

    data = load_directory(_with_duplicates(tmp_path / "d"))
    assert data.cleaning == {"duplicates_train": 15, "duplicates_test": 29, "test_in_train": 1}
    pairs = set(zip(data.train.user.tolist(), data.train.item.tolist()))
    assert not pairs & set(zip(data.test.user.tolist(), data.test.item.tolist()))
    assert len(pairs) == len(data.train)
    assert "dropped 15 duplicates train, 29 duplicates test, 1 test in train" in caplog.text


def test_the_cleaning_is_recorded_and_an_emptied_dataset_is_refused(tmp_path, capsys):
    data = _with_duplicates(tmp_path / "d")
    rc = main(
        [
            "recsys",
            "train",
            str(data),
            "--epochs",
            "1",
            "--dim",
            "4",
            "--k",
            "5",
            "--run-dir",
            str(tmp_path / "r"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"]["dropped_when_loading"]["test_in_train"] == 1
    csv = tmp_path / "c"
    csv.mkdir()
    (csv / "i.csv").write_text("user,item,rating\n" + "".join(f"{u},{u % 5},3\n" for u in range(20)))
    one_line_error(
        ["recsys", "train", csv, "--rating-threshold", "99", "--run-dir", tmp_path / "r2"],
        capsys,
        "no training interaction is left",
    )
    assert not (tmp_path / "r2" / "checkpoints").exists()


def test_more_negatives_than_the_catalogue_are_clamped_and_recorded(tmp_path, capsys, caplog):
    """100,000 negatives on a 7-item catalogue once grew to 24 GB: clamped to the items a user can miss."""
    import yaml

    data = _with_duplicates(tmp_path / "d")
    rc = main(
        [
            "recsys",
            "train",
            str(data),
            "--set",
            "loss.n_neg=100000",
            "--epochs",
            "1",
            "--dim",
            "4",
            "--k",
            "5",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 0 and "loss.n_neg=100000" in caplog.text
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["loss"]["n_neg"] == 6


# --- losses and metrics ----------------------------------------------------------------------------
def test_losses_refuse_a_zero_row_empty_embeddings_and_a_non_positive_temperature():
    from rankopt.losses import HAP, ROADMAP, SmoothAP, SupAP

    x, y = torch.randn(8, 4), torch.arange(8) % 2
    x[3] = 0
    for loss in (ROADMAP(), SmoothAP(), HAP()):
        with pytest.raises(ValueError, match="row 3 has zero norm"):
            loss(x, y if not isinstance(loss, HAP) else torch.stack([y, y // 2], 1))
    assert torch.isfinite(SmoothAP(normalize=False)(x, y))  # raw dot products: a zero row is a valid input
    with pytest.raises(ValueError, match=r"shape \(8, 0\)"):
        SmoothAP()(torch.randn(8, 0), y)
    for tau in (0, -0.1):
        with pytest.raises(ValueError, match=f"tau={tau} must be positive"):
            SupAP(tau=tau)
        with pytest.raises(ValueError, match=f"tau={tau} must be positive"):
            SmoothAP(tau=tau)


def test_metric_names_labels_and_budgets():
    from rankopt.metrics import evaluate

    x = np.random.default_rng(0).normal(size=(12, 3))
    flat = np.arange(12) % 3
    assert set(evaluate(x, flat, metrics="ap, map@r")) >= {"ap", "map@r"}  # names as written, blanks dropped
    not_a_tree = np.stack([np.arange(12) % 3, np.arange(12) % 2], 1)  # fine label 0 under coarse 0 and 1
    with pytest.warns(UserWarning, match=r"not a tree \(label 0 of column 0 has 2 parents"):
        evaluate(x, not_a_tree, metrics=["hap"])
    for budget in (0, -5):
        with pytest.raises(ValueError, match=f"memory_budget={budget} must be a positive"):
            evaluate(x, flat, metrics=["ap"], memory_budget=budget)


# --- runs ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return write_fashion(tmp_path_factory.mktemp("fashion"), 320, 80)


def _train(fashion, run, *extra):
    return [
        "train",
        "--data-dir",
        fashion,
        "--run-dir",
        run,
        "--set",
        "train.epochs=1",
        "--set",
        "model.dim=8",
        "--set",
        "data.batch_size=40",
        "--set",
        "data.m=4",
        *extra,
    ]


def test_a_damaged_or_foreign_checkpoint_is_one_line(fashion, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([str(a) for a in _train(fashion, run, "--set", "train.epochs=1")]) == 0
    capsys.readouterr()
    last = run / "checkpoints" / "last.ckpt"
    for content in (os.urandom(4096), b""):
        last.write_bytes(content)
        one_line_error(
            ["train", "--resume", run, "--set", "train.epochs=2"], capsys, "cannot be read as a rankopt checkpoint"
        )
    torch.save({"state_dict": {"model.user.weight": torch.zeros(3, 4)}}, last)  # another task's weights
    one_line_error(["train", "--resume", run, "--set", "train.epochs=2"], capsys, "is not of this run's model")


def test_a_recipe_whose_dataset_needs_a_folder_says_so(tmp_path, capsys):
    one_line_error(["train", "roadmap-cub-resnet50", "--run-dir", tmp_path / "r"], capsys, "data.root is unset")


def test_a_training_option_of_the_loss_that_is_out_of_range(fashion, tmp_path, capsys):
    one_line_error(_train(fashion, tmp_path / "r", "--set", "loss.options={tau: 0}"), capsys, "tau=0 must be positive")


def test_a_full_disk_is_one_line_and_leaves_the_previous_file(tmp_path, monkeypatch):
    from rankopt import atomic

    target = tmp_path / "last.ckpt"
    atomic.atomic_torch_save({"a": torch.ones(2)}, target)

    def full(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(atomic.torch, "save", full)
    with pytest.raises(OSError, match="writing .*last.ckpt failed .* the previous last.ckpt is intact"):
        atomic.atomic_torch_save({"a": torch.zeros(2)}, target)
    assert torch.equal(torch.load(target)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


@pytest.mark.processes
def test_ctrl_c_mid_epoch_says_interrupted_and_exits_130(fashion, tmp_path):
    rankopt = str(Path(sys.executable).parent / "rankopt")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [rankopt, *map(str, _train(fashion, run, "--set", "train.epochs=50"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A job started with `&` by a shell without job control inherits SIGINT ignored, and Python
        # keeps it so (the run then finished untouched and exited 0). Ctrl-C at a terminal reaches a
        # foreground process, whose SIGINT is at its default: start the run like that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (run / "checkpoints" / "last.ckpt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    # Python drops a KeyboardInterrupt raised inside a finaliser ("Exception ignored in ..."), so one
    # Ctrl-C can be lost whatever the program does.
    # A user presses again; so does the test, and it is still one exit with 130.
    for _ in range(6):  # a handled Ctrl-C ignores the later ones (Lightning): pressing again is harmless
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()
        pytest.fail("six SIGINTs, 20 s apart, did not stop the run")
    assert proc.returncode == 130, err[-2000:]
    assert "rankopt: interrupted" in err and "--resume continues" in err
    resumed = subprocess.run(
        [rankopt, "train", "--resume", str(run), "--set", "train.epochs=2", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
