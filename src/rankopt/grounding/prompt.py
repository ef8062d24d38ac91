"""LLM-wrapper's translation of a black box's candidates into text, its labels and its answer parser
(valeoai/LLM_wrapper, ``design_prompt_for_step_3``, ``eval_and_find_best_subj``,
``extract_int_result_from_LLM_gen``).

The user message, one detector (their prompt versions 31 and 32)::

    You are a helpful AI assistant, capable of understanding spatial information.
    In an image, there are 3 boxes:
    * In box 0: 'bag' with xyxy coordinates '[12.0, 40.5, 38.0, 66.0]',
    * In box 1: ... with score 0.93,          (version 32 only)
    * In box 2: ... .
    Which box is best matching 'the bag left of the shirt' ? Answer with just the index of the best box. No explanation.

Two detectors (ensembling): "In an image, I got boxes from two object detectors:" and lines
"* Box i: <detector> found '<phrase>' with xyxy coordinates '[...]'". Coordinates are rounded to
``decimals`` (theirs: 1; 0 writes integers, half the tokens). The chat template is the language
model's own (theirs: hand-written per model).
"""

from __future__ import annotations

import re

import numpy as np

from rankopt.grounding.proposers import Candidates
from rankopt.grounding.scenes import box_iou

__all__ = ["prompt_text", "best_candidate", "permuted_label", "parse_answer", "format_box"]

SYSTEM = "You are a helpful AI assistant, capable of understanding spatial information."


def format_box(box, decimals: int) -> str:
    """``[x1, y1, x2, y2]`` as the authors write it (Python's list of rounded floats); integers for 0."""
    if decimals == 0:
        return "[" + ", ".join(str(int(round(float(c)))) for c in box) + "]"
    return str([round(float(c), decimals) for c in box])


def prompt_text(
    candidates: list[Candidates],
    query: str,
    *,
    order: np.ndarray | None = None,
    with_score: bool = False,
    decimals: int = 1,
    detector_names: dict[str, str] | None = None,
) -> str:
    """The user message listing the candidates (of one proposer, or of two: the ensemble format) in
    ``order`` (positions into their concatenation; default: as given), then the question."""
    boxes = np.concatenate([c.boxes for c in candidates]) if candidates else np.zeros((0, 4))
    phrases = [p for c in candidates for p in c.phrases]
    scores = np.concatenate([c.scores for c in candidates]) if candidates else np.zeros(0)
    sources = [c.source for c in candidates for _ in range(len(c))]
    n = len(boxes)
    if n == 0:
        raise ValueError(f"no candidate box for {query!r}: the proposer found nothing to choose from")
    order = np.arange(n) if order is None else np.asarray(order)
    two = len(candidates) > 1
    names = detector_names or {}
    lines = ""
    for i, k in enumerate(order):
        coords = f"xyxy coordinates '{format_box(boxes[k], decimals)}'"
        if two:
            lines += f"\n* Box {i}: {names.get(sources[k], sources[k])} found '{phrases[k]}' with {coords}"
        else:
            lines += f"\n* In box {i}: '{phrases[k]}' with {coords}"
        if with_score:
            lines += f" with score {round(float(scores[k]), 2)}"
        lines += ","
    lines = lines.strip(",") + "."
    head = "\nIn an image, I got boxes from two object detectors:" if two else f"\nIn an image, there are {n} boxes:"
    question = f"\nWhich box is best matching '{query}' ? Answer with just the index of the best box. No explanation."
    return SYSTEM + head + lines + question


def best_candidate(boxes: np.ndarray, gt_box) -> tuple[int, float]:
    """(index, IoU) of the candidate with the highest IoU to the ground truth; the first one on a tie
    (``torch.argmax``'s rule in the authors' code). A training sample is kept when IoU > 0.5."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        raise ValueError("no candidate box to label")
    iou = box_iou(np.asarray(gt_box, dtype=np.float64)[None], boxes)[0]
    k = int(np.flatnonzero(iou == iou.max())[0])
    return k, float(iou[k])


def permuted_label(order: np.ndarray, label: int) -> int:
    """The position of candidate ``label`` once the candidates are listed in ``order``."""
    where = np.flatnonzero(np.asarray(order) == label)
    if len(where) != 1:
        raise ValueError(f"order {list(order)} does not list candidate {label} exactly once")
    return int(where[0])


_DIGITS = re.compile(r"\d+")


def parse_answer(text: str, n_candidates: int) -> tuple[int | None, str | None]:
    """(index, None) from the first run of digits of a generated answer, or (None, reason) with reason
    ``no_int_generated`` (no digit) or ``out_of_range`` (an index ≥ the number of candidates); either
    counts as a wrong answer."""
    found = _DIGITS.search(text.strip().strip("'\""))
    if found is None:
        return None, "no_int_generated"
    index = int(found.group())
    if index >= n_candidates:
        return None, "out_of_range"
    return index, None
