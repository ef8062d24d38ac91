"""A linear probe: a linear classifier fitted on frozen features (softmax cross-entropy + L2, full-batch
L-BFGS). OOD detection uses it as the classification head of embedding models; self-supervised
pre-training reports its accuracy.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = np.arange(200) % 2
>>> x = rng.normal(size=(200, 3)) + 4 * y[:, None]
>>> head = fit_probe(x, y)
>>> float((head.predict(x) == y).mean())
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LinearHead", "fit_probe"]


@dataclass
class LinearHead:
    """logits = features @ weight.T + bias: a model's classifier, or a probe fitted on features."""

    weight: torch.Tensor  # (C, d)
    bias: torch.Tensor  # (C,)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T.to(z.dtype) + self.bias.to(z.dtype)

    def predict(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """The class of each row of ``features`` (N, d)."""
        return self(torch.as_tensor(np.asarray(features), dtype=torch.float64)).argmax(1).numpy()


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    epochs: int = 100,
    weight_decay: float = 1e-4,
    seed: int = 0,
    max_rows: int = 200_000,
) -> LinearHead:
    """A linear classifier on ``features`` (N, d) for integer ``labels`` (N,). Beyond ``max_rows`` rows,
    fitted on a seeded sample of them (bounded memory on ImageNet-size sets)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"labels must be (N,) with N={len(features)}; got shape {labels.shape}")
    classes = int(labels.max()) + 1
    rows = np.arange(len(features))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
    # standardisation folded into the head afterwards: L-BFGS converges in a few dozen steps
    with torch.inference_mode(False), torch.enable_grad():  # callable from a test or validation loop
        x = torch.as_tensor(np.asarray(features[rows]), dtype=torch.float32)
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        xs = (x - mean) / std
        y = torch.as_tensor(labels[rows])
        gen = torch.Generator().manual_seed(seed)
        lin = torch.nn.Linear(x.shape[1], classes)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.01)
            lin.bias.zero_()
        opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(xs), y) + weight_decay * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        w = lin.weight.detach().double() / std.double()
        b = lin.bias.detach().double() - w @ mean.double()
    return LinearHead(w, b)
