"""The rankopt command: JSON contract, per-query CSV, and exit code 2 with one line for bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from rankopt.cli import main
from rankopt.metrics import evaluate


def write(path, n=40, levels=1, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    fine = rng.integers(0, 6, size=n)
    labels = fine if levels == 1 else np.stack([fine, fine // 3], axis=1)
    np.savez(path, embeddings=emb, labels=labels)
    return emb, labels


def test_json_is_one_object_with_requested_metrics(tmp_path, capsys):
    emb, labels = write(tmp_path / "e.npz", levels=2)
    assert main(["evaluate", str(tmp_path / "e.npz"), "--metrics", "ap,map@r,r@1,hap", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ap", "map@r", "r@1", "hap", "n_queries", "n_excluded", "similarity", "ties"}
    want = evaluate(emb, labels, metrics=["ap", "map@r", "r@1", "hap"])
    assert want.pop("similarity") == out["similarity"] == "cosine"
    for k in want:
        assert out[k] == pytest.approx(want[k])


def test_gallery_and_per_query(tmp_path, capsys):
    write(tmp_path / "q.npz", n=20, seed=1)
    write(tmp_path / "g.npz", n=30, seed=2)
    rc = main(
        [
            "evaluate",
            str(tmp_path / "q.npz"),
            "--gallery",
            str(tmp_path / "g.npz"),
            "--metrics",
            "ap,hit@5",
            "--per-query",
            str(tmp_path / "out" / "pq.csv"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "hit@5" in text and "20 queries, 30 ranked items" in text
    with open(tmp_path / "out" / "pq.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and set(rows[0]) == {"query", "ap", "hit@5"}


def test_example_runs(capsys):
    assert main(["evaluate", "--example", "digits", "--metrics", "hit@1,map@r", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_queries"] == 1797 and 0.9 < out["hit@1"] <= 1.0


@pytest.mark.parametrize(
    "setup,args,match",
    [
        (lambda p: None, ["missing.npz"], "does not exist"),
        (lambda p: (p / "empty.npz").write_bytes(b""), ["empty.npz"], "is empty"),
        (lambda p: (p / "bad.npz").write_bytes(b"not a zip"), ["bad.npz"], "not a readable .npz"),
        (lambda p: np.savez(p / "nolab.npz", embeddings=np.zeros((3, 2))), ["nolab.npz"], "no array 'labels'"),
        (
            lambda p: np.savez(p / "f.npz", embeddings=np.random.rand(5, 2), labels=np.ones(5) * 0.5),
            ["f.npz"],
            "must be integers",
        ),
        (lambda p: np.savez(p / "n.npz", embeddings=np.full((5, 2), np.nan), labels=np.arange(5)), ["n.npz"], "NaN"),
        (lambda p: write(p / "k.npz", n=10), ["k.npz", "--metrics", "hit@1/level3"], "level 3 but the labels"),
        (lambda p: write(p / "m.npz", n=10), ["m.npz", "--metrics", "apx"], "unknown metric"),
    ],
)
def test_bad_input_exit_code_2_without_traceback(tmp_path, monkeypatch, capsys, setup, args, match):
    setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert match in err and err.startswith("rankopt: error:") and len(err.strip().splitlines()) == 1


def test_bad_input_from_a_real_process_is_exit_code_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rankopt.cli", "evaluate", str(tmp_path / "missing.npz")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("rankopt: error:") and "does not exist" in proc.stderr


def test_help_lists_every_option():
    proc = subprocess.run([sys.executable, "-m", "rankopt.cli", "evaluate", "--help"], capture_output=True, text=True)
    for opt in [
        "--gallery",
        "--metrics",
        "--ties",
        "--no-positive",
        "--similarity",
        "--device",
        "--json",
        "--per-query",
        "--backend",
    ]:
        assert opt in proc.stdout


def test_the_command_sets_passive_thread_waiting_unless_told_otherwise():
    """OMP_WAIT_POLICY=PASSIVE before torch loads (benchmarks/omp_wait_policy.py), a user's own policy kept."""
    import os

    code = "import os, sys; from rankopt.cli import main; main(['--version'])"
    probe = "import os; from rankopt.cli import _thread_wait_policy as t; t(); print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "RANKOPT_OMP_WAIT_POLICY")}
    assert (
        subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
        == "PASSIVE"
    )
    mine = subprocess.run(
        [sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True
    )
    assert mine.stdout.strip() == "ACTIVE"
    unset = subprocess.run(
        [sys.executable, "-c", probe], env={**env, "RANKOPT_OMP_WAIT_POLICY": "unset"}, capture_output=True, text=True
    )
    assert unset.stdout.strip() == "None"
    # torch is not loaded before the policy is set: importing the command does not import it
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, rankopt.cli; print('torch' in sys.modules)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert imports.stdout.strip() == "False"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0
