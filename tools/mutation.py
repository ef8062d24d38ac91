"""Mutation score of rankopt's core, per area, with mutmut (pinned: 3.8.x). Not in CI: run it when a
core module changes.

    .venv/bin/pip install 'mutmut==3.8.*'
    .venv/bin/python tools/mutation.py                 # a seeded sample of 40 mutants per area, ~30 min on 2 cores
    .venv/bin/python tools/mutation.py --per-area 0    # every mutant (hours)

Areas and the code they cover are those of ``[tool.mutmut]`` in pyproject.toml (metrics/, losses/,
search.py + relevance.py, recsys/evaluation.py, train/). mutmut generates every mutant of those files,
traces which tests run each function, and runs only those tests against each mutant (``-x``: the
first failure kills it). Sampling: ``--per-area`` mutants drawn uniformly (seeded) from each area; the
score is killed / sampled with a 95% Wilson interval, so a 40-mutant sample bounds the true score to
about ±12 points. Surviving mutants are listed at the end (``mutmut show NAME`` shows the change): a
survivor is either a missing test or an equivalent mutant — record the equivalent ones in the README.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AREAS = {  # area → mutant-name prefixes (mutmut names mutants module.x_function__mutmut_N)
    "metrics": ("rankopt.metrics.",),
    "losses": ("rankopt.losses.",),
    "search + relevance": ("rankopt.search.", "rankopt.relevance."),
    "recsys evaluation": ("rankopt.recsys.evaluation.",),
    "train": ("rankopt.train.",),
}
TARGET = {"metrics": 90, "losses": 90, "search + relevance": 90, "recsys evaluation": 90, "train": 80}
KILLED = {"killed", "timeout", "caught by type check"}


def mutmut(*args: str, capture: bool = True) -> str:
    cmd = [str(Path(sys.executable).parent / "mutmut"), *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=capture, text=True)
    if out.returncode not in (0, 1):  # mutmut returns 1 when mutants survive
        raise SystemExit(
            f"{' '.join(cmd[:3])} failed ({out.returncode}):\n{(out.stdout or '')[-3000:]}{(out.stderr or '')[-3000:]}"
        )
    return out.stdout or ""


def generate() -> None:
    """mutmut's own generation step (its `run` does it before running anything)."""
    from mutmut import __main__ as mm

    mm.set_mutant_under_test("mutant_generation")
    Path(ROOT / "mutants").mkdir(exist_ok=True)
    import os

    os.chdir(ROOT)
    mm.copy_src_dir()
    mm.copy_also_copy_files()
    mm.setup_source_paths()
    mm.store_lines_covered_by_tests()
    mm.create_mutants(2)
    # stats of an earlier generation would be half-invalidated by `run`: collect them afresh
    (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def area_of(name: str) -> str | None:
    return next((a for a, prefixes in AREAS.items() if name.startswith(prefixes)), None)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-area", type=int, default=40, help="mutants sampled per area (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--areas", nargs="+", choices=list(AREAS), default=list(AREAS))
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only print the table of the same sample from the results so far (e.g. of an interrupted run)",
    )
    args = parser.parse_args()
    t0 = time.time()
    # Always generated afresh: mutmut drops the test traces of functions it has no hash for, so traces kept
    # from a stopped run came back empty (every mutant "no tests", a 0% score).
    if not args.report:
        generate()
        print(f"mutants generated ({time.time() - t0:.0f} s); collecting which tests run each function ...", flush=True)
    estimates = mutmut("print-time-estimates")  # runs the test selection once, traced (cached afterwards)
    names = re.findall(r"^(?:<no tests>|\d+ms) (\S+)$", estimates, flags=re.M)
    by_area: dict[str, list[str]] = {a: [] for a in args.areas}
    for name in names:
        area = area_of(name)
        if area in by_area:
            by_area[area].append(name)
    rng = random.Random(args.seed)
    sample = {
        a: (sorted(v) if not args.per_area or len(v) <= args.per_area else sorted(rng.sample(sorted(v), args.per_area)))
        for a, v in by_area.items()
    }
    chosen = [n for v in sample.values() for n in v]
    if not args.report:
        print(f"{len(names)} mutants in all; running {len(chosen)} ({time.time() - t0:.0f} s so far) ...", flush=True)
        mutmut("run", "--max-children", str(args.jobs), *chosen)
    status = dict(re.findall(r"^\s+(\S+): (.+)$", mutmut("results", "--all", "true"), flags=re.M))
    checked = {status[n] for n in chosen if n in status and status[n] != "not checked"}
    if checked == {"no tests"}:
        raise SystemExit(
            "no sampled mutant has a test that runs it: mutmut's test traces are missing "
            "(mutants/mutmut-stats.json); rerun without --report to generate and trace afresh"
        )
    print("\n| area | mutants | sampled | killed | survived | no test | score | 95% interval | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    survivors = []
    for area, picked in sample.items():
        states = [status.get(n, "not checked") for n in picked]
        killed = sum(s in KILLED for s in states)
        no_test = sum(s == "no tests" for s in states)
        unchecked = sum(s == "not checked" for s in states)
        picked = [n for n, s in zip(picked, states) if s != "not checked"]  # an interrupted run: what was checked
        states = [s for s in states if s != "not checked"]
        survivors += [(area, n, s) for n, s in zip(picked, states) if s not in KILLED]
        lo, hi = wilson(killed, len(picked))
        score = 100 * killed / max(1, len(picked))
        print(
            f"| {area} | {len(by_area[area])} | {len(picked)}{f' (+{unchecked} unchecked)' if unchecked else ''} | "
            f"{killed} | "
            f"{len(picked) - killed - no_test} | {no_test} | {score:.0f}% | {100 * lo:.0f}–{100 * hi:.0f}% | "
            f"≥{TARGET[area]}% |"
        )
    print(f"\n{len(chosen)} mutants, {(time.time() - t0) / 60:.1f} min. Not killed (`mutmut show NAME`):")
    for area, name, state in survivors:
        print(f"  [{area}] {name}: {state}")


if __name__ == "__main__":
    main()
