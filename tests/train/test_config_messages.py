"""Small contracts of the run layer that mutation testing found untested: the words of configuration
errors, a recipe path that does not exist, and a protocol description whose validation split is
the dataset's own (not carved)."""

import pytest

from rankopt.train.config import load_config
from rankopt.train.module import OptimConfig
from rankopt.train.protocol import EvalSet, Splits


@pytest.mark.parametrize("kwargs,match", [
    ({"optimizer": "adagrad"}, r"optimizer='adagrad' is not adam, adamw or sgd"),
    ({"scheduler": "step"}, r"scheduler='step' is not none, multistep or cosine"),
])
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
    splits = Splits(train=list(range(20)), valid=EvalSet("val", items), test=EvalSet("test", list(range(7))),
                    carved={"train": "the training split less nothing"})
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
    _, with_gallery = evaluate_shards(q, ql, torch.arange(12), 12, (gal, gl, torch.arange(9), 9), metrics=["ap"], per_query=True)
    _, alone = evaluate_shards(q, ql, torch.arange(12), 12, metrics=["ap"], per_query=True)
    assert with_gallery.n_ranked == 9 == evaluate_per_query(q, ql, gal, gl, metrics=["ap"]).n_ranked
    assert alone.n_ranked == 11
