"""Does self-supervised pre-training help the rank loss? Franca's components in miniature (issue 24).

    python benchmarks/ssl_table.py run --dataset fashion-mnist      # every variant, 3 seeds, then fine-tuning
    python benchmarks/ssl_table.py run --dataset mnist-subset
    python benchmarks/ssl_table.py vit                              # CyclicMask vs block masking, RASA (tiny ViT)
    python benchmarks/ssl_table.py table                            # print what was measured

Every run is ``rankopt pretrain`` / ``rankopt train`` through ``rankopt.runs.start_run``, labels unused
in pre-training (they select the epoch on the carved validation split and score the test split). Equal
budget: the same images, epochs, batch and backbone (the small CNN) for every pre-training variant:

* init — the untrained backbone (each run's ``init``: the same seeded initialisation);
* dino + centering, dino + Sinkhorn-Knopp — one DINO head (the baselines);
* nested (projection), nested (slice) — Franca's Matryoshka heads, both readings;
* supervised — ROADMAP on the labels, same backbone and images (the ceiling);

then ROADMAP fine-tuning from each initialisation for the same epochs, and the paired test of each
against fine-tuning from the untrained backbone (per test query map@r, mean over the 3 seeds; a 95%
paired bootstrap interval and a randomisation p-value, rankopt.report.stats). Rows go to a JSON-lines
file as they finish: the benchmark resumes where it stopped. Thread setting: OMP_WAIT_POLICY=PASSIVE
when set by the caller (recorded in each row).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from jsonl_rows import Rows

from rankopt.config import load_config
from rankopt.report.stats import paired_bootstrap_ci, randomization_test
from rankopt.runs import start_run

RESULTS = Path(__file__).with_name("results") / "ssl.jsonl"
SEEDS = (0, 1, 2)
BUDGET = {  # per dataset: pre-training images, epochs; fine-tuning epochs
    "fashion-mnist": {"train_limit": 6000, "epochs": 4, "finetune_epochs": 2},
    "mnist-subset": {"train_limit": None, "epochs": 4, "finetune_epochs": 2},  # its 4,000 training images
}
VARIANTS = {
    "dino + centering": ["head.kind=dino", "loss.targets=centering"],
    "dino + sinkhorn": ["head.kind=dino", "loss.targets=sinkhorn"],
    "nested (projection)": ["head.kind=nested", "head.variant=projection"],
    "nested (slice)": ["head.kind=nested", "head.variant=slice"],
}
METRICS = ("map@r", "hit@1", "knn_acc", "probe_acc")


def per_query(folder) -> dict[int, float]:
    with open(folder.per_query_path) as f:
        return {int(r["query"]): float(r["map@r"]) for r in csv.DictReader(f) if r["map@r"] != ""}


def pretrain(dataset: str, variant: str, seed: int, work: Path) -> dict:
    b = BUDGET[dataset]
    overrides = [f"data.name={dataset}", f"train.seed={seed}", f"train.epochs={b['epochs']}", *VARIANTS[variant]]
    if b["train_limit"]:
        overrides.append(f"data.train_limit={b['train_limit']}")
    else:
        overrides.append("data.train_limit=null")
    cfg = load_config(None, overrides, task="ssl")
    t0 = time.perf_counter()
    result, folder = start_run(cfg, work / f"pre-{dataset}-{variant.replace(' ', '')}-{seed}", progress=False)
    return {"result": result, "folder": folder, "seconds": time.perf_counter() - t0}


def finetune(dataset: str, init: str | None, seed: int, work: Path, tag: str) -> dict:
    b = BUDGET[dataset]
    overrides = [f"data.name={dataset}", f"train.seed={seed}", f"train.epochs={b['finetune_epochs']}"]
    if b["train_limit"]:
        overrides.append(f"data.train_limit={b['train_limit']}")
    if init is not None:
        overrides.append(f"model.weights={init}")
    cfg = load_config("fashion-mnist", overrides)
    result, folder = start_run(cfg, work / f"ft-{dataset}-{tag}-{seed}", progress=False)
    return {"result": result, "folder": folder}


def run(dataset: str) -> None:
    rows = Rows(RESULTS)
    threads = os.environ.get("OMP_WAIT_POLICY", "default")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in SEEDS:
            for variant in VARIANTS:
                if rows.find(dataset=dataset, kind="pretrain", variant=variant, seed=seed) and rows.find(
                    dataset=dataset, kind="finetune", variant=variant, seed=seed
                ):
                    continue
                pre = pretrain(dataset, variant, seed, work)
                r = pre["result"]
                row = {
                    "dataset": dataset,
                    "kind": "pretrain",
                    "variant": variant,
                    "seed": seed,
                    "test": {k: r["test"][k] for k in METRICS},
                    "init": {k: r["init"][k] for k in METRICS},
                    "nested": r.get("nested"),
                    "seconds": pre["seconds"],
                    "omp_wait_policy": threads,
                    "selected_epoch": r["selection"]["epoch"],
                }
                rows.add(row)
                ft = finetune(dataset, str(pre["folder"].path), seed, work, variant.replace(" ", ""))
                rows.add(
                    {
                        "dataset": dataset,
                        "kind": "finetune",
                        "variant": variant,
                        "seed": seed,
                        "test": {k: ft["result"]["test"][k] for k in ("map@r", "hit@1")},
                        "per_query": per_query(ft["folder"]),
                    }
                )

            for tag in ("random init", "supervised"):
                if rows.find(dataset=dataset, kind="finetune", variant=tag, seed=seed):
                    continue
                b = BUDGET[dataset]
                epochs = b["finetune_epochs"] if tag == "random init" else b["epochs"] + b["finetune_epochs"]
                overrides = [f"data.name={dataset}", f"train.seed={seed}", f"train.epochs={epochs}"]
                if b["train_limit"]:
                    overrides.append(f"data.train_limit={b['train_limit']}")
                cfg = load_config("fashion-mnist", overrides)
                result, folder = start_run(cfg, work / f"ft-{dataset}-{tag.replace(' ', '')}-{seed}", progress=False)
                rows.add(
                    {
                        "dataset": dataset,
                        "kind": "finetune",
                        "variant": tag,
                        "seed": seed,
                        "test": {k: result["test"][k] for k in ("map@r", "hit@1")},
                        "per_query": per_query(folder),
                    }
                )


def vit() -> None:
    """CyclicMask (Franca's) vs plain block masking on the tiny ViT, and RASA's position-probe R²."""
    rows = Rows(RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in SEEDS:
            for masking in ("cyclic", "block"):
                if rows.find(kind="vit", masking=masking, seed=seed):
                    continue
                cfg = load_config(
                    "pretrain-vit",
                    [f"train.seed={seed}", f"loss.masking={masking}", "data.train_limit=5000", "train.epochs=3"],
                    task="ssl",
                )
                t0 = time.perf_counter()
                result, _ = start_run(cfg, Path(tmp) / f"vit-{masking}-{seed}", progress=False)
                rows.add(
                    {
                        "kind": "vit",
                        "masking": masking,
                        "seed": seed,
                        "test": {k: result["test"][k] for k in METRICS},
                        "init": {k: result["init"][k] for k in METRICS},
                        "rasa": result.get("rasa"),
                        "seconds": time.perf_counter() - t0,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                    }
                )


def stat(values: list[float]) -> str:
    spread = f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}"
    return spread if len(values) >= len(SEEDS) else f"{spread} (n={len(values)})"  # a row still short of seeds


def table() -> None:
    rows = Rows(RESULTS)
    for dataset in BUDGET:
        pre = [r for r in rows if r.get("dataset") == dataset and r["kind"] == "pretrain"]
        if not pre:
            continue
        b = BUDGET[dataset]
        print(
            f"\n### {dataset}: frozen backbone features, test split (seeds {sorted({r['seed'] for r in pre})}; "
            f"{b['train_limit'] or 'all'} training images, {b['epochs']} epochs)\n"
        )
        print("| initialisation | " + " | ".join(METRICS) + " | s/run |")
        print("|---|" + "---|" * (len(METRICS) + 1))
        inits = [r["init"] for r in pre if r["variant"] == next(iter(VARIANTS))]
        print("| untrained backbone | " + " | ".join(stat([i[m] for i in inits]) for m in METRICS) + " | |")
        for variant in VARIANTS:
            rs = [r for r in pre if r["variant"] == variant]
            if rs:
                print(
                    f"| {variant} | "
                    + " | ".join(stat([r["test"][m] for r in rs]) for m in METRICS)
                    + f" | {np.mean([r['seconds'] for r in rs]):.0f} |"
                )
        slices = [r["nested"] for r in pre if r["variant"] == "nested (slice)" and r.get("nested")]
        if slices:
            dims = [n["dim"] for n in slices[0]]
            print(
                "\nnested (slice), test map@r with the first d dimensions: "
                + ", ".join(f"d={d}: {stat([s[k]['map@r'] for s in slices])}" for k, d in enumerate(dims))
            )
        ft = [r for r in rows if r.get("dataset") == dataset and r["kind"] == "finetune"]
        base = {r["seed"]: r for r in ft if r["variant"] == "random init"}
        if not ft:
            continue
        print(f"\n### {dataset}: ROADMAP fine-tuning ({b['finetune_epochs']} epochs) from each initialisation\n")
        print("| from | test map@r | test hit@1 | map@r − random init | 95% paired interval | randomisation p |")
        print("|---|---|---|---|---|---|")
        for variant in ["random init", *VARIANTS, "supervised"]:
            rs = [r for r in ft if r["variant"] == variant]
            if not rs:
                continue
            diff = interval = p = ""
            seeds = [r["seed"] for r in rs if r["seed"] in base]
            if variant != "random init" and seeds:
                queries = sorted(set.intersection(*[set(map(int, r["per_query"])) for r in rs + list(base.values())]))
                a = np.array([np.mean([base[s]["per_query"][str(q)] for s in seeds]) for q in queries])
                bb = np.array([np.mean([r["per_query"][str(q)] for r in rs if r["seed"] in seeds]) for q in queries])
                lo, hi = paired_bootstrap_ci(a, bb)
                diff, interval = f"{np.mean(bb - a):+.4f}", f"[{lo:+.4f}, {hi:+.4f}]"
                p = f"{randomization_test(a, bb):.3g}"
            label = "supervised (ROADMAP, pre-training epochs too)" if variant == "supervised" else variant
            print(
                f"| {label} | {stat([r['test']['map@r'] for r in rs])} | {stat([r['test']['hit@1'] for r in rs])} | "
                f"{diff} | {interval} | {p} |"
            )
    vits = [r for r in rows if r["kind"] == "vit"]
    if vits:
        print("\n### tiny ViT (5,000 images, 3 epochs): iBOT masking, RASA\n")
        print("| masking | map@r | knn_acc | untrained map@r | position R² before RASA | after RASA |")
        print("|---|---|---|---|---|---|")
        for masking in ("cyclic", "block"):
            rs = [r for r in vits if r["masking"] == masking]
            if rs:
                cells = [
                    stat([r["test"]["map@r"] for r in rs]),
                    stat([r["test"]["knn_acc"] for r in rs]),
                    stat([r["init"]["map@r"] for r in rs]),
                    stat([r["rasa"]["position_r2_before"] for r in rs]),
                    stat([r["rasa"]["position_r2_after"] for r in rs]),
                ]
                print(f"| {masking} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", choices=sorted(BUDGET), default="fashion-mnist")
    sub.add_parser("vit")
    sub.add_parser("table")
    args = parser.parse_args()
    if args.command == "run":
        run(args.dataset)
    elif args.command == "vit":
        vit()
    table()


if __name__ == "__main__":
    main()
