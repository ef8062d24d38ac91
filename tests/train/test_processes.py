"""Real processes: a `rankopt train` killed with SIGKILL mid-epoch resumes to the uninterrupted run's
numbers; DDP with 2 processes (gloo) counts each test query once, and checkpoints move between 1 and
N processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rankopt.metrics import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from miniatures import kill_beside_reference, untimed, write_fashion

RANKOPT = str(Path(sys.executable).parent / "rankopt")
pytestmark = pytest.mark.processes


def _train_args(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        RANKOPT,
        "train",
        "--data-dir",
        str(data),
        "--run-dir",
        str(run),
        "--set",
        "data.batch_size=40",
        "--set",
        "data.m=4",
        "--json",
        *extra,
    ]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _last_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return write_fashion(tmp_path_factory.mktemp("fashion"), 1600, 200)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(fashion, tmp_path):
    args = ["--set", "train.epochs=3", "--set", "train.seed=3"]
    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    reference = _train_args(fashion, tmp_path / "straight", *args)
    straight = kill_beside_reference(reference, _train_args(fashion, run, *args), run, _env())
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert torch.load(last, weights_only=False)["epoch"] == 0, "the kill came after epoch 2 ended"
    assert not (run / "metrics.json").exists()

    resumed = subprocess.run(
        [RANKOPT, "train", "--resume", str(run), "--json"], capture_output=True, text=True, env=_env(), timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _last_line(straight.stdout), _last_line(resumed.stdout)
    for key in ("test", "selection", "valid", "history"):
        assert untimed(a[key]) == untimed(b[key]), key


def test_ddp_two_processes_count_each_query_once_and_checkpoints_move(fashion, tmp_path):
    run = tmp_path / "run"
    one = subprocess.run(
        _train_args(fashion, run, "--set", "train.epochs=1", "--set", "data.train_limit=400"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    # the single-process checkpoint resumed by 2 DDP processes (gloo) for a second epoch
    ddp = subprocess.run(
        [
            RANKOPT,
            "train",
            "--resume",
            str(run),
            "--set",
            "train.epochs=2",
            "--set",
            "train.strategy=ddp",
            "--set",
            "train.devices=2",
            "--set",
            "train.accelerator=cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    result = _last_line(ddp.stdout)
    assert result["selection"]["epochs_run"] == 2
    assert result["test"]["n_queries"] == 200  # not 400: every query once
    assert all(h.get("valid/n_queries", 160) == 160 for h in result["history"])
    # the checkpoint the 2 processes selected loads on 1 process and gives the same test numbers
    out = tmp_path / "emb.npz"
    emb = subprocess.run(
        [RANKOPT, "embed", str(run / "checkpoints" / "best.ckpt"), "-o", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert emb.returncode == 0, emb.stderr[-2000:]
    data = np.load(out)
    again = evaluate(data["embeddings"], data["labels"], metrics=["hit@1", "map@r", "ap"])
    for k in ("hit@1", "map@r", "ap"):
        assert again[k] == pytest.approx(result["test"][k], abs=1e-6), k
