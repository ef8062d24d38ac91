"""Packaged recommendation recipes: one per dataset × model × loss of the README tables; each loads,
validates, and trains through the same engine (one epoch on small files)."""

import json

import pytest
import yaml
from test_runner import synthetic

from rankopt.cli import main
from rankopt.config import load_config, recipe_names

DATASETS, MODELS = ("ml-100k", "lastfm", "ml-1m", "gowalla"), ("mf", "lightgcn", "ngcf", "lightgcnpp")
VARIANTS = ("bpr", "item-uniform", "item-ppr", "softmax")


def test_every_table_cell_has_a_recipe_and_every_recipe_validates():
    names = recipe_names("recsys")
    assert sorted(names) == sorted(f"{d}-{m}-{v}" for d in DATASETS for m in MODELS for v in VARIANTS)
    for name in names:
        cfg = load_config(name, task="recsys")
        dataset, rest = next((d, name[len(d) + 1 :]) for d in DATASETS if name.startswith(d + "-"))
        model = next(m for m in sorted(MODELS, key=len, reverse=True) if rest.startswith(m + "-"))
        variant = rest[len(model) + 1 :]
        assert cfg.model.name == model and cfg.recipe == name
        assert cfg.loss.name == ("bpr" if variant == "bpr" else "softmax" if variant == "softmax" else "item-ndcg")
        assert (cfg.loss.negatives == "ppr") == (variant == "item-ppr")
        assert (cfg.data.rating_threshold == 4.0) == (dataset == "ml-100k")
        assert cfg.train.monitor == "ndcg@20"
        # the table's (untuned) settings are pinned: a change of the tuned defaults cannot move its cells
        assert cfg.train.min_epochs == 0  # its early stopping, not the tuned protocol's
        if variant == "bpr":
            assert cfg.optim.weight_decay == 1e-4 and cfg.optim.lr is not None
        else:
            assert (cfg.loss.score, cfg.loss.tau, cfg.loss.n_neg, cfg.optim.weight_decay) == ("cosine", 0.1, 50, 0.0)


def test_item_ppr_recipe_carries_the_tables_ppr_band():
    cfg = load_config("ml-100k-lightgcn-item-ppr", task="recsys")
    assert (cfg.loss.ppr_skip, cfg.loss.ppr_m, cfg.optim.lr) == (100, 200, 1e-2)


def test_a_recipe_trains_with_flags_and_set_on_top(tmp_path, capsys):
    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    rc = main(
        [
            "recsys",
            "train",
            "ml-1m-mf-item-uniform",
            "--data-dir",
            str(data),
            "--epochs",
            "1",
            "--k",
            "5",
            "--set",
            "loss.n_neg=7",
            "--set",
            "data.batch_users=16",
            "--run-dir",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["selection"]["epochs_run"] == 1 and set(out["test"]) >= {"ndcg@5", "map@5", "mrr@5", "p@5", "hit@5"}
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["task"] == "recsys" and config["recipe"] == "ml-1m-mf-item-uniform"
    assert config["loss"]["n_neg"] == 7 and config["model"]["name"] == "mf" and config["train"]["epochs"] == 1


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.epochs=0", "train.epochs=0"),
        ("loss.ppr_mix=2", "loss.ppr_mix=2"),
        ("model.name=gcn", "model.name='gcn'"),
        ("optim.lr=-1", "optim.lr=-1"),
        ("data.protocol=inductive", None),
    ],
)
def test_config_is_validated_before_any_work(override, match):
    if match is None:
        assert load_config("ml-100k-lightgcn-bpr", [override], task="recsys").users == "items"
        return
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        load_config("ml-100k-lightgcn-bpr", [override], task="recsys")
