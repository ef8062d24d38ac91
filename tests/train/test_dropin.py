"""rankopt inside code users already have: RetrievalMetrics in their own LightningModule (a real
2-process DDP validation, gloo), and RetrievalModule training their own CNN."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from rankopt.losses import ROADMAP
from rankopt.metrics import RetrievalMetrics, evaluate
from rankopt.train import OptimConfig, RetrievalData, RetrievalModule, fit

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import Patterns, embed

USER_SCRIPT = textwrap.dedent('''
    """A user's LightningModule logging rankopt's mAP@R: the validation set has an odd size, so the
    DistributedSampler of 2 processes pads it with a repeated item. Two metric objects in one launch:
    one told each item's index, one not."""
    import json, sys
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, Dataset
    from rankopt.metrics import RetrievalMetrics

    N, OUT = 2001, sys.argv[1]

    class Items(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(N, 12, generator=g)
            self.y = torch.randint(0, 40, (N,), generator=g)
        def __len__(self):
            return N
        def __getitem__(self, i):
            return self.x[i], self.y[i], i

    class UserModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.net = torch.nn.Linear(12, 8)
            self.indexed = RetrievalMetrics(["map@r", "hit@1"], prefix="index/")
            self.unindexed = RetrievalMetrics(["map@r", "hit@1"], prefix="none/")
        def validation_step(self, batch, batch_idx):
            x, y, i = batch
            e = self.net(x)
            self.indexed.update(e, y, i)
            self.unindexed.update(e, y, None)
        def on_validation_epoch_end(self):
            for m in (self.indexed, self.unindexed):
                self.log_dict(m.compute())
                m.reset()

    module = UserModule()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    out = trainer.validate(module, DataLoader(Items(), batch_size=100))
    if trainer.is_global_zero:
        with torch.no_grad():
            emb = module.net(Items().x)
        torch.save({"metrics": out[0], "embeddings": emb, "labels": Items().y}, OUT)
''')


@pytest.mark.processes
def test_retrieval_metrics_under_two_process_ddp_counts_each_item_once(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    out = tmp_path / "out.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    saved = torch.load(out)
    want = evaluate(saved["embeddings"], saved["labels"], metrics=["map@r", "hit@1"])
    got = saved["metrics"]
    assert got["index/map@r"] == pytest.approx(want["map@r"], abs=1e-6)
    assert got["index/hit@1"] == pytest.approx(want["hit@1"], abs=1e-6)
    # without indexes the padded duplicate is counted (and found as its own copy): the warning says so
    assert "counted twice" in run.stderr
    assert got["none/hit@1"] != pytest.approx(want["hit@1"], abs=1e-6)


def test_retrieval_metrics_in_one_process_equals_evaluate():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, 6, generator=g), torch.randint(0, 20, (300, 2), generator=g)
    metric = RetrievalMetrics(["map@r", "ap/level1", "hap"])
    for i in range(0, 300, 64):
        metric.update(x[i : i + 64], y[i : i + 64])
    want = evaluate(x, y, metrics=["map@r", "ap/level1", "hap"])
    got = metric.compute()
    for n in ("map@r", "ap/level1", "hap"):
        assert float(got[n]) == pytest.approx(want[n], abs=1e-6)
    metric.reset()
    with pytest.raises(ValueError, match="no embeddings"):
        metric.compute()
    metric.update(x[:10], y[:10], torch.arange(10))
    with pytest.raises(ValueError, match="every batch or with none"):
        metric.update(x[10:20], y[10:20])
    with pytest.raises(ValueError, match="unknown metric"):
        RetrievalMetrics(["precision_at_2"])


def test_duplicated_indexes_are_dropped_in_one_process_too():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, 5, (50,), generator=g)
    metric = RetrievalMetrics(["map@r", "hit@1"])
    metric.update(x[25:], y[25:], torch.arange(25, 50))
    metric.update(x[:25], y[:25], torch.arange(25))
    metric.update(x[:3], y[:3], torch.arange(3))  # a padded repeat
    want = evaluate(x, y, metrics=["map@r", "hit@1"])
    got = metric.compute()
    assert float(got["map@r"]) == pytest.approx(want["map@r"], abs=1e-6)
    assert float(got["hit@1"]) == pytest.approx(want["hit@1"], abs=1e-6)


class UserCNN(nn.Module):
    """A user's own network (not an EmbeddingModel: no .dim, no backbone/head groups), raw embeddings."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 16)
        )

    def forward(self, x):
        return self.net(x)


def test_retrieval_module_trains_a_users_cnn(tmp_path):
    torch.manual_seed(0)
    train, valid, test = Patterns(128, seed=1), Patterns(64, seed=11), Patterns(64, seed=2)
    module = RetrievalModule(UserCNN(), ROADMAP(), OptimConfig(lr_head=3e-3), eval_metrics=("hit@1", "map@r"))
    before = evaluate(embed(module.model, test), test.labels, metrics=["map@r"])["map@r"]
    result = fit(module, RetrievalData(train, valid, test, batch_size=32, m=4), tmp_path, epochs=3, progress=False)
    assert result["test"]["map@r"] > before + 0.05
    assert "valid/map@r" in result["history"][-1]
    [group] = module.configure_optimizers().param_groups  # one group: not an EmbeddingModel
    assert group["name"] == "model" and group["lr"] == 3e-3
    with pytest.raises(ValueError, match="is not a rankopt EmbeddingModel"):
        RetrievalModule(UserCNN(), ROADMAP(), OptimConfig(warmup_frozen_epochs=1))
    with pytest.raises(TypeError, match="nn.Module"):
        RetrievalModule(lambda x: x, ROADMAP())
