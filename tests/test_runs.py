"""The run-folder contract (rankopt.runs.RunFolder), end to end through the command line: every reader
(report, ood, embed → evaluate, --resume of a finished run, recsys evaluate) on every kind of run
(images with a carved validation split, without validation, with data.limit, with a query/gallery test;
recommendation transductive and inductive), and a folder's integrity: relocatable (copied, moved),
locked against a second writer (a real second process), never rewritten by a resume that changes what
its weights were trained with, its data recognised by fingerprint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from miniatures import png, write_fashion
from rankopt.cli import main
from rankopt.metrics import evaluate

OOD_FAST = [
    "--detectors",
    "msp,mahalanobis,heat_el",
    "--option",
    "heat_el.epochs=1",
    "--option",
    "heat_el.hidden=16",
    "--ood",
    "noise",
]


def cli(args, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def files_of(folder: Path) -> dict[Path, bytes]:
    return {
        p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def write_query_gallery(root: Path, classes: int = 6, per: int = 6) -> Path:
    """An image folder with train/, query/ and gallery/ split folders (In-Shop's protocol in miniature)."""
    rng = np.random.default_rng(3)
    for split, offset in (("train", 0), ("query", 1), ("gallery", 2)):
        for c in range(classes):
            base = np.array([37 * c % 256, 91 * c % 256, 53 * c % 256])
            for k in range(per):
                color = tuple(int(v) for v in np.clip(base + rng.integers(-20, 20, 3) + offset, 0, 255))
                png(root / split / f"class{c}" / f"{k}.png", color, 16)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished run of each kind, trained once for the module (tests copy them before changing them)."""
    base = tmp_path_factory.mktemp("runs")
    fashion = write_fashion(base / "fashion", 400, 100) if (base / "fashion").mkdir() is None else None
    images = write_query_gallery(base / "qg")
    small = [
        "--set",
        "train.epochs=1",
        "--set",
        "model.dim=8",
        "--set",
        "data.batch_size=40",
        "--set",
        "data.m=4",
        "--json",
    ]
    kinds = {
        "carved": ["train", "--data-dir", fashion, *small],
        "no_valid": ["train", "--data-dir", fashion, "--set", "data.valid=none", *small],
        "limit": [
            "train",
            "--data-dir",
            fashion,
            "--set",
            "data.limit=60",
            "--set",
            "data.valid_fraction=0.34",
            *small,
        ],
        "query_gallery": [
            "train",
            "--set",
            "data.name=image-folder",
            "--set",
            f"data.root={images}",
            "--set",
            "data.test_split=query",
            "--set",
            "data.gallery_split=gallery",
            "--set",
            "model.in_channels=3",
            "--set",
            "data.image_size=16",
            "--set",
            "data.valid=none",
            "--set",
            "data.batch_size=12",
            "--set",
            "data.m=2",
            "--set",
            "train.epochs=1",
            "--set",
            "model.dim=8",
            "--json",
        ],
    }
    sys.path.insert(0, str(Path(__file__).parent / "recsys"))
    from test_runner import synthetic

    rec_data = synthetic(base / "rec") if (base / "rec").mkdir() is None else None
    rec = ["recsys", "train", rec_data, "--epochs", "2", "--dim", "8", "--k", "5", "--json"]
    kinds["recsys"] = rec
    kinds["recsys_inductive"] = [*rec, "--protocol", "inductive", "--set", "data.held_out=0.25"]
    out = {"fashion": fashion, "images": images, "recsys_data": rec_data}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RANKOPT_CACHE", str(base / "cache"))  # PPR caches stay in the test's folder
        for name, args in kinds.items():
            run = base / name
            assert main([str(a) for a in [*args, "--run-dir", run]]) == 0, name
            out[name] = run
    return out


@pytest.fixture()
def copy_of(runs, tmp_path):
    def make(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(runs[name], target)
        return target

    return make


# --- every reader on every kind of run -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["carved", "no_valid", "limit", "query_gallery"])
def test_embed_then_evaluate_equals_the_runs_test_metrics(runs, kind, tmp_path, capsys):
    run = runs[kind]
    metrics = json.loads((run / "metrics.json").read_text())
    rc, _, err = cli(["embed", run, "-o", tmp_path / "q.npz"], capsys)
    assert rc == 0, err
    args = ["evaluate", tmp_path / "q.npz", "--metrics", "hit@1,map@r,ap", "--json"]
    if kind == "query_gallery":
        assert cli(["embed", run, "--part", "gallery", "-o", tmp_path / "g.npz"], capsys)[0] == 0
        args += ["--gallery", tmp_path / "g.npz"]
    rc, out, err = cli(args, capsys)
    assert rc == 0, err
    again = last_json(out)
    assert again["n_queries"] == metrics["test"]["n_queries"]
    for k in ("hit@1", "map@r", "ap"):
        assert again[k] == pytest.approx(metrics["test"][k], abs=1e-6), k
    if kind == "limit":
        assert metrics["test"]["n_queries"] == 60  # data.limit reached the test split, and embed honours it


@pytest.mark.parametrize("kind", ["carved", "no_valid", "limit", "query_gallery", "recsys", "recsys_inductive"])
def test_report_of_every_kind(runs, kind, tmp_path, capsys):
    rc, out, err = cli(["report", runs[kind], "-o", tmp_path / "r.html", "--json"], capsys)
    assert rc == 0, err
    summary = last_json(out)
    recorded = json.loads((runs[kind] / "metrics.json").read_text())["test"]
    name = "map@r" if not kind.startswith("recsys") else "ndcg@5"
    assert summary["metrics"][name]["value"] == pytest.approx(recorded[name])
    assert (tmp_path / "r.html").stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["no_valid", "limit", "query_gallery"])
def test_ood_of_image_runs(runs, kind, copy_of, capsys):
    run = copy_of(kind)  # ood writes into the folder
    rc, out, err = cli(["ood", run, *OOD_FAST, "--json"], capsys)
    assert rc == 0, err
    result = last_json(out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert result["n_id_test"] == metrics["test"]["n_queries"]
    assert result["n_id_train"] == metrics["protocol"]["train"]["n_items"]
    assert set(result["detectors"]) == {"msp", "mahalanobis", "heat_el"}


@pytest.mark.parametrize("kind", ["carved", "no_valid", "query_gallery", "recsys", "recsys_inductive"])
def test_resume_of_a_finished_run_changes_nothing(runs, kind, copy_of, capsys):
    run = copy_of(kind)
    before = files_of(run)
    command = ["recsys", "train"] if kind.startswith("recsys") else ["train"]
    rc, out, err = cli([*command, "--resume", run, "--json"], capsys)
    assert rc == 0, err
    assert last_json(out)["test"] == json.loads(before[Path("metrics.json")])["test"]
    assert files_of(run) == before


@pytest.mark.parametrize("kind", ["recsys", "recsys_inductive"])
def test_recsys_evaluate_equals_the_runs_test(runs, kind, capsys):
    rc, out, err = cli(["recsys", "evaluate", runs[kind], "--json"], capsys)
    assert rc == 0, err
    recorded = json.loads((runs[kind] / "metrics.json").read_text())["test"]
    assert last_json(out) == pytest.approx(recorded)


def test_the_selected_checkpoint_is_the_one_metrics_json_names(runs):
    from rankopt.runs import RunFolder

    for kind in ("carved", "no_valid", "recsys"):  # no checkpoint of Lightning's own beside ours
        expected = ["best.ckpt", "last.ckpt"] if kind != "no_valid" else ["last.ckpt"]
        assert sorted(p.name for p in runs[kind].rglob("*.ckpt")) == expected, kind

    assert RunFolder(runs["no_valid"]).selected_checkpoint().name == "last.ckpt"
    assert not (runs["no_valid"] / "checkpoints" / "best.ckpt").exists()
    assert RunFolder(runs["carved"]).selected_checkpoint().name == "best.ckpt"


# --- a folder from before the manifest ---------------------------------------------------------------
@pytest.fixture()
def legacy(tmp_path, monkeypatch):
    """The run folders an earlier release wrote (tests/fixtures/README.md), with their data written where
    their configs name it (relative to the working folder)."""
    sys.path.insert(0, str(Path(__file__).parent / "recsys"))
    from test_runner import synthetic

    fixtures = Path(__file__).parent / "fixtures"
    shutil.copytree(fixtures / "legacy-run", tmp_path / "run")
    shutil.copytree(fixtures / "legacy-recsys-run", tmp_path / "recrun")
    (tmp_path / "data").mkdir()
    write_fashion(tmp_path / "data", 400, 100)
    (tmp_path / "recdata").mkdir()
    synthetic(tmp_path / "recdata")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_folder_from_an_earlier_release_still_opens(legacy, capsys):
    recorded = json.loads((legacy / "run" / "metrics.json").read_text())
    assert recorded["test"]["n_queries"] == 80  # data.limit=80 of a 100-image test split
    rc, out, err = cli(["report", "run", "-o", "r.html", "--json"], capsys)
    assert rc == 0, err  # the earlier report re-derived 100 queries and failed
    assert last_json(out)["metrics"]["map@r"]["value"] == pytest.approx(recorded["test"]["map@r"])
    assert cli(["embed", "run", "-o", "q.npz"], capsys)[0] == 0
    data = np.load("q.npz")
    again = evaluate(data["embeddings"], data["labels"], metrics=["map@r"])
    # re-embedded on another CPU, the features differ in their last bits and nearly tied neighbours can
    # swap (seen: 2.4e-4 on a new machine); a wrong model or wrong items would be off by far more
    assert again["map@r"] == pytest.approx(recorded["test"]["map@r"], abs=2e-3)
    rc, out, err = cli(["ood", "run", *OOD_FAST, "--json"], capsys)
    assert rc == 0, err
    assert cli(["train", "--resume", "run", "--json"], capsys)[0] == 0
    rc, out, err = cli(["recsys", "evaluate", "recrun", "--json"], capsys)
    assert rc == 0, err
    assert last_json(out) == pytest.approx(json.loads((legacy / "recrun" / "metrics.json").read_text())["test"])
    assert cli(["report", "recrun", "-o", "rr.html"], capsys)[0] == 0


def test_an_unfinished_legacy_run_resumes_with_its_selection_state(legacy, capsys):
    """An earlier release's last.ckpt carries Lightning's ModelCheckpoint state: the best score so far
    must come back from it, or the next epoch would be selected whatever its value."""
    import torch

    from rankopt.train.engine import BestCheckpoint

    ckpt = torch.load(legacy / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    best = BestCheckpoint(legacy / "x.ckpt", "valid/map@r")
    best.on_load_checkpoint(None, None, ckpt)
    history = {h["epoch"]: h["valid/map@r"] for h in ckpt["rankopt_history"]}
    assert best.best_value == pytest.approx(max(history.values()))
    assert best.best_epoch == min(e for e, v in history.items() if v == max(history.values()))


# --- integrity -------------------------------------------------------------------------------------
def test_a_copied_and_a_moved_folder_use_their_own_files(runs, tmp_path, capsys):
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(runs["carved"], tmp_path / "copy")
    moved.parent.mkdir()
    os.rename(tmp_path / "copy", moved)  # a move: the original path no longer exists
    metrics = json.loads((moved / "metrics.json").read_text())
    rc, _, err = cli(["embed", moved, "-o", tmp_path / "e.npz"], capsys)
    assert rc == 0, err
    data = np.load(tmp_path / "e.npz")
    assert evaluate(data["embeddings"], data["labels"], metrics=["map@r"])["map@r"] == pytest.approx(
        metrics["test"]["map@r"], abs=1e-6
    )
    # a moved run trained further: its own best.ckpt (not the original's) is selected and tested
    original_best = (runs["carved"] / "checkpoints" / "best.ckpt").read_bytes()
    (runs["carved"] / "checkpoints" / "best.ckpt").rename(runs["carved"] / "checkpoints" / "best.ckpt.away")
    try:
        rc, out, err = cli(["train", "--resume", moved, "--set", "train.epochs=2", "--json"], capsys)
    finally:
        (runs["carved"] / "checkpoints" / "best.ckpt.away").rename(runs["carved"] / "checkpoints" / "best.ckpt")
    assert rc == 0, err
    result = last_json(out)
    assert result["selection"]["epochs_run"] == 2 and result["run_dir"] == str(moved)
    assert (runs["carved"] / "checkpoints" / "best.ckpt").read_bytes() == original_best
    values = [h["valid/map@r"] for h in result["history"]]
    assert result["selection"]["epoch"] == 1 + values.index(max(values))  # selection state came back with the move
    assert cli(["report", moved, "-o", tmp_path / "r.html"], capsys)[0] == 0


def test_a_resume_that_changes_what_was_trained_is_refused_and_writes_nothing(runs, copy_of, capsys):
    run = copy_of("carved")
    before = files_of(run)
    for change in (["--set", "loss.name=smoothap"], ["--set", "model.dim=32"]):
        rc, _, err = cli(["train", "--resume", run, *change], capsys)
        assert rc == 2 and "--resume cannot change" in err and change[1].split("=")[0] in err, err
        assert files_of(run) == before
        assert not (run / "logs" / "version_1").exists()
    rc, _, err = cli(["train", "--resume", run, "--run-dir", run.parent / "other"], capsys)
    assert rc == 2 and "--run-dir has no place" in err
    rec = copy_of("recsys")
    rc, _, err = cli(["recsys", "train", "--resume", rec, "--loss", "bpr"], capsys)
    assert rc == 2 and "loss.name" in err


def test_a_second_writer_is_refused_and_a_killed_writer_leaves_no_lock(runs, copy_of):
    """Real processes: while one process holds the folder's lock, `rankopt train --resume` is refused
    with one line; once the holder is SIGKILLed the lock is gone and the resume runs."""
    import signal

    run = copy_of("carved")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rankopt.runs import RunFolder\n"
            "with RunFolder(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(600)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        rankopt = str(Path(sys.executable).parent / "rankopt")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        second = subprocess.run(
            [rankopt, "train", "--resume", str(run), "--set", "train.epochs=2"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is being written by pid {holder.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    third = subprocess.run(
        [rankopt, "train", "--resume", str(run), "--set", "train.epochs=2", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert third.returncode == 0, third.stderr[-2000:]
    assert last_json(third.stdout)["selection"]["epochs_run"] == 2


def test_changed_data_is_recognised(runs, copy_of, tmp_path, capsys):
    # recommendation: the interaction files changed since training → re-evaluation refused
    data = tmp_path / "rec"
    shutil.copytree(runs["recsys_data"], data)
    run = copy_of("recsys")
    config = (run / "config.yaml").read_text().replace(str(runs["recsys_data"]), str(data))
    (run / "config.yaml").write_text(config)
    assert cli(["recsys", "evaluate", run], capsys)[0] == 0  # the same files, elsewhere: fine
    lines = (data / "test.txt").read_text().splitlines()
    (data / "test.txt").write_text("\n".join(lines[:-5]) + "\n")
    rc, _, err = cli(["recsys", "evaluate", run], capsys)
    assert rc == 2 and "changed since the run was trained" in err
    # images: a relabelled image folder → embed refused
    images = tmp_path / "qg"
    shutil.copytree(runs["images"], images)
    qg = copy_of("query_gallery")
    (qg / "config.yaml").write_text((qg / "config.yaml").read_text().replace(str(runs["images"]), str(images)))
    assert cli(["embed", qg, "-o", tmp_path / "ok.npz"], capsys)[0] == 0
    os.rename(images / "query" / "class0", images / "query" / "class9")
    rc, _, err = cli(["embed", qg, "-o", tmp_path / "e.npz"], capsys)
    assert rc == 2 and "changed since the run was trained" in err


def test_comparisons_refuse_runs_on_different_data(runs, copy_of, tmp_path, capsys):
    rc, _, err = cli(["report", runs["carved"], runs["no_valid"], "-o", tmp_path / "c.html"], capsys)
    assert rc == 0, err  # same test images, different selection protocols: comparable
    rc, _, err = cli(["report", runs["carved"], runs["limit"], "-o", tmp_path / "c.html"], capsys)
    assert rc == 2 and ("other queries" in err or "different data" in err), err
    sys.path.insert(0, str(Path(__file__).parent / "recsys"))
    from test_runner import synthetic

    other = synthetic(tmp_path / "other", n_users=80, n_items=40) if (tmp_path / "other").mkdir() is None else None
    lines = (other / "test.txt").read_text().splitlines()
    (other / "test.txt").write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # same users, other order
    assert (
        main(
            [
                "recsys",
                "train",
                str(other),
                "--epochs",
                "1",
                "--dim",
                "8",
                "--k",
                "5",
                "--run-dir",
                str(tmp_path / "rec2"),
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    rc, _, err = cli(["report", runs["recsys"], tmp_path / "rec2", "-o", tmp_path / "c.html"], capsys)
    assert rc == 2 and "different data" in err, err


# --- the error boundary ------------------------------------------------------------------------------
def test_a_bug_prints_its_traceback_and_exits_1(monkeypatch, capsys, tmp_path):
    """A TypeError raised inside a command is not the user's fault: traceback, a request to report it,
    exit code 1 (bad input keeps its one line and exit code 2: tests/test_cli_errors.py)."""
    np.savez(tmp_path / "e.npz", embeddings=np.eye(4, dtype=np.float32), labels=np.arange(4) % 2)

    def bug(*args, **kwargs):
        raise TypeError("a deliberate bug")

    monkeypatch.setattr("rankopt.cli.evaluate.evaluate_per_query", bug)
    rc, out, err = cli(["evaluate", tmp_path / "e.npz"], capsys)
    assert rc == 1 and out == ""
    assert "Traceback (most recent call last)" in err and "TypeError: a deliberate bug" in err
    assert "this is a bug in rankopt" in err
