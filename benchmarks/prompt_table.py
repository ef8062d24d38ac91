"""GalLoP's two claims in miniature (issue 25): few-shot accuracy, and OOD detection with GL-MCM.

    python benchmarks/prompt_table.py run --dataset fashion-mnist   # methods × shots × 3 seeds
    python benchmarks/prompt_table.py run --dataset mnist-subset
    python benchmarks/prompt_table.py ood                           # near (held-out classes) and far OOD
    python benchmarks/prompt_table.py table                         # print what was measured

Every run is ``rankopt prompt`` through ``rankopt.runs.start_run`` on the offline towers (EfficientNet-
Lite0 at 112 px + MiniLM, aligned on ImageNet's class names), the packaged recipe's settings; the shots
are drawn by each seed from the training split, the whole test split is scored (its tower features
computed once and shared by every run: model.feature_cache). Methods: zero-shot (the template; no
training, one row), a linear probe on the shots' global features, CoOp (one global prompt), GalLoP, and
at 16 shots GalLoP's ablations (no prompt dropout, a single k, no local prompts). Accuracy: mean ± std
over the seeds, and the paired test of GalLoP against each other method (per test image, the share of
seeds it is right; a 95% paired bootstrap interval and a randomisation p-value, rankopt.report.stats).

OOD: GalLoP and zero-shot runs on Fashion-MNIST's first 6 classes, the 4 others held out (near OOD),
MNIST and textures (far); MCM and GL-MCM of both, and HEAT and k-NN on the same global features.
Rows go to a JSON-lines file as they finish: the benchmark resumes where it stopped. Thread setting:
OMP_WAIT_POLICY=PASSIVE when set by the caller (recorded in each row).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from jsonl_rows import Rows

from rankopt.config import load_config
from rankopt.report.stats import paired_bootstrap_ci, randomization_test
from rankopt.runs import start_run

RESULTS = Path(__file__).with_name("results") / "prompts.jsonl"
SEEDS = (0, 1, 2)
SHOTS = (1, 4, 16)
METHODS = {
    "linear probe": ["prompts.method=linear_probe"],
    "CoOp": ["prompts.method=coop"],
    "GalLoP": [],
}
ABLATIONS = {  # at 16 shots
    "GalLoP, no dropout": ["prompts.dropout=0"],
    "GalLoP, single k (4)": ["prompts.local_k=[4]"],
    "GalLoP, no local prompts": ["prompts.n_local=0"],
}
CACHE = Path(tempfile.gettempdir()) / "rankopt-prompt-bench-features"
OOD_CLASSES = [0, 1, 2, 3, 4, 5]
OOD_SETS = ["heldout", "mnist", "textures"]
OOD_DETECTORS = ["mcm", "gl_mcm", "knn", "heat"]


def one_run(dataset: str, overrides: list[str], seed: int, work: Path) -> tuple[dict, Path, float]:
    cfg = load_config(
        None,
        [f"data.name={dataset}", f"train.seed={seed}", f"model.feature_cache={CACHE}", *overrides],
        task="prompts",
    )
    start = time.perf_counter()
    result, folder = start_run(cfg, work / f"run-{len(list(work.iterdir()))}", progress=False)
    return result, folder.path, time.perf_counter() - start


def correct_bits(run: Path) -> str:
    with open(run / "test_per_query.csv") as f:
        return "".join(row["top1"] for row in csv.DictReader(f))


def run(dataset: str) -> None:
    rows = Rows(RESULTS)
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    plan = [("zero-shot", 0, 0, ["prompts.method=zero_shot"])]
    for seed in SEEDS:
        for shots in SHOTS:
            plan += [(name, shots, seed, extra) for name, extra in METHODS.items()]
        plan += [(name, 16, seed, extra) for name, extra in ABLATIONS.items()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for variant, shots, seed, extra in plan:
            if rows.find(kind="accuracy", dataset=dataset, variant=variant, shots=shots, seed=seed):
                continue
            result, folder, seconds = one_run(dataset, [f"data.shots={max(shots, 1)}", *extra], seed, work)
            row = {
                "kind": "accuracy",
                "dataset": dataset,
                "variant": variant,
                "shots": shots,
                "seed": seed,
                "top1": result["test"]["top1"],
                "top1_global": result["test"].get("top1_global"),
                "top1_local": result["test"].get("top1_local"),
                "zero_shot": result["zero_shot"]["top1"],
                "correct": correct_bits(folder),
                "seconds": round(seconds, 1),
                "omp_wait_policy": policy,
            }
            rows.add(row)
            print(f"{dataset} {variant} {shots}-shot seed {seed}: top1 {row['top1']:.4f} ({seconds:.0f} s)", flush=True)


def ood() -> None:
    from rankopt.ood.run import ood_run_folder

    rows = Rows(RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plan = [("zero-shot", 0, ["prompts.method=zero_shot"])] + [("GalLoP", s, []) for s in SEEDS]
        for variant, seed, extra in plan:
            if rows.find(kind="ood", variant=variant, seed=seed):
                continue
            classes = f"data.classes=[{', '.join(map(str, OOD_CLASSES))}]"
            _, folder, _ = one_run("fashion-mnist", [classes, *extra], seed, work)
            start = time.perf_counter()
            out = ood_run_folder(folder, OOD_SETS, OOD_DETECTORS, seed=seed)
            row = {
                "kind": "ood",
                "variant": variant,
                "seed": seed,
                "detectors": {d: v["per_ood"] for d, v in out["detectors"].items()},
                "seconds": round(time.perf_counter() - start, 1),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            }
            rows.add(row)
            print(f"ood {variant} seed {seed}: {json.dumps({d: v['mean'] for d, v in out['detectors'].items()})}")


def _mean_std(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * (np.std(values, ddof=1) if len(values) > 1 else 0):.1f}"


def table() -> None:
    rows = Rows(RESULTS)
    for dataset in sorted({r["dataset"] for r in rows if r["kind"] == "accuracy"}):
        acc = [r for r in rows if r["kind"] == "accuracy" and r["dataset"] == dataset]
        zero = next((r for r in acc if r["variant"] == "zero-shot"), None)
        print(f"\n### {dataset}: test top-1 (%), mean ± std over seeds {sorted({r['seed'] for r in acc})}")
        if zero:
            print(f"\nzero-shot (the template, no training): {100 * zero['top1']:.1f}\n")
        print("| method | " + " | ".join(f"{s} shots" for s in SHOTS) + " |")
        print("|---|" + "---|" * len(SHOTS))
        for variant in list(METHODS) + list(ABLATIONS):
            cells = []
            for shots in SHOTS:
                vals = [r["top1"] for r in acc if r["variant"] == variant and r["shots"] == shots]
                cells.append(_mean_std(vals) + f" (n={len(vals)})" if vals else "")
            print(f"| {variant} | " + " | ".join(cells) + " |")
        print("\nGalLoP − other, paired over test images (per image: the share of seeds it is right):\n")
        print("| shots | other | difference (points) | 95% interval | randomisation p |")
        print("|---|---|---|---|---|")
        for shots in SHOTS:
            mine = _per_image(acc, "GalLoP", shots)
            if mine is None:
                continue
            others = list(METHODS) + (list(ABLATIONS) if shots == 16 else []) + ["zero-shot"]
            for other in others:
                theirs = _per_image(acc, other, 0 if other == "zero-shot" else shots)
                if other == "GalLoP" or theirs is None:
                    continue
                lo, hi = paired_bootstrap_ci(theirs, mine)  # of mean(mine − theirs)
                p = randomization_test(theirs, mine)
                print(
                    f"| {shots} | {other} | {100 * (mine.mean() - theirs.mean()):+.1f} | "
                    f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {p:.4f} |"
                )
        seconds = [r["seconds"] for r in acc if r["variant"] == "GalLoP" and r["shots"] == 16]
        if seconds:
            print(
                f"\nGalLoP 16-shot run: {np.mean(seconds):.0f} s (test features shared; "
                f"OMP_WAIT_POLICY={acc[0]['omp_wait_policy']})"
            )
    ood_rows = [r for r in rows if r["kind"] == "ood"]
    if ood_rows:
        print("\n### OOD: Fashion-MNIST classes 0-5 in distribution, 16 shots; FPR95 (ID-accepting) / AUROC, %")
        print("\n| scores | " + " | ".join(OOD_SETS) + " |")
        print("|---|" + "---|" * len(OOD_SETS))
        for variant in ("zero-shot", "GalLoP"):
            rs = [r for r in ood_rows if r["variant"] == variant]
            for det in OOD_DETECTORS:
                if variant == "zero-shot" and det in ("knn", "heat"):
                    continue  # the same global features as GalLoP's: one row each, below
                label = f"{variant} {det.upper().replace('_', '-')}" if det in ("mcm", "gl_mcm") else det.upper()
                cells = []
                for s in OOD_SETS:
                    f = [r["detectors"][det][s]["fpr95_id"] for r in rs if det in r["detectors"]]
                    a = [r["detectors"][det][s]["auroc"] for r in rs if det in r["detectors"]]
                    cells.append(f"{100 * np.mean(f):.1f} / {100 * np.mean(a):.1f}" if f else "")
                print(f"| {label} (n={len(rs)}) | " + " | ".join(cells) + " |")


def _per_image(acc: list[dict], variant: str, shots: int) -> np.ndarray | None:
    rs = [r for r in acc if r["variant"] == variant and r["shots"] == shots]
    if not rs:
        return None
    return np.mean([[c == "1" for c in r["correct"]] for r in rs], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist-subset"))
    sub.add_parser("ood")
    sub.add_parser("table")
    args = parser.parse_args()
    if args.command == "run":
        run(args.dataset)
    elif args.command == "ood":
        ood()
    else:
        table()


if __name__ == "__main__":
    main()
