"""The evaluation protocol: carved validation splits, query/gallery test sets, what a run records."""

import numpy as np
import pytest

from miniatures import png, write_dyml
from rankopt.config import load_config
from rankopt.train.protocol import carve
from rankopt.train.run import build_splits


def test_carve_by_classes_is_class_disjoint_and_seeded():
    labels = np.repeat(np.arange(20), 5)
    keep, out = carve(labels, 0.1, "classes", seed=3)
    assert len(np.unique(labels[out])) == 2 and set(labels[keep]).isdisjoint(labels[out])
    assert sorted(np.r_[keep, out].tolist()) == list(range(100))
    again = carve(labels, 0.1, "classes", seed=3)
    assert np.array_equal(out, again[1]) and not np.array_equal(out, carve(labels, 0.1, "classes", seed=4)[1])


def test_carve_by_images_is_stratified():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    keep, out = carve(labels, 0.1, "images", seed=0)
    assert np.bincount(labels[out]).tolist() == [1, 2, 3, 4]
    assert set(labels[keep]) == set(labels)  # every class stays in training


@pytest.mark.parametrize("bad", [0.0, 1.0])
def test_carve_rejects_empty_sides(bad):
    with pytest.raises(ValueError):
        carve(np.arange(10), bad, "classes", seed=0)


def _folder(root, n_classes=10, per_class=3):
    for c in range(n_classes):
        for k in range(per_class):
            png(root / f"class{c:02d}" / f"{k}.png", (c * 20, k * 40, 0))


def test_unsplit_image_folder_gets_class_disjoint_valid_and_test(tmp_path):
    _folder(tmp_path / "tree")
    cfg = load_config(
        None,
        ["data.name=image-folder", f"data.root={tmp_path / 'tree'}", "data.valid_fraction=0.2", "model.in_channels=3"],
    )
    splits = build_splits(cfg)
    listing = {part: items.items for part, items in splits.items(cfg.data.root).items()}
    classes = lambda paths: {p.split("/")[0] for p in paths}
    test_c = classes(listing["test"])
    valid_c = classes(listing["valid"])
    train_c = classes(listing["train"])
    assert len(test_c) == 5 and len(valid_c) == 1 and len(train_c) == 4
    assert not (test_c & valid_c) and not (test_c & train_c) and not (valid_c & train_c)
    assert splits.train.labels[:, 0].tolist() == sorted(splits.train.labels[:, 0].tolist())
    assert int(splits.train.labels.max()) == 3  # training labels renumbered 0..K-1 for class proxies
    again = build_splits(cfg).items(cfg.data.root)
    assert {p: i.items for p, i in again.items()} == listing  # seeded: the same split every time
    assert all(i.split is None for i in again.values())  # an unsplit folder: every part indexes the whole


def test_query_gallery_protocol_and_forbidden_selection_on_test(tmp_path):
    write_dyml(tmp_path)
    (tmp_path / "bmk_fine/gallery.csv").write_text((tmp_path / "bmk_fine/query.csv").read_text())
    for f in (tmp_path / "bmk_fine/query").iterdir():
        png(tmp_path / "bmk_fine/gallery" / f.name)
    cfg = load_config("happier-dyml-vehicle", [f"data.root={tmp_path}"])
    splits = build_splits(cfg)
    assert (
        splits.test.mode == "query-gallery" and splits.test.split == "query" and splits.test.gallery_split == "gallery"
    )
    assert splits.valid.mode == "leave-one-out" and "valid" in splits.carved
    assert set(splits.valid.queries.labels[:, 0].tolist()).isdisjoint(
        splits.train.dataset.labels[splits.train.indices, 0].tolist()
    )
    cfg.data.valid = "gallery"
    with pytest.raises(ValueError, match="selection must never read the test data"):
        build_splits(cfg)
    cfg.data.valid, cfg.data.test_split = "carve", "train"
    with pytest.raises(ValueError, match="is the training split"):
        build_splits(cfg)


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.epochs=-1", "train.epochs=-1 must be at least 1"),
        ("train.eval_every=0", "train.eval_every=0 must be at least 1"),
        ("train.monitor=ndcg@10", "not among train.metrics"),
        ("train.metrics=[hit@1,mapr]", "mapr"),
        ("data.valid_fraction=1.5", "data.valid_fraction"),
        ("model.weights=packaged", "only efficientnet_lite0 ships weights"),
        ("model.backbone=resnet18", "resnet18 takes 3-channel"),
        ("optim.lr_head=0", "optim.lr_head=0.0 must be positive"),
    ],
)
def test_config_checked_before_any_work(override, match):
    with pytest.raises(ValueError, match=match):
        load_config("fashion-mnist", [override])
