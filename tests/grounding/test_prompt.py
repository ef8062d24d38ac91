"""LLM-wrapper's prompt text, labels, box-order shuffling and answer parsing, against strings and
labels written by hand from the authors' code (valeoai/LLM_wrapper, LLM_inference_script.py)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from rankopt.grounding.prompt import best_candidate, format_box, parse_answer, permuted_label, prompt_text
from rankopt.grounding.proposers import Candidates

BOXES = np.array([[10.04, 20.0, 30.55, 40.0], [50.0, 5.25, 70.0, 25.0], [1.0, 2.0, 3.0, 4.0]])
CANDS = Candidates(BOXES, ("bag", "shirt", "bag"), np.array([0.91, 0.456, 0.1]), "probe")


def test_one_detector_prompt_is_the_authors_version_31_and_32():
    expected = (
        "You are a helpful AI assistant, capable of understanding spatial information."
        "\nIn an image, there are 3 boxes:"
        "\n* In box 0: 'bag' with xyxy coordinates '[10.0, 20.0, 30.6, 40.0]',"
        "\n* In box 1: 'shirt' with xyxy coordinates '[50.0, 5.2, 70.0, 25.0]',"
        "\n* In box 2: 'bag' with xyxy coordinates '[1.0, 2.0, 3.0, 4.0]'."
        "\nWhich box is best matching 'the bag left of the shirt' ? Answer with just the index of the best box."
        " No explanation."
    )
    assert prompt_text([CANDS], "the bag left of the shirt") == expected
    scored = prompt_text([CANDS], "q", with_score=True)
    assert "\n* In box 1: 'shirt' with xyxy coordinates '[50.0, 5.2, 70.0, 25.0]' with score 0.46," in scored
    assert scored.count("with score") == 3 and "with score 0.1." in scored


def test_order_integer_coordinates_and_the_two_detector_format():
    text = prompt_text([CANDS], "q", order=np.array([2, 0, 1]), decimals=0)
    assert "\n* In box 0: 'bag' with xyxy coordinates '[1, 2, 3, 4]'," in text
    assert "\n* In box 1: 'bag' with xyxy coordinates '[10, 20, 31, 40]'," in text
    other = Candidates(BOXES[:1], ("coat",), np.array([0.5]), "centroid")
    two = prompt_text([CANDS, other], "q", decimals=0, detector_names={"probe": "A", "centroid": "B"})
    assert "\nIn an image, I got boxes from two object detectors:" in two
    assert "\n* Box 3: B found 'coat' with xyxy coordinates '[10, 20, 31, 40]'." in two
    assert "\n* Box 0: A found 'bag'" in two


def test_format_box_rounds_as_python_does():
    assert format_box([1.25, 2.35, 3.0, 99.99], 1) == "[1.2, 2.4, 3.0, 100.0]"
    assert format_box([1.5, 2.5, 0.49, 7.51], 0) == "[2, 2, 0, 8]"  # round half to even


def test_a_scene_without_candidates_is_refused():
    empty = Candidates(np.zeros((0, 4)), (), np.zeros(0), "probe")
    with pytest.raises(ValueError, match="no candidate box for 'the bag'"):
        prompt_text([empty], "the bag")


def test_label_is_the_highest_iou_first_on_ties():
    gt = [0, 0, 10, 10]
    # IoUs by hand: [0,0,10,10] → 1; [0,0,10,20] → 100/200; [5,0,15,10] → 50/150; [0,0,20,5] → 50/200
    boxes = np.array([[0, 0, 10, 20], [5, 0, 15, 10], [0, 0, 10, 10], [0, 0, 20, 5]], dtype=float)
    assert best_candidate(boxes, gt) == (2, 1.0)
    k, iou = best_candidate(boxes[[0, 1, 3]], gt)
    assert (k, iou) == (0, 0.5)  # the best is at IoU 0.5: not above 0.5, the sample is not kept
    tied = np.array([[0, 0, 10, 20], [0, 0, 20, 10], [0, 0, 10, 20]], dtype=float)  # all 0.5
    assert best_candidate(tied, gt)[0] == 0


def test_shuffling_relabels_every_permutation():
    for label in range(4):
        for order in itertools.permutations(range(4)):
            pos = permuted_label(np.array(order), label)
            assert order[pos] == label  # the box listed at the new index is the labelled one
    with pytest.raises(ValueError, match="exactly once"):
        permuted_label(np.array([0, 0, 1]), 2)


@pytest.mark.parametrize(
    "text,n,expected",
    [
        ("2", 3, (2, None)),
        ("  '1' ", 3, (1, None)),
        ("Box 12 is best", 13, (12, None)),
        ("The best box is 1, not 0.", 3, (1, None)),
        ("7", 3, (None, "out_of_range")),
        ("three", 3, (None, "no_int_generated")),
        ("", 3, (None, "no_int_generated")),
        ("-1", 3, (1, None)),  # the authors' parser reads digits only
    ],
)
def test_answer_parser(text, n, expected):
    assert parse_answer(text, n) == expected


class _TextEncoder:
    """Stands in for PromptEncoder: the prompt's text instead of its token ids."""

    def prompt_ids(self, text: str) -> str:
        return text


def _listed(text: str) -> list[str]:
    return re.findall(r"\* In box \d+: '[^']*' with xyxy coordinates '(\[[^\]]*\])'", text)


@pytest.mark.parametrize("order,expected_per_sample", [("aug", [1, 2, 3, 4, 5, 5]), ("none", [1] * 6)])
def test_training_prompt_orders_and_their_labels(order, expected_per_sample):
    from types import SimpleNamespace

    from rankopt.grounding.data import Sample
    from rankopt.grounding.expressions import Expression
    from rankopt.grounding.module import Prompts

    rng = np.random.default_rng(0)
    samples = []
    for n in range(1, 7):  # the authors' aug: the proposer's order and min(n - 1, 4) permutations
        boxes = np.sort(rng.uniform(0, 90, (n, 4)), axis=1).round()
        cands = Candidates(boxes, ("bag",) * n, np.linspace(0.9, 0.1, n), "probe")
        label = n // 2
        expr = Expression("the bag", "bag", 0, "only")
        samples.append(Sample(0, expr, (cands,), tuple(boxes[label]), label, 0.9, True))
    fmt = SimpleNamespace(with_score=False, decimals=0)
    items = list(Prompts(samples, _TextEncoder(), fmt, seed=3, order=order))
    per_sample = [sum(item[3] == i for item in items) for i in range(len(samples))]
    assert per_sample == expected_per_sample
    orders_seen = {}
    for text, n, label, i in items:
        listed = _listed(text)
        assert len(listed) == n == samples[i].n_candidates
        # the box listed at the label's position is the labelled box, in every order
        assert listed[label] == format_box(samples[i].boxes[samples[i].label], 0)
        orders_seen.setdefault(i, []).append(listed)
    for i, lists in orders_seen.items():
        assert lists[0] == [format_box(b, 0) for b in samples[i].boxes]  # the proposer's order comes first
    if order == "aug":  # the permutations are drawn, not the identity every time
        assert sum(lists[k] != lists[0] for lists in orders_seen.values() for k in range(1, len(lists))) >= 10
