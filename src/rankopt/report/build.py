"""Reports: the page of one run or embeddings file, and the comparison of runs on the same queries.
Numbers come from rankopt.metrics and rankopt.report.stats; plots from rankopt.report.figures; the
HTML from the Jinja2 templates next to this module (self-contained: no request of any kind)."""

from __future__ import annotations

import logging
import math
from itertools import combinations
from pathlib import Path

import numpy as np

from rankopt.report import figures
from rankopt.report.sources import Source, load_source
from rankopt.report.stats import bootstrap_ci, paired_bootstrap_ci, randomization_test

__all__ = ["report", "compare", "render"]

log = logging.getLogger(__name__)

GALLERY_QUERIES = 6  # sampled queries shown, and as many of the worst by AP
GALLERY_DEPTH = 8  # results shown per query
PR_QUERIES = 1000  # queries sampled for the precision-recall curve


def report(path, gallery=None, output=None, seed: int = 0, progress=None) -> tuple[str, dict]:
    """(HTML, summary) of one run folder or embeddings .npz; written to ``output`` if given."""
    src = load_source(path, gallery, progress=progress)
    ctx = {"title": f"rankopt report — {src.title}", "source": src, "path": str(src.path), "kind": src.kind}
    ctx["table"] = _metric_table(src, seed)
    sections = []
    first = "ap" if "ap" in src.per_query else next(iter(src.per_query))
    sections.append(
        (
            "Per-query " + first,
            figures.svg(figures.histogram(src.per_query[first], f"{first} per query")),
            f"{int(np.sum(~np.isnan(src.per_query[first])))} queries with a relevant item",
        )
    )
    if src.retrieval is not None:
        sections += _retrieval_figures(src, seed)
        ctx["gallery"] = _gallery(src, seed)
    if src.kind == "recommendation":
        sections += _recommendation_figures(src, seed)
    sections += src.sections
    if src.history:
        sections.append(("Training", _history_figure(src), _selection_text(src)))
    ctx["sections"] = sections
    ctx["ood"] = []
    if src.kind == "retrieval":
        from rankopt.report.ood import ood_sections

        ctx["ood"], notes = ood_sections(src.path)
        src.notes.extend(notes)
    html = render("report.html.j2", ctx)
    if output is not None:
        _write(output, html)
    summary = {
        "path": str(src.path),
        "kind": src.kind,
        "metrics": {r["name"]: {"value": r["value"], "ci": [r["low"], r["high"]]} for r in ctx["table"]},
    }
    if ctx["ood"]:
        summary["ood"] = {o["file"]: {r["name"]: r["mean"] for r in o["rows"]} for o in ctx["ood"]}
    return html, summary


def compare(paths, output=None, seed: int = 0, n_resamples: int = 10000) -> tuple[str, dict]:
    """(HTML, summary) of runs side by side on the same test queries: per metric the means, and for
    every pair the difference with a paired bootstrap 95% interval and a randomisation-test p-value."""
    if len(paths) < 2:
        raise ValueError("a comparison needs at least two runs")
    sources = [load_source(p, with_rankings=False) for p in paths]
    _check_same_queries(sources)
    names = [m for m in sources[0].per_query if all(m in s.per_query for s in sources[1:])]
    if not names:
        raise ValueError("the runs share no metric")
    runs = [
        {
            "label": chr(ord("A") + i),
            "title": s.title,
            "path": str(s.path),
            "metrics": {m: float(np.nanmean(s.per_query[m])) for m in names},
        }
        for i, s in enumerate(sources)
    ]
    pairs = []
    for i, j in combinations(range(len(sources)), 2):
        for m in names:
            a, b = sources[i].per_query[m], sources[j].per_query[m]
            low, high = paired_bootstrap_ci(a, b, seed=seed)
            pairs.append(
                {
                    "a": runs[i]["label"],
                    "b": runs[j]["label"],
                    "metric": m,
                    "diff": float(np.nanmean(b - a)),
                    "low": low,
                    "high": high,
                    "p": randomization_test(a, b, n_resamples=n_resamples, seed=seed),
                }
            )
    plots = []
    first = "ap" if "ap" in names else names[0]
    plots.append((f"{first} per query", _overlay_histograms(sources, runs, first)))
    if all(s.history for s in sources):
        plots.append(("Training", _overlay_history(sources, runs)))
    ctx = {
        "title": "rankopt comparison",
        "runs": runs,
        "names": names,
        "pairs": pairs,
        "plots": plots,
        "n_queries": len(sources[0].query_ids),
        "n_resamples": n_resamples,
    }
    html = render("compare.html.j2", ctx)
    if output is not None:
        _write(output, html)
    return html, {"runs": runs, "pairs": pairs, "n_queries": len(sources[0].query_ids)}


