"""Black-box box proposers, the stand-in for a phrase-grounding vision-language model (Florence-2,
Grounding-DINO in LLM-wrapper): a proposer sees only the image and the expression's head noun and
returns candidate boxes, each with a phrase (its own class guess) and a score (its belief that the box
is the head noun). Its own answer to an expression is its top-scoring box.

A proposer finds objects as connected components of the thresholded image and names them with a small
classifier trained here on the components of training scenes (their ground-truth class where a
component matches an object with IoU > 0.5). Touching objects merge into one component, a faint item
splits or vanishes, the classifier confuses shirts with T-shirts: errors of the kind a real detector
makes. Two proposers that differ in threshold, box style, classifier and score scale:

* ``probe``: threshold 40, tight boxes, a linear classifier (``rankopt.probe.fit_probe``), softmax
  probabilities as scores;
* ``centroid``: threshold 100 (thin strokes break up), boxes padded by 2 px, the nearest class mean
  by cosine, scores a softmax at temperature 0.1.

Both add seeded noise: coordinates jittered by ``jitter`` × the box size, and with probability
``merge`` a distractor box spanning two neighbouring components.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rankopt.grounding.scenes import Scene, box_iou

__all__ = ["Candidates", "Proposer", "PROPOSERS", "DETECTOR_NAMES", "components", "crop_features", "train_proposer"]


@dataclass(frozen=True)
class Candidates:
    """A proposer's answer to (image, head noun): boxes (K, 4) xyxy, their phrases and scores, ordered
    by score (highest first: index 0 is the proposer's own answer)."""

    boxes: np.ndarray
    phrases: tuple[str, ...]
    scores: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.boxes)


