"""The training engine on a tiny synthetic image set: it learns, and a resumed run equals an uninterrupted one."""

import torch
from torch.utils.data import Dataset

from rankopt.losses import ROADMAP, HAPPIER
from rankopt.metrics import evaluate
from rankopt.models import create_model
from rankopt.train import OptimConfig, RetrievalData, RetrievalModule, fit


class Patterns(Dataset):
    """8 classes of 1×16×16 images: a class-specific pattern plus noise; 2 levels (class, class // 4)."""

    def __init__(self, n=128, seed=0):
        g = torch.Generator().manual_seed(seed)
        protos = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(99))
        fine = torch.arange(n) % 8
        self.images = protos[fine] + 1.5 * torch.randn(n, 1, 16, 16, generator=g)
        self.labels = torch.stack([fine, fine // 4], dim=1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def make(seed=0, loss=None):
    torch.manual_seed(seed)
    model = create_model("small_cnn", dim=16, in_channels=1)
    return RetrievalModule(model, loss or ROADMAP(), OptimConfig(lr_backbone=1e-3, lr_head=1e-3), seed=seed,
                           eval_metrics=("hit@1", "map@r"))


def embed(module, data):
    module.eval()
    with torch.no_grad():
        return module(data.images)


def test_two_epochs_improve_map_at_r(tmp_path):
    train, test = Patterns(128, seed=1), Patterns(64, seed=2)
    module = make()
    before = evaluate(embed(module, test), test.labels, metrics=["map@r"])["map@r"]
    metrics = fit(module, RetrievalData(train, test, batch_size=32, m=4), tmp_path, epochs=2, progress=False)
    assert metrics["map@r"] > before + 0.05
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "logs" / "version_0" / "metrics.csv").is_file()
    assert not list(tmp_path.rglob("*.tmp-*"))  # atomic writes leave nothing behind
    after = evaluate(embed(module, test), test.labels, metrics=["map@r"])["map@r"]
    assert after == metrics["map@r"]  # the reported metric is the model's


def test_resume_equals_uninterrupted(tmp_path):
    train, test = Patterns(96, seed=3), Patterns(32, seed=4)
    straight = make(seed=5)
    fit(straight, RetrievalData(train, test, 32, seed=5), tmp_path / "a", epochs=3, progress=False)
    first = make(seed=5)
    fit(first, RetrievalData(train, test, 32, seed=5), tmp_path / "b", epochs=1, progress=False)
    resumed = make(seed=6)  # different init: everything must come from the checkpoint
    fit(resumed, RetrievalData(train, test, 32, seed=5), tmp_path / "b", epochs=3,
        resume=tmp_path / "b" / "checkpoints" / "last.ckpt", progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_hierarchical_loss_with_proxies_trains(tmp_path):
    train, test = Patterns(64, seed=7), Patterns(32, seed=8)
    module = make(loss=HAPPIER(num_classes=8, dim=16))
    fit(module, RetrievalData(train, test, 32, sampler="hierarchical"), tmp_path, epochs=1, progress=False)
    assert module.trainer.optimizers[0].param_groups[-1]["name"] == "proxies"


def test_sparse_evaluation_still_checkpoints_every_epoch(tmp_path):
    train, test = Patterns(64, seed=9), Patterns(32, seed=10)
    module = make()
    fit(module, RetrievalData(train, test, 32), tmp_path, epochs=3, eval_every=2, progress=False)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3 * 2 and (tmp_path / "checkpoints" / "best.ckpt").is_file()  # all 3 epochs of 2 steps
