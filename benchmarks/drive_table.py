"""VaViM / VaVAM's questions in miniature (issue 27): does video pre-training help the action expert,
does width help, and how does the learned policy drive in closed loop?

    python benchmarks/drive_table.py run                    # every variant, seeds 0 1 2
    python benchmarks/drive_table.py run --seeds 0          # one seed
    python benchmarks/drive_table.py table                  # print what was measured

Every run is ``rankopt drive`` through ``rankopt.runs.start_run`` with the packaged recipe
(drive-highway), each seed recording its own episodes. Variants:

* VaVAM — the GPT pre-trained on the episodes' video (VaViM), then the action expert on it, frozen;
* VaVAM, GPT not pre-trained — the same action expert on a randomly initialised, frozen GPT;
* width 64 / 256 — GPT and action expert narrower / wider (the scaling question);

against the constant-velocity policy and the IDM expert (the reference policies every run scores), and
the video model's perplexity against copying the last frame. Rows go to a JSON-lines file as they
finish: the benchmark resumes where it stopped. Thread setting: OMP_WAIT_POLICY=PASSIVE when set by
the caller, and torch's thread count (both recorded in each row).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from jsonl_rows import Rows

from rankopt.config import load_config
from rankopt.runs import start_run

RESULTS = Path(__file__).with_name("results") / "drive.jsonl"
VARIANTS = {
    "VaVAM": [],
    "VaVAM, GPT not pre-trained": ["gpt.pretrained=false"],
    "VaVAM, width 64": ["gpt.width=64", "action.width=32"],
    "VaVAM, width 256": ["gpt.width=256", "action.width=128"],
}


def run(seeds: list[int], variants: list[str]) -> None:
    rows = Rows(RESULTS)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for name in variants:
                if rows.find(variant=name, seed=seed):
                    continue
                cfg = load_config("drive-highway", [f"train.seed={seed}", *VARIANTS[name]], task="world")
                t0 = time.perf_counter()
                out, _ = start_run(cfg, Path(tmp) / f"{name.replace(' ', '').replace(',', '-')}-{seed}", progress=False)
                rows.add(
                    {
                        "variant": name,
                        "seed": seed,
                        "test": out["test"],
                        "constant_velocity": out["constant_velocity"],
                        "expert": out["expert"],
                        "perplexity": out["perplexity"],
                        "copy_last_frame_perplexity": out["copy_last_frame_perplexity"],
                        "tokenizer": out["tokenizer"],
                        "seconds": time.perf_counter() - t0,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                        "threads": torch.get_num_threads(),
                    }
                )


def stat(values: list[float], n_seeds: int, digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    spread = f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.{digits}f}"
    return spread if len(values) >= n_seeds else f"{spread} (n={len(values)})"


def table() -> None:
    rows = list(Rows(RESULTS))
    if not rows:
        print(f"no rows yet in {RESULTS}")
        return
    seeds = sorted({r["seed"] for r in rows})
    n = len(seeds)
    k = next(key for key in rows[0]["test"] if key.startswith("min_ade@") and key != "min_ade@1")
    print(f"mean ± std over seeds {seeds}; minADE in metres on the test episodes; closed loop over the scenarios")
    print(f"| policy | minADE@1 | {k} | collision rate | progress (m) | perplexity | copy-last-frame | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in VARIANTS:
        rs = [r for r in rows if r["variant"] == name]
        if not rs:
            continue
        t = [r["test"] for r in rs]
        print(
            f"| {name} | {stat([x['min_ade@1'] for x in t], n)} | {stat([x[k] for x in t], n)} | "
            f"{stat([x['collision_rate'] for x in t], n)} | {stat([x['progress'] for x in t], n, 1)} | "
            f"{stat([r['perplexity'] for r in rs], n)} | {stat([r['copy_last_frame_perplexity'] for r in rs], n)} | "
            f"{np.mean([r['seconds'] for r in rs]):.0f} |"
        )
    base = [r for r in rows if r["variant"] == "VaVAM"]
    for label, key in (("constant velocity", "constant_velocity"), ("IDM expert", "expert")):
        if base:
            ade = stat([r[key].get("min_ade@1") for r in base], n) if key == "constant_velocity" else "—"
            print(
                f"| {label} | {ade} | — | {stat([r[key]['collision_rate'] for r in base], n)} | "
                f"{stat([r[key]['progress'] for r in base], n, 1)} | — | — | — |"
            )
    print()
    print("Paired by seed:")
    for name in VARIANTS:
        if name != "VaVAM":
            paired_by_seed(rows, "VaVAM", name)


def paired_by_seed(rows: list[dict], a: str, b: str) -> None:
    """b − a for each seed both variants ran (the same seed records the same episodes and scenarios)."""
    pairs = [
        (ra, rb) for ra in rows if ra["variant"] == a for rb in rows if rb["variant"] == b and rb["seed"] == ra["seed"]
    ]
    if not pairs:
        return
    for key, label in (
        ("min_ade@1", "minADE@1 (m)"),
        ("collision_rate", "collision rate"),
        ("progress", "progress (m)"),
    ):
        diffs = [rb["test"][key] - ra["test"][key] for ra, rb in pairs]
        per_seed = ", ".join(f"{d:+.2f}" for d in diffs)
        print(f"- {b} − {a}, {label}: {np.mean(diffs):+.2f} (per seed {per_seed})")


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
