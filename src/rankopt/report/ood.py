"""The report's OOD section: what `rankopt ood` wrote into a run folder (ood.json, and ood-<backbone>.json
for a frozen packaged backbone), as a table per feature source and the score distributions of the
best detector and of HEAT (ID test against each OOD set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rankopt.report import figures

__all__ = ["ood_sections"]


def ood_sections(run_dir: Path) -> tuple[list[dict], list[str]]:
    """([{title, sets, rows, plots}], notes) for every OOD result file of the run folder."""
    out, notes = [], []
    for path in sorted(Path(run_dir).glob("ood*.json")):
        prefix = path.stem
        try:
            result = json.loads(path.read_text())
            detectors = result["detectors"]
            sets = list(result["n_ood"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            notes.append(f"{path.name} could not be read ({type(err).__name__}: {err}); run rankopt ood again")
            continue
        if not detectors:
            continue
        best_fpr = min(r["mean"]["fpr95_id"] for r in detectors.values())
        rows = [
            {
                "name": n,
                "mean": r["mean"],
                "per_ood": {s: r["per_ood"][s]["auroc"] for s in sets},
                "best": r["mean"]["fpr95_id"] == best_fpr,
            }
            for n, r in detectors.items()
        ]
        plots = []
        scores_path = Path(run_dir) / f"{prefix}_scores.npz"
        if scores_path.is_file():
            best = min(detectors, key=lambda n: detectors[n]["mean"]["fpr95_id"])
            with np.load(scores_path) as scores:
                for name in dict.fromkeys([best] + (["heat"] if "heat" in detectors else [])):
                    if f"{name}/id" in scores.files:
                        plots.append(
                            (
                                f"{name} scores",
                                figures.svg(_distributions(scores, name, sets)),
                                "ID test against each OOD set; larger = more OOD; dashed: the threshold accepting "
                                "95% of ID",
                            )
                        )
        else:
            notes.append(f"No score distributions for {path.name}: {scores_path.name} is missing")
        backbone = result.get("backbone", "model")
        out.append(
            {
                "title": f"features of {'the run’s model' if backbone == 'model' else 'frozen ' + backbone}",
                "file": path.name,
                "sets": sets,
                "rows": rows,
                "plots": plots,
                "n": {"train": result.get("n_id_train"), "test": result.get("n_id_test"), **result["n_ood"]},
                "skipped": result.get("skipped", {}),
            }
        )
    return out, notes


def _distributions(scores, name: str, sets: list[str]):
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    id_scores = scores[f"{name}/id"]
    every = np.concatenate([id_scores] + [scores[f"{name}/{s}"] for s in sets if f"{name}/{s}" in scores.files])
    lo, hi = np.quantile(every, [0.005, 0.995])
    bins = np.linspace(lo, hi, 40)
    ax.hist(np.clip(id_scores, lo, hi), bins=bins, density=True, color="#4c72b0", alpha=0.45, label="ID test")
    for s in sets:
        if f"{name}/{s}" in scores.files:
            ax.hist(
                np.clip(scores[f"{name}/{s}"], lo, hi), bins=bins, density=True, histtype="step", linewidth=1.3, label=s
            )
    ax.axvline(np.quantile(id_scores, 0.95, method="inverted_cdf"), color="#333", linestyle="--", linewidth=1)
    ax.set_xlabel(f"{name} score")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=6)
    return fig
