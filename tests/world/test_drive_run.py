"""`rankopt drive` end to end on a tiny configuration: the JSON contract, the stage folders, a real kill
in the middle of a stage and the resume that equals the uninterrupted run, and bad input (one line,
exit code 2, before any work)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from miniatures import kill_after_first_epoch, untimed
from rankopt.cli import main

pytest.importorskip("highway_env")

TINY = [
    "--set", "data.episodes=4", "--set", "data.steps=16", "--set", "data.height=16", "--set", "data.width=32",
    "--set", "tokenizer.codes=16", "--set", "tokenizer.epochs=2",
    "--set", "gpt.frames=2", "--set", "gpt.width=32", "--set", "gpt.layers=2", "--set", "gpt.head_dim=16",
    "--set", "gpt.epochs=2",
    "--set", "action.width=16", "--set", "action.horizon=3", "--set", "action.stride=1", "--set", "action.epochs=2",
    "--set", "action.samples=2", "--set", "action.euler_steps=2",
    "--set", "closed_loop.episodes=1", "--set", "closed_loop.steps=4", "--set", "closed_loop.scenarios=[stopped]",
]  # fmt: skip


def _run(run: Path, capsys, *extra: str) -> dict:
    assert main(["drive", *TINY, *extra, "--set", f"train.run_dir={run}", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
    run = tmp_path_factory.mktemp("drive") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process of the resume test: sums in the same order
    try:
        assert main(["drive", *TINY, "--set", f"train.run_dir={run}"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run, json.loads((run / "metrics.json").read_text())


def test_json_contract_and_stages(driven):
    run, out = driven
    for key in ("min_ade@1", "min_ade@2", "collision_rate"):
        assert key in out["test"] and out["test"][key] >= 0
    assert set(out["constant_velocity"]) >= {"min_ade@1", "collision_rate"}
    assert set(out["expert"]) >= {"collision_rate", "progress"}
    assert out["perplexity"] > 1 and out["copy_last_frame_perplexity"] > 1
    assert out["video"]["perplexity"] == out["perplexity"]
    for stage in ("tokenizer", "gpt", "vavam"):
        assert (run / stage / "result.json").is_file() and (run / stage / "checkpoints" / "best.ckpt").is_file()
    assert (run / "data" / "manifest.json").is_file()
    assert out["selection"]["metric"] == "min_ade@2"
    # minADE@2 ≤ minADE@1: the best of two samples includes the first
    assert out["test"]["min_ade@2"] <= out["test"]["min_ade@1"] + 1e-9


@pytest.mark.processes
def test_sigkill_mid_stage_then_resume_equals_uninterrupted(driven, tmp_path, capsys):
    _, straight = driven
    rankopt = str(Path(sys.executable).parent / "rankopt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run = tmp_path / "killed"
    argv = [rankopt, "drive", *TINY, "--set", f"train.run_dir={run}"]
    assert kill_after_first_epoch(argv, run, env, stage="gpt") == -signal.SIGKILL
    assert (run / "tokenizer" / "result.json").is_file() and not (run / "gpt" / "result.json").exists()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process and the straight run
    try:
        assert main(["drive", "--resume", str(run), "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = ("test", "constant_velocity", "expert", "perplexity", "copy_last_frame_perplexity", "tokenizer", "video")
    for key in (*keys, "selection"):
        assert untimed(resumed[key]) == untimed(straight[key]), key
    assert untimed(resumed["history"]) == untimed(straight["history"])


@pytest.mark.parametrize(
    "args,match",
    [
        (["--set", "action.horizon=20"], "does not fit episodes of data.steps=16"),
        (["--set", "data.height=18"], "data.height=18: frames need a side of at least 8 pixels, a multiple of 4"),
        (["--set", "closed_loop.scenarios=[rain]"], "expected some of traffic, stopped, cut-in"),
    ],
)
def test_bad_config_is_one_line_and_exit_code_2(tmp_path, capsys, args, match):
    assert main(["drive", *TINY, *args, "--set", f"train.run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_bad_episode_folders_are_named(driven, tmp_path, capsys, monkeypatch):
    run, _ = driven
    data = run / "data"
    # frames of another size than the config's
    assert main(["drive", *TINY, "--set", "data.height=32", "--set", f"data.root={data}",
                 "--set", f"train.run_dir={tmp_path / 'a'}"]) == 2  # fmt: skip
    assert "have frames of (16, 32); the config says data.height=32" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"version": 1, "frame_shape": [16, 32]}')
    assert main(["drive", *TINY, "--set", f"data.root={broken}", "--set", f"train.run_dir={tmp_path / 'b'}"]) == 2
    assert "is not a valid episode manifest" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "highway_env", None)
    assert main(["drive", *TINY, "--set", f"train.run_dir={tmp_path / 'c'}"]) == 2
    assert "rankopt drive needs highway-env: pip install 'rankopt[world]'" in capsys.readouterr().err
    assert not np.any([p.name == "checkpoints" for p in (tmp_path / "c").rglob("*")])


def test_the_report_of_a_driving_run_in_the_browser(driven, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from test_report_browser import report_in_browser

    run, out = driven
    shown, content, figures = report_in_browser(run, tmp_path / "drive.html")
    assert shown["min_ade@1"] == f"{out['test']['min_ade@1']:.4f}"
    assert shown["constant_velocity_ade"] == f"{out['constant_velocity']['min_ade@1']:.4f}"
    for title in ("Closed loop", "Generated frames", "Trajectories"):
        assert title in content
    assert figures >= 4  # training curve, closed loop, rollouts, trajectories
