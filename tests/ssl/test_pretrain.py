"""`rankopt pretrain` end to end on a miniature Fashion-MNIST: the JSON contract, the nested and RASA
results, fine-tuning from the run, a real kill and resume, the teacher's EMA, and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miniatures import kill_beside_reference, untimed, write_fashion
from rankopt.cli import main

TINY = [
    "--set",
    "data.train_limit=192",
    "--set",
    "data.limit=240",
    "--set",
    "data.batch_size=32",
    "--set",
    "head.prototypes=128",
    "--set",
    "head.hidden=32",
    "--set",
    "head.bottleneck=16",
    "--set",
    "crops.n_local=2",
    "--set",
    "eval.bank=100",
    "--set",
    "eval.rasa_images=40",
    "--json",
]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    return write_fashion(root, 400, 120)


@pytest.fixture(scope="module")
def pretrained(fashion, tmp_path_factory):
    run = tmp_path_factory.mktemp("pre") / "run"
    assert main(["pretrain", "--data-dir", str(fashion), "--run-dir", str(run), "--set", "train.epochs=2", *TINY]) == 0
    return run


def test_the_json_contract(pretrained, capsys):
    result = json.loads((pretrained / "metrics.json").read_text())
    for part in ("test", "init"):
        for key in ("map@r", "hit@1", "knn_acc", "probe_acc"):
            assert 0 <= result[part][key] <= 1, (part, key)
    assert result["test"]["n_queries"] == 120 and result["selection"]["split"] == "valid"
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert "nested" not in result and "rasa" not in result  # the projection variant on a CNN


def test_the_teacher_is_the_ema_of_the_student(fashion, tmp_path):
    """After a step, every teacher parameter is m·teacher + (1 − m)·student at the scheduled momentum."""
    from rankopt.config import load_config
    from rankopt.ssl.module import SSLModule
    from rankopt.ssl.run import build_splits

    cfg = load_config(
        None,
        [
            f"data.root={fashion}",
            "data.train_limit=64",
            "data.batch_size=32",
            "head.prototypes=64",
            "head.hidden=16",
            "head.bottleneck=8",
        ],
        task="ssl",
    )
    module = SSLModule(cfg, build_splits(cfg), steps_per_epoch=2)
    with torch.no_grad():
        for p in module.student.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    student = dict(module.student.named_parameters())

    m = module.scheduled(1)["momentum"]
    total = cfg.train.epochs * 2  # 2 steps per epoch
    assert m == pytest.approx(1 - 0.5 * (1 - 0.994) * (1 + math.cos(math.pi * 1 / total)))  # cosine 0.994 → 1
    module.update_teacher(m)
    for name, p in module.teacher.named_parameters():
        assert torch.allclose(p, m * before[name] + (1 - m) * student[name], atol=1e-6), name


def test_nested_slice_variant_and_rasa_on_the_tiny_vit(fashion, tmp_path, capsys):
    run = tmp_path / "vit"
    rc = main(
        [
            "pretrain",
            "pretrain-vit",
            "--data-dir",
            str(fashion),
            "--run-dir",
            str(run),
            "--set",
            "train.epochs=1",
            "--set",
            "head.variant=slice",
            *TINY,
        ]
    )
    assert rc == 0
    result = last_json(capsys.readouterr().out)
    assert [n["dim"] for n in result["nested"]] == [6, 12, 24, 48, 96]  # D = 96: D/16 ... D
    assert all(0 <= n["map@r"] <= 1 for n in result["nested"])
    rasa = result["rasa"]
    assert rasa["iterations"] == 5 and rasa["position_r2_after"] < rasa["position_r2_before"]
    history = result["history"][0]
    assert "valid/knn_acc" in history


def test_fine_tuning_starts_from_the_pretrained_teacher(pretrained, fashion, tmp_path, capsys):
    from rankopt.runs import RunFolder
    from rankopt.train.run import build_model

    state = RunFolder(pretrained).backbone_state()
    from rankopt.config import load_config

    cfg = load_config("fashion-mnist", [f"data.root={fashion}", f"model.weights={pretrained}"])
    model = build_model(cfg)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k
    rc = main(
        [
            "train",
            "--data-dir",
            str(fashion),
            "--run-dir",
            str(tmp_path / "ft"),
            "--set",
            f"model.weights={pretrained}",
            "--set",
            "train.epochs=1",
            "--set",
            "data.batch_size=40",
            "--set",
            "data.m=4",
            "--json",
        ]
    )
    assert rc == 0 and last_json(capsys.readouterr().out)["pretrained"] is True
    # the pre-trained backbone's frozen features in rankopt ood
    rc = main(
        [
            "ood",
            str(tmp_path / "ft"),
            "--backbone",
            str(pretrained),
            "--detectors",
            "msp,mahalanobis",
            "--ood",
            "noise",
            "--json",
        ]
    )
    out = last_json(capsys.readouterr().out)
    assert (
        rc == 0 and out["backbone"] == pretrained.name and (tmp_path / "ft" / f"ood-{pretrained.name}.json").is_file()
    )
    rc = main(
        [
            "train",
            "--data-dir",
            str(fashion),
            "--set",
            f"model.weights={pretrained}",
            "--set",
            "model.backbone=tiny_vit",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "that run trained a small_cnn" in err and len(err.strip().splitlines()) == 1


def test_report_of_a_pretraining_run(pretrained, tmp_path, capsys):
    rc = main(["report", str(pretrained), "-o", str(tmp_path / "r.html"), "--json"])
    assert rc == 0
    summary = last_json(capsys.readouterr().out)
    recorded = json.loads((pretrained / "metrics.json").read_text())
    assert summary["metrics"]["map@r"]["value"] == pytest.approx(recorded["test"]["map@r"])
    html = (tmp_path / "r.html").read_text()
    assert "What pre-training bought" in html and 'id="gallery"' in html


@pytest.mark.processes
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(fashion, tmp_path):
    rankopt = str(Path(sys.executable).parent / "rankopt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [rankopt, "pretrain", "--data-dir", str(fashion), "--set", "train.epochs=3", *TINY]
    run = tmp_path / "killed"
    straight = kill_beside_reference(
        [*args, "--run-dir", str(tmp_path / "straight")], [*args, "--run-dir", str(run)], run, env
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run(
        [rankopt, "pretrain", "--resume", str(run), "--json"], capture_output=True, text=True, env=env, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = last_json(straight.stdout), last_json(resumed.stdout)
    for key in ("test", "init", "selection", "valid", "history"):
        assert untimed(a[key]) == untimed(b[key]), key


def _empty_folder(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)  # a class folder, no image
    return tmp_path / "empty"


@pytest.mark.parametrize(
    "name,args,match",
    [
        ("no images", ["--set", "data.name=image-folder", "--set", "data.root={empty}"], "holds no image files"),
        ("local crops larger than the image", ["--set", "crops.local_size=40"], "larger than the 28 px images"),
        ("granularity not dividing the width", ["--set", "head.levels=9"], "not divisible by 256"),
        ("no prototype at the coarsest level", ["--set", "head.prototypes=8"], "would get no prototype"),
        ("teacher temperature zero", ["--set", "loss.teacher_temp=0"], "loss.teacher_temp=0"),
        ("negative teacher temperature", ["--set", "loss.warmup_teacher_temp=-0.1"], "must be positive"),
        ("unknown masking", ["--set", "loss.masking=random"], "loss.masking='random' is not one of"),
        ("crop scale out of range", ["--set", "crops.global_scale=[0.5, 1.5]"], "crops.global_scale"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(fashion, tmp_path, capsys, name, args, match):
    empty = _empty_folder(tmp_path)
    argv = [
        "pretrain",
        "--data-dir",
        str(fashion),
        "--run-dir",
        str(tmp_path / "r"),
        *[a.format(empty=empty) for a in args],
    ]
    assert main(argv) == 2, name
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r" / "checkpoints").exists()
