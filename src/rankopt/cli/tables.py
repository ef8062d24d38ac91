"""What the commands print: the tables of a run, an evaluation, an OOD evaluation."""

from __future__ import annotations

__all__ = ["run_summary", "metric_table", "ood_table", "key_values"]


def run_summary(result: dict, cfg, task) -> str:
    """The test table of a run, with how its weights were selected and tested."""
    sel, test = result["selection"], result["test"]
    if sel is None:
        chosen = "nothing trained (the method fits no prompt)"
    elif sel["split"] is None:
        chosen = f"the last epoch ({sel['epoch']} of {sel['epochs_run']}; no validation split)"
    else:
        chosen = f"epoch {sel['epoch']} of {sel['epochs_run']}, best {sel['split']} {sel['metric']} {sel['value']:.4f}"
    title = f"rankopt {' '.join(task.command)} — {cfg.recipe}"
    width = max([len(k) for k in test] + [6])
    lines = [
        f"\n{title}, run folder {result['run_dir']}",
        f"selected: {chosen}",
        f"test: {task.command_hooks().test_line(result, cfg)}\n",
        f"{'metric'.ljust(width)}  value",
        f"{'-' * width}  ------",
    ]
    lines += [f"{k.ljust(width)}  {v:.4f}" for k, v in test.items() if not k.startswith("n_") and isinstance(v, float)]
    return "\n".join(lines)


def metric_table(summary: dict, source: str, n_ranked: int, similarity: str, ties: str, no_positive: str) -> str:
    """``rankopt evaluate``'s table."""
    metric_items = [(k, v) for k, v in summary.items() if not k.startswith("n_")]
    width = max(len(k) for k, _ in metric_items + [("metric", 0)])
    lines = [
        f"rankopt evaluate — {source}",
        f"{summary['n_queries']} queries, {n_ranked} ranked items each, similarity={similarity}, "
        f"ties={ties}, no_positive={no_positive}",
        "",
        f"{'metric'.ljust(width)}  value",
        f"{'-' * width}  ------",
    ]
    lines += [f"{k.ljust(width)}  {v:.4f}" for k, v in metric_items]
    extra = [f"{k} = {v}" for k, v in summary.items() if k.startswith("n_excluded")]
    lines += ["", "; ".join(extra) + " (queries without a relevant item)"]
    return "\n".join(lines)


def key_values(metrics: dict) -> str:
    """One ``key  value`` line per entry (floats to 4 decimals)."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def ood_table(out: dict, title: str) -> str:
    """``rankopt ood``'s table: every detector's means over the OOD sets, and AUROC per set."""
    results = out["detectors"]
    sets = list(out["n_ood"])
    width = max([len("detector")] + [len(n) for n in results])
    cols = [s[:9] for s in sets]
    head = f"{'detector'.ljust(width)}  AUROC  FPR95-ID  FPR95-OOD  AUPR-In  | AUROC per set: " + "  ".join(
        c.rjust(8) for c in cols
    )
    lines = [
        title,
        f"ID train {out['n_id_train']}, ID test {out['n_id_test']}; OOD: "
        + ", ".join(f"{k} {v}" for k, v in out["n_ood"].items()),
        "",
        head,
        "-" * len(head),
    ]
    for name, r in results.items():
        m = r["mean"]
        lines.append(
            f"{name.ljust(width)}  {m['auroc']:.3f}  {m['fpr95_id']:8.3f}  {m['fpr95_ood']:9.3f}  "
            f"{m['aupr_in']:7.3f}  | " + " " * 15 + "  ".join(f"{r['per_ood'][s]['auroc']:8.3f}" for s in sets)
        )
    lines += [
        "",
        "means over the OOD sets; FPR95-ID: OOD accepted when 95% of ID is (HEAT, most papers); "
        "FPR95-OOD: ID flagged when 95% of OOD is (OpenOOD, pytorch-ood)",
    ]
    lines += [f"skipped {k}: {v}" for k, v in out.get("skipped", {}).items()]
    return "\n".join(lines)
