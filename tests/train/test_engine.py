"""The training engine on a tiny synthetic image set: it learns, selects on validation, tests the
selected weights once, and a resumed run equals an uninterrupted one."""

import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from miniatures import untimed
from rankopt.losses import HAPPIER, ROADMAP
from rankopt.metrics import evaluate
from rankopt.models import create_model
from rankopt.train import OptimConfig, RetrievalData, RetrievalModule, fit
from rankopt.train.module import RunModule


class Patterns(Dataset):
    """8 classes of 1×16×16 images: a class-specific pattern plus noise; 2 levels (class, class // 4).
    ``reads`` counts the items read, to see which split an evaluation touched."""

    def __init__(self, n=128, seed=0):
        g = torch.Generator().manual_seed(seed)
        protos = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(99))
        fine = torch.arange(n) % 8
        self.images = protos[fine] + 1.5 * torch.randn(n, 1, 16, 16, generator=g)
        self.labels = torch.stack([fine, fine // 4], dim=1)
        self.reads = 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i], self.labels[i], i


def make(seed=0, loss=None):
    torch.manual_seed(seed)
    model = create_model("small_cnn", dim=16, in_channels=1)
    return RetrievalModule(
        model,
        loss or ROADMAP(),
        OptimConfig(lr_backbone=1e-3, lr_head=1e-3),
        seed=seed,
        eval_metrics=("hit@1", "map@r"),
    )


def embed(model, data):
    model.eval()
    with torch.no_grad():
        return model(data.images)


def weights_of(checkpoint):
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    model = create_model("small_cnn", dim=16, in_channels=1)
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    return model


def test_two_epochs_improve_map_at_r(tmp_path):
    train, valid, test = Patterns(128, seed=1), Patterns(64, seed=11), Patterns(64, seed=2)
    module = make()
    before = evaluate(embed(module.model, test), test.labels, metrics=["map@r"])["map@r"]
    result = fit(module, RetrievalData(train, valid, test, batch_size=32, m=4), tmp_path, epochs=2, progress=False)
    assert result["test"]["map@r"] > before + 0.05
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "logs" / "version_0" / "metrics.csv").is_file()
    assert not list(tmp_path.rglob("*.tmp-*"))  # atomic writes leave nothing behind
    assert [h["epoch"] for h in result["history"]] == [1, 2]  # epochs counted from 1


def test_selection_on_valid_and_test_of_the_selected_weights_once(tmp_path):
    """eval_every=2 over 3 epochs: epochs 2 and 3 are validated; the test metrics are those of the
    weights of the best validation epoch, and the test split is read exactly once, after training."""
    train, valid, test = Patterns(64, seed=9), Patterns(32, seed=12), Patterns(32, seed=10)
    module = make()
    result = fit(module, RetrievalData(train, valid, test, 32), tmp_path, epochs=3, eval_every=2, progress=False)
    assert test.reads == len(test)
    assert valid.reads == 2 * len(valid)
    validated = [h for h in result["history"] if "valid/map@r" in h]
    assert [h["epoch"] for h in validated] == [2, 3]
    best = max(validated, key=lambda h: (h["valid/map@r"], -h["epoch"]))
    sel = result["selection"]
    assert sel == {
        "split": "valid",
        "metric": "map@r",
        "value": best["valid/map@r"],
        "epoch": best["epoch"],
        "epochs_run": 3,
        "checkpoint": "checkpoints/best.ckpt",
    }
    selected = weights_of(tmp_path / "checkpoints" / "best.ckpt")
    expected = evaluate(embed(selected, test), test.labels, metrics=["hit@1", "map@r"])
    assert result["test"]["map@r"] == expected["map@r"] and result["test"]["n_queries"] == len(test)
    assert result["valid"]["map@r"] == best["valid/map@r"]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3 * 2  # last.ckpt holds all 3 epochs of 2 steps


def test_without_validation_the_last_epoch_is_selected(tmp_path):
    train, test = Patterns(64, seed=9), Patterns(32, seed=10)
    result = fit(make(), RetrievalData(train, None, test, 32), tmp_path, epochs=2, progress=False)
    assert result["selection"] == {
        "split": None,
        "metric": "map@r",
        "value": None,
        "epoch": 2,
        "epochs_run": 2,
        "checkpoint": "checkpoints/last.ckpt",
    }
    last = weights_of(tmp_path / "checkpoints" / "last.ckpt")
    assert result["test"]["map@r"] == evaluate(embed(last, test), test.labels, metrics=["map@r"])["map@r"]
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_resume_equals_uninterrupted(tmp_path):
    train, valid, test = Patterns(96, seed=3), Patterns(32, seed=13), Patterns(32, seed=4)
    straight = make(seed=5)
    a = fit(straight, RetrievalData(train, valid, test, 32, seed=5), tmp_path / "a", epochs=3, progress=False)
    first = make(seed=5)
    fit(first, RetrievalData(train, valid, test, 32, seed=5), tmp_path / "b", epochs=1, progress=False)
    resumed = make(seed=6)  # different init: everything must come from the checkpoint
    b = fit(
        resumed,
        RetrievalData(train, valid, test, 32, seed=5),
        tmp_path / "b",
        epochs=3,
        resume=tmp_path / "b" / "checkpoints" / "last.ckpt",
        progress=False,
    )
    for key in ("test", "selection", "valid", "history"):
        assert untimed(a[key]) == untimed(b[key]), key  # the history of the first part comes back from the checkpoint
    # checkpoints against checkpoints: the module after fit holds the *selected* weights, and which
    # epoch is selected can hinge on a validation tie that another CPU breaks differently
    for ckpt in ("last.ckpt", "best.ckpt"):
        want = torch.load(tmp_path / "a" / "checkpoints" / ckpt, weights_only=False)["state_dict"]
        got = torch.load(tmp_path / "b" / "checkpoints" / ckpt, weights_only=False)["state_dict"]
        assert want.keys() == got.keys(), ckpt
        for name, value in want.items():
            assert torch.equal(value, got[name]), (ckpt, name)
    # the resumed module was tested with the selected weights, as the uninterrupted one
    selected = torch.load(tmp_path / "b" / b["selection"]["checkpoint"], weights_only=False)["state_dict"]
    for name, value in selected.items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_hierarchical_loss_with_proxies_trains(tmp_path):
    train, test = Patterns(64, seed=7), Patterns(32, seed=8)
    module = make(loss=HAPPIER(num_classes=8, dim=16))
    fit(module, RetrievalData(train, test, None, 32, sampler="hierarchical"), tmp_path, epochs=1, progress=False)
    assert module.trainer.optimizers[0].param_groups[-1]["name"] == "proxies"


