"""The papers' comparison in miniature, on real data: one model and budget, seven losses, several seeds.

Fashion-MNIST (Debian package dataset-fashion-mnist, or --data-dir), small CNN, 64-d embeddings,
batch 128 with 16 images per class, Adam 1e-3; each loss trained for the same number of epochs on the
same images, the epoch selected on the validation split (10% of each class's training images, carved
before ``--limit`` takes the first N of the rest), then its weights evaluated once on the 10,000 test
images (hit@1, map@r, ap, hap, asi; hap and asi use the 2-level hierarchy). Prints a table of mean ±
std over seeds and the time per epoch.

Usage: python benchmarks/fashion_mnist_table.py [--epochs 2] [--seeds 0,1,2] [--limit N] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from rankopt.config import load_config
from rankopt.runs import start_run

LOSSES = {
    "NormSoftmax": ("normsoftmax", {}),
    "FastAP": ("fastap", {}),
    "Smooth-AP": ("smoothap", {}),
    "BlackBox-AP": ("blackboxap", {}),
    "ROADMAP": ("roadmap", {}),
    "SupRecall": ("suprecall", {}),
    "HAPPIER": ("happier", {}),
}
METRICS = ["hit@1", "map@r", "ap", "hap", "asi"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--losses", default=",".join(LOSSES))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for label in args.losses.split(","):
        name, options = LOSSES[label]
        results, per_epoch = {m: [] for m in METRICS}, []
        for seed in seeds:
            overrides = [
                f"loss.name={name}",
                f"train.epochs={args.epochs}",
                f"train.seed={seed}",
                f"train.metrics={METRICS}",
            ]
            if args.limit:
                overrides.append(f"data.train_limit={args.limit}")
            if args.data_dir:
                overrides.append(f"data.root={args.data_dir}")
            cfg = load_config("fashion-mnist", overrides)
            cfg.loss.options.update(options)
            with tempfile.TemporaryDirectory() as run_dir:
                t0 = time.perf_counter()
                metrics, _ = start_run(cfg, run_dir, progress=False)
                per_epoch.append((time.perf_counter() - t0) / args.epochs)
            test = metrics["test"]
            for m in METRICS:
                results[m].append(test[m])
            print(
                f"# {label} seed {seed}: "
                + ", ".join(f"{m} {test[m]:.4f}" for m in METRICS)
                + f" (epoch {metrics['selection']['epoch']} selected)",
                flush=True,
            )
        rows.append((label, results, statistics.mean(per_epoch)))
    print(
        f"\nFashion-MNIST, small CNN, {args.epochs} epoch(s), seeds {seeds}"
        + (f", {args.limit} training images" if args.limit else "")
    )
    print("\n| loss | " + " | ".join(METRICS) + " | s per epoch, incl. evaluation |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for label, results, sec in rows:
        cells = []
        for m in METRICS:
            vals = results[m]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{100 * statistics.mean(vals):.1f} ± {100 * sd:.1f}")
        print(f"| {label} | " + " | ".join(cells) + f" | {sec:.0f} |")


if __name__ == "__main__":
    main()