def render(template: str, ctx: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rankopt.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
    return env.get_template(template).render(**ctx)


def _write(output, html: str) -> None:
    from rankopt.atomic import atomic_write_text

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, html)


def _metric_table(src: Source, seed: int) -> list[dict]:
    rows = []
    for name, values in src.per_query.items():
        has = ~np.isnan(values)
        value = src.metrics.get(name, float(np.nanmean(values)) if has.any() else float("nan"))
        low, high = bootstrap_ci(values, seed=seed) if has.any() else (float("nan"), float("nan"))
        rows.append({"name": name, "value": value, "low": low, "high": high, "n": int(has.sum())})
    return rows


# retrieval ---------------------------------------------------------------------------------------
def _ranked(view, rows: np.ndarray, depth: int | None):
    """Scores and order of the gallery for the given query rows (cosine, self removed)."""
    import torch

    q = torch.nn.functional.normalize(torch.from_numpy(view.queries[rows]).float(), dim=1)
    gal = view.queries if view.gallery is None else view.gallery
    g = torch.nn.functional.normalize(torch.from_numpy(gal).float(), dim=1)
    s = q @ g.T
    if view.gallery is None:
        s[torch.arange(len(rows)), torch.from_numpy(rows)] = float("-inf")
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    if depth is not None:
        order = order[:, :depth]
    return order.numpy()