def components(image: np.ndarray, threshold: int, min_area: int = 12) -> np.ndarray:
    """Boxes (K, 4) xyxy (pixel edges) of the 8-connected components of ``image > threshold`` with at
    least ``min_area`` pixels, in scan order."""
    from scipy import ndimage

    mask = image > threshold
    labelled, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for i, sl in enumerate(ndimage.find_objects(labelled), start=1):
        if sl is None or (labelled[sl] == i).sum() < min_area:
            continue
        ys, xs = sl
        boxes.append([xs.start, ys.start, xs.stop, ys.stop])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def crop_features(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Each box's crop padded to a square, resized to 20 × 20 and centred on 28 × 28 (MNIST's own
    normalisation), flattened to (K, 784) in [0, 1]."""
    out = np.zeros((len(boxes), 28 * 28), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes).round().astype(int)):
        x1, y1 = max(x1, 0), max(y1, 0)
        crop = image[y1:y2, x1:x2].astype(np.float32) / 255.0
        if crop.size == 0:
            continue
        h, w = crop.shape
        side = max(h, w)
        square = np.zeros((side, side), dtype=np.float32)
        square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = crop
        small = F.interpolate(torch.from_numpy(square)[None, None], size=(20, 20), mode="bilinear", antialias=True)
        canvas = np.zeros((28, 28), dtype=np.float32)
        canvas[4:24, 4:24] = small[0, 0].numpy()
        out[k] = canvas.reshape(-1)
    return out


class Proposer:
    """A trained black box: ``propose(image, noun)`` → :class:`Candidates`. Build with :func:`train_proposer`."""

    def __init__(self, kind: str, names: list[str], classify, max_candidates: int, jitter: float, merge: float):
        self.kind, self.names, self._classify = kind, list(names), classify
        self.max_candidates, self.jitter, self.merge = max_candidates, jitter, merge
        self.threshold, self.pad = PROPOSERS[kind]

    def knows(self, noun: str) -> bool:
        return noun in self.names

    def boxes(self, image: np.ndarray) -> np.ndarray:
        b = components(image, self.threshold)
        if self.pad:
            h, w = image.shape
            b = np.clip(b + np.array([-self.pad, -self.pad, self.pad, self.pad]), 0, [w, h, w, h])
        return b

    def propose(self, image: np.ndarray, noun: str, rng: np.random.Generator) -> Candidates:
        if not self.knows(noun):
            raise ValueError(
                f"proposer {self.kind!r} knows the phrases {', '.join(map(repr, self.names))}; "
                f"the expression's head noun {noun!r} is not one"
            )
        boxes = self.boxes(image)
        if self.merge and len(boxes) >= 2 and rng.random() < self.merge:  # a merged-objects distractor
            c = (boxes[:, :2] + boxes[:, 2:]) / 2
            i = int(rng.integers(len(boxes)))
            d = np.hypot(*(c - c[i]).T)
            d[i] = np.inf
            j = int(d.argmin())
            union = np.concatenate([np.minimum(boxes[i, :2], boxes[j, :2]), np.maximum(boxes[i, 2:], boxes[j, 2:])])
            boxes = np.vstack([boxes, union])
        if len(boxes) == 0:
            return Candidates(np.zeros((0, 4)), (), np.zeros(0), self.kind)
        probs = self._classify(crop_features(image, boxes))  # (K, C)
        if self.jitter:
            size = np.repeat(boxes[:, 2:] - boxes[:, :2], 2, axis=0).reshape(-1, 4)
            boxes = boxes + rng.normal(0.0, self.jitter, boxes.shape) * size
            h, w = image.shape
            boxes = np.clip(boxes, 0, [w, h, w, h])
        score = probs[:, self.names.index(noun)]
        order = np.argsort(-score, kind="stable")[: self.max_candidates]
        phrases = tuple(self.names[int(c)] for c in probs[order].argmax(1))
        return Candidates(boxes[order], phrases, score[order], self.kind)


# kind → (threshold, box padding in pixels)
PROPOSERS = {"probe": (40, 0), "centroid": (100, 2)}
DETECTOR_NAMES = {"probe": "detector A", "centroid": "detector B"}  # how an ensemble prompt names them


def _training_crops(scenes: list[Scene], threshold: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for s in scenes:
        b = components(s.image, threshold)
        if pad:
            h, w = s.image.shape
            b = np.clip(b + np.array([-pad, -pad, pad, pad]), 0, [w, h, w, h])
        if not len(b):
            continue
        gt = np.array([o.box for o in s.objects])
        iou = box_iou(b, gt)
        keep = iou.max(1) > 0.5
        feats.append(crop_features(s.image, b[keep]))
        labels.append(np.array([s.objects[j].label for j in iou.argmax(1)[keep]], dtype=np.int64))
    if not feats or not sum(len(x) for x in labels):
        raise ValueError("no component of the training scenes matches an object: nothing to train a proposer on")
    return np.concatenate(feats), np.concatenate(labels)


@contextlib.contextmanager
def _one_torch_thread():
    """torch on one thread inside, the caller's count restored after. The probe's L-BFGS stops after 100
    iterations far from its optimum, so the last-bit differences of float32 sums split over 1 or 2
    threads end in different classifiers (weights apart by hundreds), different candidate orders and
    another test set for the same seed: the scenes must depend on the seed alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_proposer(
    kind: str,
    scenes: list[Scene],
    names: list[str],
    seed: int,
    *,
    max_candidates: int = 6,
    jitter: float = 0.03,
    merge: float = 0.2,
) -> Proposer:
    """Train a proposer's classifier on the components of ``scenes`` (labels of their matching objects)."""
    if kind not in PROPOSERS:
        raise ValueError(f"unknown proposer {kind!r}; known: {', '.join(PROPOSERS)}")
    x, y = _training_crops(scenes, *PROPOSERS[kind])
    n_classes = len(names)
    if kind == "probe":
        from rankopt.probe import fit_probe

        with _one_torch_thread():
            head = fit_probe(x, y, seed=seed)

        def classify(f: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = head(torch.from_numpy(f))
            full = torch.full((len(f), n_classes), -torch.inf)
            full[:, : logits.shape[1]] = logits  # classes absent from training get probability 0
            return full.softmax(1).numpy()

    else:
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
        means = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
        for c in np.unique(y):
            m = unit[y == c].mean(0)
            means[c] = m / max(np.linalg.norm(m), 1e-8)

        def classify(f: np.ndarray) -> np.ndarray:
            u = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-8)
            return torch.from_numpy(u @ means.T / 0.1).softmax(1).numpy()

    return Proposer(kind, names, classify, max_candidates, jitter, merge)
