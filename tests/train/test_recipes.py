"""Every packaged recipe trains on a miniature of its dataset (tiny images, batch and budget)."""

import math

import pytest

import miniatures
from rankopt.config import load_config, recipe_names
from rankopt.runs import start_run

WRITERS = {
    "sop": miniatures.write_sop,
    "cub": miniatures.write_cub,
    "inaturalist": miniatures.write_inat,
    "dyml": miniatures.write_dyml,
}


@pytest.mark.parametrize("recipe", [r for r in recipe_names() if r != "fashion-mnist"])
def test_recipe_trains_on_its_miniature(recipe, tmp_path, caplog):
    cfg = load_config(recipe)
    if cfg.model.backbone.startswith(("deit", "vit")):
        pytest.importorskip("timm")
    WRITERS[cfg.data.name](tmp_path / "data")
    cfg = load_config(
        recipe,
        [
            f"data.root={tmp_path / 'data'}",
            "data.batch_size=8",
            "data.m=2",
            "data.image_size=32",
            "train.epochs=1",
            "train.eval_every=1",
            "model.weights=null",
            "train.metrics=[hit@1, map@r, ap]",
            "train.monitor=map@r",
        ],
    )
    metrics, folder = start_run(cfg, tmp_path / "run", progress=False)
    assert folder.last_checkpoint.is_file()
    assert all(math.isfinite(v) for v in metrics["test"].values())
    assert metrics["pretrained"] is False and "randomly initialised weights" in caplog.text  # said, and recorded
    assert metrics["selection"]["split"] == "valid" and metrics["protocol"]["test"]["mode"] == (
        "query-gallery" if recipe in ("happier-dyml-vehicle", "happier-dyml-animal") else "leave-one-out"
    )


def test_happier_recipes_use_the_authors_offset():
    """HAPPIER's SOP and DyML configs pass offset=1.44 to HAPLoss; iNaturalist uses start 0, offset 1."""
    for recipe in ("happier-sop", "happier-dyml-vehicle", "happier-dyml-animal", "happier-dyml-product"):
        assert load_config(recipe).loss.options["offset"] == 1.44, recipe
    assert load_config("happier-inat").loss.options == {"start": 0.0, "offset": 1.0}