def _levels(view, rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Shared label columns of each ranked item with its query: (rows, depth)."""
    import torch

    from rankopt.relevance import gathered_levels

    g_lab = view.query_labels if view.gallery_labels is None else view.gallery_labels
    return gathered_levels(
        torch.from_numpy(view.query_labels[rows]), torch.from_numpy(g_lab), torch.from_numpy(order)
    ).numpy()


def _retrieval_figures(src: Source, seed: int) -> list[tuple[str, str, str]]:
    from rankopt.metrics import evaluate

    view = src.retrieval
    n_levels = view.query_labels.shape[1]
    out = []
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(view.queries), size=min(PR_QUERIES, len(view.queries)), replace=False))
    order = _ranked(view, rows, None)
    rel = _levels(view, rows, order) >= n_levels
    if view.gallery is None:
        rel[:, -1] = False  # the query itself, ranked last at -inf
    n_rel = rel.sum(axis=1)
    keep = n_rel > 0
    hits = np.cumsum(rel[keep], axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    recall = hits / n_rel[keep][:, None]
    grid = np.linspace(0, 1, 21)
    # interpolated precision: the best precision at any recall >= r, averaged over queries
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    interp = np.stack([np.where(recall >= r, best_after, 0).max(axis=1) for r in grid], axis=1).mean(axis=0)
    out.append(
        (
            "Precision–recall",
            figures.svg(figures.lines({"interpolated": (grid, interp)}, "recall", "precision")),
            f"averaged over {int(keep.sum())} sampled queries (finest label relevant)",
        )
    )
    gal = view.queries if view.gallery is None else view.gallery
    n_ranked = len(gal) - (1 if view.gallery is None else 0)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000) if k <= n_ranked]
    names = [f"hit@{k}" for k in ks] + [f"recall@{k}" for k in ks]
    res = evaluate(view.queries, view.query_labels, view.gallery, view.gallery_labels, metrics=names)
    out.append(
        (
            "Hit@k and recall@k",
            figures.svg(
                figures.lines(
                    {"hit@k": (ks, [res[f"hit@{k}"] for k in ks]), "recall@k": (ks, [res[f"recall@{k}"] for k in ks])},
                    "k",
                    "mean over queries",
                    logx=True,
                )
            ),
            "exact, every query, expected ties",
        )
    )
    if n_levels > 1:
        level_names = [f"ap/level{lvl}" for lvl in range(1, n_levels + 1)]
        res = evaluate(view.queries, view.query_labels, view.gallery, view.gallery_labels, metrics=level_names)
        out.append(
            (
                "AP per relevance level",
                figures.svg(
                    figures.bars(
                        [f"≥ {lvl} shared labels" for lvl in range(1, n_levels + 1)],
                        [res[n] for n in level_names],
                        "AP",
                    )
                ),
                "level L: same finest label; level 1: same coarsest label",
            )
        )
    return out


def _gallery(src: Source, seed: int) -> list[dict]:
    view = src.retrieval
    n_levels = view.query_labels.shape[1]
    rng = np.random.default_rng(seed + 1)
    sample = np.sort(rng.choice(len(view.queries), size=min(GALLERY_QUERIES, len(view.queries)), replace=False))
    ap = src.per_query.get("ap")
    worst = np.array([], dtype=np.int64)
    if ap is not None:
        scored = np.flatnonzero(~np.isnan(ap))
        worst = scored[np.argsort(ap[scored], kind="stable")[:GALLERY_QUERIES]]
    rows = np.concatenate([sample, worst]).astype(np.int64)
    depth = min(
        GALLERY_DEPTH, (len(view.queries) if view.gallery is None else len(view.gallery)) - (view.gallery is None)
    )
    order = _ranked(view, rows, depth)
    lv = _levels(view, rows, order)
    items = view.images if view.gallery is None else view.gallery_images
    out = []
    for n, (row, ranked, levels) in enumerate(zip(rows, order, lv)):
        results = [
            {
                "index": int(i),
                "label": _label(view, i),
                "relevance": "exact" if lvl >= n_levels else ("super" if lvl > 0 else "none"),
                "image": _image(items, i),
            }
            for i, lvl in zip(ranked, levels)
        ]
        out.append(
            {
                "group": "sample" if n < len(sample) else "worst",
                "query": int(row),
                "label": int(view.query_labels[row, 0]),
                "image": _image(view.images, row),
                "ap": None if ap is None else float(ap[row]),
                "results": results,
            }
        )
    return out


def _label(view, i: int) -> int:
    lab = view.query_labels if view.gallery_labels is None else view.gallery_labels
    return int(lab[i, 0])


def _image(dataset, i) -> str | None:
    if dataset is None:
        return None
    return figures.thumbnail(dataset[int(i)][0])


# recommendation ----------------------------------------------------------------------------------
def _recommendation_figures(src: Source, seed: int) -> list[tuple[str, str, str]]:
    out = []
    families: dict[str, list[tuple[int, float]]] = {}
    for name, value in src.metrics.items():
        if "@" in name:
            family, k = name.split("@", 1)
            if k.isdigit():
                families.setdefault(family, []).append((int(k), value))
    series = {f: tuple(zip(*sorted(v))) for f, v in families.items() if len(v) > 1}
    if series:
        out.append(("Metrics at every cut-off", figures.svg(figures.lines(series, "K", "mean over users")), ""))
    ndcg = sorted((n for n in src.per_query if n.startswith("ndcg@")), key=lambda n: int(n.split("@")[1]))
    if src.user_activity is not None and ndcg:
        name = "ndcg@20" if "ndcg@20" in ndcg else ndcg[-1]
        edges = np.unique(np.quantile(src.user_activity, [0, 0.2, 0.4, 0.6, 0.8, 1.0]))
        bucket = np.clip(np.searchsorted(edges, src.user_activity, side="right") - 1, 0, len(edges) - 2)
        labels, values, errors = [], [], []
        for b in range(len(edges) - 1):
            v = src.per_query[name][bucket == b]
            if np.isnan(v).all():
                continue
            labels.append(f"{int(edges[b])}–{int(edges[b + 1])}")
            values.append(float(np.nanmean(v)))
            errors.append(bootstrap_ci(v, seed=seed))
        out.append(
            (
                f"{name} by user activity",
                figures.svg(figures.bars(labels, values, name, errors)),
                "training interactions per user, in quintiles; 95% bootstrap intervals",
            )
        )
    return out


# history -----------------------------------------------------------------------------------------
def _history_figure(src: Source) -> str:
    h = src.history
    loss = [(e["epoch"], e["loss"]) for e in h if "loss" in e]
    metric = (src.selection or {}).get("metric")
    valid = [(e["epoch"], e[f"valid/{metric}"]) for e in h if metric and f"valid/{metric}" in e]
    epoch = (src.selection or {}).get("epoch")
    fig = figures.training(loss, valid, f"valid {metric}", mark_x=epoch)
    return figures.svg(fig)


def _selection_text(src: Source) -> str:
    s = src.selection or {}
    if "epoch" not in s:
        return ""
    return (
        f"selected epoch {s['epoch']} of {s.get('epochs_run', '?')} on {s.get('split', 'valid')} {s.get('metric', '')}"
    )


# comparison --------------------------------------------------------------------------------------
def _check_same_queries(sources: list[Source]) -> None:
    first = sources[0]
    for s in sources[1:]:
        if s.kind != first.kind:
            raise ValueError(f"cannot compare a {first.kind} run with a {s.kind} run")
        if len(s.query_ids) != len(first.query_ids) or not np.array_equal(s.query_ids, first.query_ids):
            raise ValueError(
                f"{s.path} was tested on other queries than {first.path} ({len(s.query_ids)} vs "
                f"{len(first.query_ids)}): a paired comparison needs the same test queries"
            )
        data_a, data_b = first.config.get("data", {}), s.config.get("data", {})
        if data_a.get("name") != data_b.get("name"):
            raise ValueError(f"{s.path} was tested on {data_b.get('name')!r}, {first.path} on {data_a.get('name')!r}")
        if first.data_fingerprint and s.data_fingerprint and first.data_fingerprint != s.data_fingerprint:
            raise ValueError(
                f"{s.path} and {first.path} were tested on different data (test fingerprints "
                f"{s.data_fingerprint} and {first.data_fingerprint}): their queries cannot be paired"
            )
    unrecorded = [str(s.path) for s in sources if s.data_fingerprint is None]
    if unrecorded:
        log.warning("%s recorded no fingerprint of their test data: paired by query order only", ", ".join(unrecorded))


def _overlay_histograms(sources, runs, name: str) -> str:
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    for s, r in zip(sources, runs):
        v = s.per_query[name]
        ax.hist(v[~np.isnan(v)], bins=20, range=(0, 1), histtype="step", linewidth=1.5, label=r["label"])
    ax.set_xlabel(f"{name} per query")
    ax.set_ylabel("queries")
    ax.legend(frameon=False, fontsize=7)
    return figures.svg(fig)


def _overlay_history(sources, runs) -> str:
    series = {}
    for s, r in zip(sources, runs):
        metric = (s.selection or {}).get("metric")
        pts = [(e["epoch"], e[f"valid/{metric}"]) for e in s.history if metric and f"valid/{metric}" in e]
        if pts:
            series[f"{r['label']} valid {metric}"] = tuple(zip(*pts))
    return figures.svg(figures.lines(series, "epoch", "validation metric"))
