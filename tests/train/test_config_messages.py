"""Small contracts of the run layer that mutation testing found untested: the words of configuration
errors, a recipe path that does not exist, and a protocol description whose validation split is
the dataset's own (not carved)."""

import pytest

from rankopt.config import load_config
from rankopt.train.config import OptimConfig
from rankopt.train.protocol import EvalSet, Splits


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"optimizer": "adagrad"}, r"optimizer='adagrad' is not one of adam, adamw, sgd"),
        ({"scheduler": "step"}, r"scheduler='step' is not one of none, multistep, cosine"),
    ],
)
def test_optim_config_names_the_bad_choice(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_a_recipe_path_that_does_not_exist_is_named(tmp_path, suffix):
    missing = tmp_path / f"mine{suffix}"
    with pytest.raises(ValueError, match=f"recipe file {missing} does not exist"):
        load_config(str(missing))


def test_describe_a_dataset_split_that_was_not_carved():
    items = list(range(5))
    splits = Splits(
        train=list(range(20)),
        valid=EvalSet("val", items),
        test=EvalSet("test", list(range(7))),
        carved={"train": "the training split less nothing"},
    )
    assert splits.describe() == {
        "train": {"n_items": 20, "carved": "the training split less nothing"},
        "valid": {"split": "val", "mode": "leave-one-out", "n_queries": 5},
        "test": {"split": "test", "mode": "leave-one-out", "n_queries": 7},
    }


def test_time_limit_error_names_its_key():
    with pytest.raises(ValueError, match="train.time_limit"):
        load_config(overrides=["train.time_limit=0"])


def test_one_process_shard_evaluation_reports_what_each_query_ranked():
    """Without a process group evaluate_shards is evaluate_per_query: a separate gallery is ranked
    whole (G items), leave-one-out ranks N − 1."""
    import torch

    from rankopt.metrics.evaluate import evaluate_per_query
    from rankopt.train.shards import evaluate_shards

    g = torch.Generator().manual_seed(0)
    q, ql = torch.randn(12, 4, generator=g), torch.randint(0, 3, (12, 1), generator=g)
    gal, gl = torch.randn(9, 4, generator=g), torch.randint(0, 3, (9, 1), generator=g)
    _, with_gallery = evaluate_shards(
        q, ql, torch.arange(12), 12, (gal, gl, torch.arange(9), 9), metrics=["ap"], per_query=True
    )
    _, alone = evaluate_shards(q, ql, torch.arange(12), 12, metrics=["ap"], per_query=True)
    assert with_gallery.n_ranked == 9 == evaluate_per_query(q, ql, gal, gl, metrics=["ap"]).n_ranked
    assert alone.n_ranked == 11


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["optim.lr_proxies=-1"], r"^optim\.lr_proxies=-1(\.0)? must be positive$"),
        (["train.metrics=[]"], "train.metrics is empty: name at least the monitored metric"),
    ],
)
def test_config_errors_name_their_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        load_config(overrides=overrides)


def test_an_unknown_recipe_is_called_a_recipe():
    with pytest.raises(ValueError, match=r"unknown recipe 'fashion-mnistt'; did you mean fashion-mnist"):
        load_config("fashion-mnistt")


def test_sampler_choice_is_named():
    from rankopt.train import RetrievalData

    with pytest.raises(ValueError, match=r"sampler='random' is not m_per_class or hierarchical"):
        RetrievalData([], None, None, batch_size=8, m=2, sampler="random")


def test_a_model_returning_no_tensor_is_named():
    import torch
    from torch import nn

    from rankopt.losses import ROADMAP
    from rankopt.train import RetrievalModule

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    module = RetrievalModule(Pair(), ROADMAP())
    with pytest.raises(ValueError, match="Pair returned tuple"):
        module._embed(torch.zeros(2, 3))


def test_the_epoch_loss_is_the_weighted_mean_of_the_steps():
    import torch

    from rankopt.train.module import RunModule

    module = RunModule()
    module.on_train_epoch_start()
    module.record_loss(torch.tensor(1.0), weight=1)
    module.record_loss(torch.tensor(4.0), weight=3)
    assert module.history[-1]["loss"] == pytest.approx((1 * 1 + 4 * 3) / 4)


def test_pretrained_backbones_see_imagenet_normalised_images():
    from torchvision import transforms as T

    from rankopt.train.run import _transforms

    cfg = load_config("roadmap-sop-resnet50", ["data.root=/nowhere"])
    for train in (True, False):
        [norm] = [t for t in _transforms(cfg, train).transforms if isinstance(t, T.Normalize)]
        assert list(norm.mean) == [0.485, 0.456, 0.406] and list(norm.std) == [0.229, 0.224, 0.225]


def test_unique_memory_without_the_training_size_is_named():
    from rankopt.train.run import build_loss

    cfg = load_config(overrides=["loss.memory_unique=true"])
    with pytest.raises(ValueError, match="^loss.memory_unique needs the number of training items$"):
        build_loss(cfg, n_classes=10, n_train=None)


def test_a_recsys_run_is_refused_where_an_image_run_is_expected(tmp_path):
    from rankopt.runs import RunFolder

    (tmp_path / "config.yaml").write_text("task: recsys\n")
    with pytest.raises(ValueError, match="is a recsys run: use rankopt recsys train"):
        RunFolder(tmp_path).config("images")


def test_without_a_process_group_this_is_rank_0_of_1():
    from rankopt.train.shards import world

    assert world() == (0, 1)


@pytest.mark.parametrize("fraction", [0.01, 0.99])
def test_carving_that_leaves_a_side_empty_is_refused(fraction):
    import numpy as np

    from rankopt.train.protocol import carve

    labels = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="leaves one side empty"):
        carve(labels, fraction, "images", seed=0)  # by classes, at least one class stays on each side
