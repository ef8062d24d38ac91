"""The grounding task's samples: scenes from a labelled image set's train / test items, proposers
trained on the training scenes, one expression per scene (the test split: one from a training
template and one from a held-out template, so seen and unseen templates are scored on the same
unseen scenes), and each expression's candidates from the proposer(s), labelled by IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankopt.grounding.expressions import Expression, make_expressions
from rankopt.grounding.prompt import best_candidate, prompt_text
from rankopt.grounding.proposers import DETECTOR_NAMES, Candidates, Proposer, train_proposer
from rankopt.grounding.scenes import Scene, compose_scenes

__all__ = ["Sample", "GroundingSet", "build_samples", "image_set", "NOUNS"]

NOUNS = {  # what an expression calls each class (singular, lower case)
    "fashion-mnist": [
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ],
    "mnist-subset": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
}


@dataclass(frozen=True)
class Sample:
    scene: int
    expression: Expression
    candidates: tuple[Candidates, ...]  # one per proposer in the prompt
    gt: tuple[float, float, float, float]
    label: int  # the candidate with the highest IoU to the ground truth (first on ties)
    iou: float  # its IoU: the sample can be answered right only if > 0.5
    seen: bool  # the expression's template was a training template

    @property
    def boxes(self) -> np.ndarray:
        return np.concatenate([c.boxes for c in self.candidates])

    @property
    def n_candidates(self) -> int:
        return sum(len(c) for c in self.candidates)

    def proposer_box(self) -> np.ndarray:
        """The first proposer's own answer: its top-scoring box."""
        return self.candidates[0].boxes[0]

    def text(self, order=None, with_score: bool = False, decimals: int = 1) -> str:
        return prompt_text(
            list(self.candidates),
            self.expression.text,
            order=order,
            with_score=with_score,
            decimals=decimals,
            detector_names=DETECTOR_NAMES,
        )


@dataclass
class GroundingSet:
    scenes: dict[str, list[Scene]]
    samples: dict[str, list[Sample]]
    proposers: dict[str, Proposer]

    def describe(self) -> dict:
        return {
            split: {
                "scenes": len(self.scenes[split]),
                "samples": len(s),
                "answerable": int(sum(x.iou > 0.5 for x in s)),
                "candidates_mean": float(np.mean([x.n_candidates for x in s])) if s else 0.0,
            }
            for split, s in self.samples.items()
        }


def image_set(name: str, split: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of a labelled image set's split."""
    if name == "fashion-mnist":
        from rankopt.data.fashion_mnist import FashionMNIST

        ds = FashionMNIST(split, root)
    elif name == "mnist-subset":
        from rankopt.data.mnist_subset import MNISTSubset

        ds = MNISTSubset(split)
    else:
        raise ValueError(f"unknown image set {name!r}; known: {', '.join(NOUNS)}")
    return ds.images.numpy(), ds.labels[:, 0].numpy()


def _samples(
    scenes: list[Scene],
    nouns: list[str],
    proposers: list[Proposer],
    template_sets: list[tuple[list[str], bool]],
    rng: np.random.Generator,
    margin: float,
) -> list[Sample]:
    out = []
    for i, scene in enumerate(scenes):
        for templates, seen in template_sets:
            for expr in make_expressions(scene, nouns, templates, rng, margin):
                cands = tuple(p.propose(scene.image, expr.noun, rng) for p in proposers)
                if sum(len(c) for c in cands) == 0:
                    continue  # the proposer found nothing: no prompt to write (counted by describe())
                gt = scene.objects[expr.target].box
                label, iou = best_candidate(np.concatenate([c.boxes for c in cands]), gt)
                out.append(Sample(i, expr, cands, gt, label, iou, seen))
    return out


def build_samples(cfg) -> GroundingSet:
    """Scenes, proposers and samples of every split, deterministic in ``cfg.train.seed``."""
    d, p, seed = cfg.data, cfg.proposer, cfg.train.seed
    nouns = NOUNS[d.name]
    train_images, train_labels = image_set(d.name, "train", d.root)
    test_images, test_labels = image_set(d.name, "test", d.root)
    shape = {"canvas": d.canvas, "objects": tuple(d.objects)}
    scenes = {
        "train": compose_scenes(train_images, train_labels, d.train_scenes, seed, **shape),
        "valid": compose_scenes(train_images, train_labels, d.valid_scenes, seed + 10_000, **shape),
        "test": compose_scenes(test_images, test_labels, d.test_scenes, seed + 20_000, **shape),
    }
    # the proposers' classifiers learn from the training scenes only
    kinds = sorted({p.train, p.test} | ({"probe", "centroid"} if p.ensemble else set()))
    proposers = {
        k: train_proposer(
            k, scenes["train"], nouns, seed, max_candidates=p.max_candidates, jitter=p.jitter, merge=p.merge
        )
        for k in kinds
    }
    rng = np.random.default_rng([seed, 1])
    seen = list(d.train_templates)
    unseen = list(d.unseen_templates)
    pick = lambda kind: [proposers["probe"], proposers["centroid"]] if p.ensemble else [proposers[kind]]
    samples = {
        "train": _samples(scenes["train"], nouns, pick(p.train), [(seen, True)], rng, d.margin),
        "valid": _samples(scenes["valid"], nouns, pick(p.train), [(seen, True)], rng, d.margin),
        "test": _samples(scenes["test"], nouns, pick(p.test), [(seen, True), (unseen, False)], rng, d.margin),
    }
    # training on a label that is not the object (IoU <= 0.5) teaches a wrong answer: dropped, as theirs
    samples["train"] = [s for s in samples["train"] if s.iou > 0.5]
    for split in ("train", "test"):
        if not samples[split]:
            raise ValueError(f"no {split} sample: the scenes gave no expression with a candidate box")
    return GroundingSet(scenes, samples, proposers)
