"""The one error boundary: every subcommand answers bad input with one line on stderr and exit code 2,
never a traceback."""

import numpy as np
import pytest
import torch

from rankopt.cli import main


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    ok = tmp_path / "ok.npz"
    np.savez(ok, embeddings=rng.normal(size=(20, 4)).astype(np.float32), labels=np.arange(20) % 4)
    nan = tmp_path / "nan.npz"
    e = rng.normal(size=(20, 4))
    e[3, 1] = np.nan
    np.savez(nan, embeddings=e, labels=np.arange(20) % 4)
    huge = tmp_path / "huge.npz"
    np.savez(huge, embeddings=(rng.normal(size=(20, 4)) * 1e20).astype(np.float32), labels=np.arange(20) % 4)
    strings = tmp_path / "strings.npz"
    np.savez(strings, embeddings=rng.normal(size=(20, 4)), labels=np.array(["a", "b"] * 10))
    text = tmp_path / "text.npz"
    text.write_text("not an npz\n")
    empty_ckpt = tmp_path / "run" / "checkpoints" / "empty.ckpt"
    empty_ckpt.parent.mkdir(parents=True)
    empty_ckpt.write_bytes(b"")
    from miniatures import png

    for c in ("a", "b", "c", "d"):
        for i in range(3):
            png(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "c" / "2.png").write_bytes(b"")
    lgcn = tmp_path / "lgcn"  # LightGCN split files: no ratings
    lgcn.mkdir()
    (lgcn / "train.txt").write_text("".join(f"{u} {u % 5} {(u + 1) % 5} {(u + 2) % 5}\n" for u in range(10)))
    (lgcn / "test.txt").write_text("".join(f"{u} {(u + 3) % 5}\n" for u in range(10)))
    return tmp_path