class Scripted(RunModule):
    """A module whose validation values are given in advance (one per epoch): what early stopping and
    the time limit see, without any learning in the way."""

    def __init__(self, values, seconds_per_step: float = 0.0):
        super().__init__(monitor="score")
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.values, self.seconds_per_step = values, seconds_per_step

    def training_step(self, batch, batch_idx):
        time.sleep(self.seconds_per_step)
        loss = (self.w - 1).pow(2).sum()
        self.record_loss(loss)
        return loss

    def validation_step(self, batch, batch_idx):
        pass

    def test_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        value = float(self.values[self.current_epoch])
        self._entry()["valid/score"] = value
        self.log("valid/score", value)

    def on_test_epoch_end(self):
        self.test_metrics = {"w": float(self.w)}

    def configure_optimizers(self):
        return torch.optim.SGD([self.w], lr=0.1)


class TwoSteps(pl.LightningDataModule):
    selection_split = "valid"

    def train_dataloader(self):
        return DataLoader([0, 1], batch_size=1)

    def val_dataloader(self):
        return DataLoader([0], batch_size=1)

    def test_dataloader(self):
        return DataLoader([0], batch_size=1)


def test_patience_stops_after_that_many_validations_without_improvement_and_stays_stopped(tmp_path):
    values = [0.5, 0.6, 0.6, 0.55, 0.9, 0.95]  # a tie is no improvement: epochs 3 and 4 exhaust patience 2
    result = fit(Scripted(values), TwoSteps(), tmp_path, epochs=6, patience=2, progress=False)
    assert result["selection"]["epoch"] == 2 and result["selection"]["epochs_run"] == 4
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]
    again = fit(
        Scripted(values),
        TwoSteps(),
        tmp_path,
        epochs=6,
        patience=2,
        progress=False,
        resume=tmp_path / "checkpoints" / "last.ckpt",
    )
    assert again["selection"]["epochs_run"] == 4  # resumed after the stop: no epoch 5


def test_time_limit_ends_with_the_epoch_that_crosses_it_validated(tmp_path):
    """eval_every=100 would validate only the last of 50 epochs; each epoch sleeps 0.2 s against a 0.5 s
    limit: training stops after a few epochs and the stopping epoch is validated, so it can be selected."""
    values = [0.1 * e for e in range(50)]
    result = fit(
        Scripted(values, seconds_per_step=0.1),
        TwoSteps(),
        tmp_path,
        epochs=50,
        eval_every=100,
        time_limit=0.5,
        progress=False,
    )
    run = result["selection"]["epochs_run"]
    assert 3 <= run < 50
    validated = [h["epoch"] for h in result["history"] if "valid/score" in h]
    assert validated == [run] and result["selection"]["epoch"] == run
    assert all(h["seconds"] >= 0.2 for h in result["history"])


def test_best_checkpoint_and_patience_follow_the_monitors_direction(tmp_path):
    """A lower-is-better monitor (a perplexity, a distance): the smallest value is the best epoch."""
    from types import SimpleNamespace

    from rankopt.train.engine import BestCheckpoint, Patience
    from rankopt.train.module import RunModule

    class Lower(RunModule):
        lower_is_better = True

    saved = []
    for module, expected_best in ((RunModule(), 2), (Lower(), 3)):
        best = BestCheckpoint(tmp_path / "best.ckpt", "valid/x")
        patience = Patience("valid/x", patience=1)
        saved.clear()
        for epoch, value in enumerate([2.0, 3.0, 1.0], start=1):
            trainer = SimpleNamespace(
                sanity_checking=False,
                callback_metrics={"valid/x": torch.tensor(value)},
                current_epoch=epoch - 1,
                save_checkpoint=lambda path, weights_only, e=epoch: saved.append(e),
                should_stop=False,
            )
            best.on_validation_end(trainer, module)
            patience.on_validation_end(trainer, module)
        assert best.best_epoch == expected_best
        assert saved == [1, expected_best]  # best.ckpt written at epoch 1, then at the better epoch
        # higher: 3 at epoch 2 is the best, epoch 3 waits; lower: 1 at epoch 3 is the best, nothing waits
        assert patience.wait == (1 if expected_best == 2 else 0)
