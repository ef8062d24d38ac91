"""What OMP_WAIT_POLICY=PASSIVE costs on a quiet machine and saves on a busy one (issue 28 §5).

    python benchmarks/omp_wait_policy.py            # each job 3×, quiet and beside a busy process

torch's OpenMP threads spin-wait for work by default (OMP_WAIT_POLICY=ACTIVE in effect): fast when the
cores are theirs, up to 100× slower for small-tensor work when another process wants a core. Each of
the CLI's main jobs runs as a fresh process, its wall time the median of 3, with the policy left to the
default and with PASSIVE, on a quiet machine and beside one busy process (a Python loop). Prints a
table of seconds and ratios. Run it with nothing else on the machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANKOPT = str(Path(sys.executable).parent / "rankopt")


def jobs(work: Path) -> dict[str, list[str]]:
    return {
        "evaluate (digits, 1,797 queries)": ["evaluate", "--example", "digits", "--json"],
        "train (Fashion-MNIST, 3,000 images, 1 epoch)": [
            "train",
            "--set",
            "data.train_limit=3000",
            "--set",
            "data.limit=3000",
            "--set",
            "train.epochs=1",
            "--json",
        ],
        "recsys train (example data, 5 epochs)": [
            "recsys",
            "train",
            str(work / "rec"),
            "--epochs",
            "5",
            "--k",
            "10",
            "--json",
        ],
        "ood (a run, 3 detectors, noise)": [
            "ood",
            str(work / "run"),
            "--detectors",
            "msp,mahalanobis,knn",
            "--ood",
            "noise",
            "--json",
        ],
    }


def run(argv: list[str], policy: str | None, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["RANKOPT_OMP_WAIT_POLICY"] = "unset"  # the entry point leaves the policy as given here
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    t0 = time.perf_counter()
    out = subprocess.run([RANKOPT, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([RANKOPT, "recsys", "example", str(work / "rec")], check=True, capture_output=True)
        subprocess.run(
            [
                RANKOPT,
                "train",
                "--set",
                "data.train_limit=3000",
                "--set",
                "data.limit=3000",
                "--set",
                "train.epochs=1",
                "--run-dir",
                str(work / "run"),
            ],
            check=True,
            capture_output=True,
        )
        rows = []
        for name, argv in jobs(work).items():
            if name.startswith("recsys"):
                argv = [*argv, "--run-dir"]
            row = {"job": name}
            for load in ("quiet", "busy"):
                busy = None
                if load == "busy":
                    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    for policy in (None, "PASSIVE"):
                        times = []
                        for rep in range(3):
                            args = (
                                [*argv, str(work / f"r-{load}-{policy}-{rep}")] if name.startswith("recsys") else argv
                            )
                            times.append(run(args, policy, work))
                        row[(load, policy)] = statistics.median(times)
                finally:
                    if busy is not None:
                        busy.kill()
            rows.append(row)
            print(row, file=sys.stderr)
    print(f"\n{os.cpu_count()} cores, torch's default thread count; wall seconds, median of 3 fresh processes\n")
    print("| job | quiet: default | quiet: PASSIVE | ratio | busy: default | busy: PASSIVE | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        q0, q1, b0, b1 = r[("quiet", None)], r[("quiet", "PASSIVE")], r[("busy", None)], r[("busy", "PASSIVE")]
        print(f"| {r['job']} | {q0:.1f} | {q1:.1f} | {q1 / q0:.2f} | {b0:.1f} | {b1:.1f} | {b1 / b0:.2f} |")


if __name__ == "__main__":
    main()