CASES = [
    ("evaluate NaN", ["evaluate", "{d}/nan.npz"], "NaN"),
    ("evaluate overflow", ["evaluate", "{d}/huge.npz", "--similarity", "dot"], "overflow"),
    ("evaluate string labels", ["evaluate", "{d}/strings.npz"], "labels holds strings"),
    ("evaluate text as npz", ["evaluate", "{d}/text.npz"], "not a readable .npz"),
    ("evaluate missing", ["evaluate", "{d}/none.npz"], "does not exist"),
    ("evaluate unknown metric", ["evaluate", "{d}/ok.npz", "--metrics", "mapr"], "mapr"),
    ("evaluate unwritable per-query", ["evaluate", "{d}/ok.npz", "--per-query", "{d}/ok.npz/q.csv"], "cannot write"),
    ("evaluate no cuda", ["evaluate", "{d}/ok.npz", "--device", "cuda:7"], ""),
    ("train unknown recipe", ["train", "fashion-mnst"], "did you mean"),
    ("train bad override", ["train", "--set", "train.epochs=-1"], "at least 1"),
    ("train missing data", ["train", "--data-dir", "{d}/nothere", "--run-dir", "{d}/r1"], "Fashion-MNIST"),
    ("train unwritable run dir", ["train", "--run-dir", "{d}/ok.npz/run"], "cannot write"),
    (
        "train empty image",
        [
            "train",
            "--set",
            "data.name=image-folder",
            "--set",
            "data.root={d}/imgs",
            "--set",
            "model.in_channels=3",
            "--run-dir",
            "{d}/r3",
        ],
        "missing or empty, the first",
    ),
    ("train no gpu", ["train", "--set", "train.accelerator=gpu", "--run-dir", "{d}/r4"], "no CUDA device"),
    (
        "train too many devices",
        [
            "train",
            "--set",
            "train.accelerator=cpu",
            "--set",
            "train.devices=[0, 9]",
            "--set",
            "train.epochs=1",
            "--set",
            "data.limit=64",
            "--run-dir",
            "{d}/r5",
        ],
        "",
    ),
    ("train resume nothing", ["train", "--resume", "{d}/nothere"], "config.yaml"),
    (
        "embed empty checkpoint",
        ["embed", "{d}/run/checkpoints/empty.ckpt", "-o", "{d}/e.npz"],
        "not a rankopt run folder",
    ),
    ("embed missing checkpoint", ["embed", "{d}/none.ckpt", "-o", "{d}/e.npz"], "does not exist"),
    ("embed unwritable output", ["embed", "{d}/none.ckpt", "-o", "{d}/ok.npz/e.npz"], "cannot write"),
    ("recsys missing data", ["recsys", "train", "{d}/nothere"], "not a folder"),
    ("recsys recipe without data", ["recsys", "train", "ml-100k-lightgcn-bpr"], "no data folder"),
    ("recsys unknown recipe", ["recsys", "train", "ml-100k-lightgcn-bprr"], "did you mean"),
    ("recsys bad tau", ["recsys", "train", "{d}/lgcn", "--loss", "softmax", "--set", "loss.tau=0"], "loss.tau=0"),
    ("recsys negative epochs", ["recsys", "train", "{d}/lgcn", "--epochs", "-1"], "train.epochs=-1"),
    ("recsys unknown key", ["recsys", "train", "{d}/lgcn", "--set", "loss.tua=1"], "did you mean loss.tau"),
    ("recsys bool as int", ["recsys", "train", "{d}/lgcn", "--set", "train.epochs=true"], "expected int"),
    (
        "recsys image metric",
        ["recsys", "train", "{d}/lgcn", "--set", "train.metrics=[ap]", "--set", "train.monitor=ap"],
        "not a recommendation metric",
    ),
    (
        "recsys monitor not measured",
        ["recsys", "train", "{d}/lgcn", "--k", "10", "--set", "train.monitor=ndcg@20"],
        "not among",
    ),
    ("recsys bad cut-off", ["recsys", "train", "{d}/lgcn", "--k", "0"], "positive cut-offs"),
    ("recsys ambiguous r@k", ["recsys", "train", "{d}/lgcn", "--set", "train.metrics=[r@20,ndcg@20]"], "ambiguous"),
    (
        "recsys threshold without ratings",
        ["recsys", "train", "{d}/lgcn", "--rating-threshold", "4", "--run-dir", "{d}/r2"],
        "no ratings",
    ),
    ("recsys ppr with bpr", ["recsys", "train", "{d}/lgcn", "--loss", "bpr", "--negatives", "ppr"], "not bpr"),
    ("recsys ccl on dot", ["recsys", "train", "{d}/lgcn", "--loss", "ccl", "--set", "loss.score=dot"], "cosine scores"),
    ("recsys bad n_neg", ["recsys", "train", "{d}/lgcn", "--set", "loss.n_neg=every"], "loss.n_neg='every'"),
    (
        "recsys all with ppr",
        ["recsys", "train", "{d}/lgcn", "--negatives", "ppr", "--set", "loss.n_neg=all"],
        "whole catalogue",
    ),
    (
        "recsys split on split files",
        ["recsys", "train", "{d}/lgcn", "--set", "data.split=random", "--run-dir", "{d}/r3"],
        "own split files",
    ),
    ("recsys unknown split", ["recsys", "train", "{d}/lgcn", "--set", "data.split=time"], "data.split='time'"),
    (
        "recsys unset tau on supndcg defaults",
        ["recsys", "train", "{d}/lgcn", "--loss", "softmax", "--set", "loss.score=sine"],
        "loss.score='sine'",
    ),
    ("recsys no cuda", ["recsys", "train", "{d}/lgcn", "--device", "cuda:7"], "cuda:7"),
    ("recsys unwritable run dir", ["recsys", "train", "{d}/lgcn", "--run-dir", "{d}/ok.npz/run"], "cannot write"),
    ("recsys resume nothing", ["recsys", "train", "--resume", "{d}/nothere"], "config.yaml"),
    ("recsys evaluate not a run", ["recsys", "evaluate", "{d}"], "config.yaml"),
]


@pytest.mark.parametrize("name,argv,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(files, capsys, name, argv, match):
    if name == "train no gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if name.endswith("no cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    rc = main([a.format(d=files) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("rankopt 0.")
