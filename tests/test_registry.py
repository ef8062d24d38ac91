"""One registry mechanism for every family built by name: lookups normalise names, unknown names
suggest the closest, and what a member needs is metadata the callers read."""

import pytest

from rankopt.config import load_config
from rankopt.data import DATASETS, create_dataset
from rankopt.losses import LOSSES, create_loss
from rankopt.models import BACKBONES
from rankopt.recsys.models import RECOMMENDERS
from rankopt.registry import Registry


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: create_loss("smoth-ap"), "did you mean smoothap"),
        (lambda: create_dataset("fashion_mnst"), "did you mean fashion-mnist"),
        (lambda: BACKBONES.create("resnet5"), "did you mean resnet50"),
        (lambda: RECOMMENDERS.create("lightgc"), "did you mean lightgcn"),
        (lambda: load_config("roadmap-sop-resnet5"), "did you mean roadmap-sop-resnet50"),
        (lambda: load_config("ml-100k-lightgcn-bp", task="recsys"), "did you mean ml-100k-lightgcn-bpr"),
    ],
)
def test_unknown_names_suggest_the_closest(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_names_are_normalised_and_registered_once():
    assert type(create_loss("Smooth-AP")).__name__ == "SmoothAP" and "SUP_AP" in LOSSES
    assert "Fashion_MNIST" in DATASETS
    reg = Registry("thing")
    reg.register("a", dict)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("A", dict)


def test_losses_declare_what_they_need():
    assert LOSSES["happier"].needs_classes and LOSSES["normsoftmax"].needs_classes
    assert not LOSSES["roadmap"].needs_classes
    assert LOSSES["hap"].hierarchical and not LOSSES["supap"].hierarchical
    happier = create_loss("happier", num_classes=7, dim=4)
    assert happier.hierarchical and len(happier.proxy_parameters()) == 1  # HAP and NormSoftmax; NormSoftmax's proxies
    assert not create_loss("roadmap").hierarchical and create_loss("roadmap").proxy_parameters() == []


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.weights=packaged", "only efficientnet_lite0 ships weights"),
        ("model.pooling=cls", "class token"),
        ("model.pooling=mean", "is not one of"),
    ],
)
def test_backbone_metadata_checks_the_config(override, match):
    with pytest.raises(ValueError, match=match):
        load_config("fashion-mnist", [override])


def test_rgb_backbone_refuses_one_channel():
    with pytest.raises(ValueError, match="3-channel"):
        load_config("roadmap-sop-resnet50", ["model.in_channels=1"])
