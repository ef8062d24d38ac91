"""What a pre-trained backbone's frozen features are worth: exact retrieval (rankopt.metrics,
leave-one-out), a k-NN classifier and a linear probe on the training features, retrieval at every nested
dimension, and RASA's position probe.

k-NN (DINO's): the k training features most cosine-similar to a test feature vote for their class with
weight exp(s/T); the class with the largest total wins.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = np.arange(100) % 2
>>> x = rng.normal(size=(100, 4)) + 3 * np.stack([y, 1 - y], 1).repeat(2, 1)
>>> knn_accuracy(x, y, x[:10] + 0.01, y[:10], k=5)
1.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rankopt.metrics.evaluate import aggregate, evaluate_per_query
from rankopt.probe import fit_probe
from rankopt.search import knn

__all__ = ["Embedder", "frozen_features", "knn_accuracy", "retrieval", "nested_retrieval", "probe_accuracy"]


class Embedder:
    """A backbone as the heads and the evaluation read it: images → (pooled embedding (B, D), patch
    tokens (B, P, D) or None). A patch-token backbone (registry metadata ``patch_tokens``: its
    ``tokens(x, masks)``) gives its class token and patches; a CNN its feature map averaged over
    positions. ``prepare`` adapts the images first (RGB, size)."""

    def __init__(
        self, backbone: nn.Module, patch_tokens: bool, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> None:
        self.backbone, self.patch_tokens, self.prepare = backbone, patch_tokens, prepare

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.prepare(images) if self.prepare is not None else images
        if self.patch_tokens:
            return self.backbone.tokens(x, masks)
        if masks is not None:
            raise ValueError("masks go to patch-token backbones only")
        return self.backbone(x).mean(dim=(-2, -1)), None


@torch.no_grad()
def frozen_features(
    embed: Embedder, dataset: Dataset, batch_size: int = 512, num_workers: int = 0, patches: int = 0, progress=None
) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """(embeddings (N, D), labels (N, L), patch tokens of the first ``patches`` images or None) of every
    item of ``dataset`` (image, labels, index), in order, the backbone in eval mode."""
    was = embed.backbone.training
    embed.backbone.eval()
    device = next(embed.backbone.parameters()).device
    emb, labels, kept, done = [], [], [], 0
    for images, lab, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        cls, tokens = embed(images.to(device))
        emb.append(cls.float().cpu())
        labels.append(lab)
        if tokens is not None and done < patches:
            kept.append(tokens[: patches - done].float().cpu())
        done += len(images)
        if progress is not None:
            progress(done, len(dataset))
    embed.backbone.train(was)
    lab = torch.cat(labels)
    lab = lab.unsqueeze(1) if lab.ndim == 1 else lab
    return torch.cat(emb).numpy(), lab.numpy(), (torch.cat(kept) if kept else None)


def knn_accuracy(
    bank: np.ndarray,
    bank_labels: np.ndarray,
    queries: np.ndarray,
    labels: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Accuracy of DINO's weighted k-NN classifier (see the module docstring); labels (N,) of classes."""
    bank_labels, labels = np.asarray(bank_labels).reshape(-1), np.asarray(labels).reshape(-1)
    k = min(k, len(bank))
    scores, index = knn(queries, k, bank, similarity="cosine")
    weights = torch.exp(scores.double() / temperature)  # (Q, k)
    classes = torch.as_tensor(bank_labels)[index]  # (Q, k)
    n_classes = int(max(bank_labels.max(), labels.max())) + 1
    votes = torch.zeros(len(queries), n_classes, dtype=torch.float64).scatter_add_(1, classes, weights)
    return float((votes.argmax(1).numpy() == labels).mean())


def retrieval(features: np.ndarray, labels: np.ndarray, metrics: list[str], per_query: bool = False):
    """Leave-one-out retrieval metrics of ``features`` (rankopt.metrics, exact with ties): the means
    (and the per-query result when asked)."""
    result = evaluate_per_query(features, labels, metrics=list(metrics))
    summary = {k: (int(v) if k.startswith("n_") else float(v)) for k, v in aggregate(result).items()}
    return (summary, result) if per_query else summary


def nested_retrieval(features: np.ndarray, labels: np.ndarray, widths: list[int], metrics: list[str]) -> list[dict]:
    """Retrieval with the first d dimensions of ``features`` only, for each d of ``widths``."""
    return [{"dim": d, **retrieval(np.ascontiguousarray(features[:, :d]), labels, metrics)} for d in widths]


def probe_accuracy(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray, seed: int = 0
) -> float:
    """Test accuracy of a linear probe fitted on the training features."""
    head = fit_probe(train, np.asarray(train_labels).reshape(-1), seed=seed)
    return float((head.predict(test) == np.asarray(test_labels).reshape(-1)).mean())
