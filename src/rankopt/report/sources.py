"""What a report reads: a run folder (image retrieval or recommendation) or an embeddings .npz,
turned into one :class:`Source` — the metrics, the per-query values, the history, and for
retrieval the embeddings and images behind the rankings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankopt.io import read_embeddings
from rankopt.runs import DataChangedError, RunFolder, fingerprint

__all__ = ["Source", "RetrievalView", "load_source"]


@dataclass
class RetrievalView:
    """The test queries (and gallery) of a retrieval evaluation, to draw rankings from."""

    queries: np.ndarray  # (Q, d)
    query_labels: np.ndarray  # (Q, L)
    gallery: np.ndarray | None = None  # None: leave-one-out
    gallery_labels: np.ndarray | None = None
    images: Any = None  # dataset of the queries (item i → (image tensor, ...)), for thumbnails
    gallery_images: Any = None


@dataclass
class Source:
    kind: str  # "retrieval" | "recommendation" | "embeddings"
    title: str
    path: Path
    metrics: dict[str, float]  # the test metrics (means) as recorded
    per_query: dict[str, np.ndarray]  # metric → value per query (NaN: no relevant item)
    query_ids: np.ndarray  # query index (retrieval) or user id (recommendation), in file order
    history: list[dict] = field(default_factory=list)
    selection: dict | None = None
    retrieval: RetrievalView | None = None
    user_activity: np.ndarray | None = None  # recommendation: training interactions of each query_ids user
    config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the page could not show, and why
    data_fingerprint: str | None = None  # what the test data is recognised by (None: not recorded by the run)
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # a task's own (title, svg, caption)


def load_source(
    path: str | Path, gallery: str | Path | None = None, *, with_rankings: bool = True, progress=None
) -> Source:
    """A run folder or an embeddings .npz. with_rankings=False skips what only the pictures need
    (re-embedding the test set, loading the recommendation data): a comparison reads per-query values."""
    p = Path(path)
    if p.is_dir():
        if gallery is not None:
            raise ValueError("--gallery goes with an embeddings .npz, not a run folder")
        folder = RunFolder(p)
        cfg = folder.config()
        folder.metrics()  # a run that has not finished is refused here, naming what to do
        readers = {
            "images": _image_run,
            "recsys": _recsys_run,
            "ssl": _ssl_run,
            "prompts": _prompt_run,
            "grounding": _grounding_run,
            "world": _world_run,
        }
        if cfg.task not in readers:
            raise ValueError(
                f"rankopt report reads image, recommendation, pre-training, prompt, grounding and driving runs; "
                f"{p} is a {cfg.task} run"
            )
        return readers[cfg.task](folder, cfg, with_rankings, progress or _no_progress)
    if p.suffix == ".npz" or p.is_file():
        return _embeddings(p, gallery)
    raise FileNotFoundError(f"{p} is neither a run folder nor an .npz file")


def _no_progress(label: str, unit: str):
    from contextlib import nullcontext

    return nullcontext(None)


def _image_run(folder: RunFolder, cfg, with_rankings: bool, progress=_no_progress) -> Source:
    out = folder.metrics()
    ids, per_query = folder.read_per_query("query")
    view, notes = None, []
    if with_rankings:
        from rankopt.data.base import DatasetNotFoundError
        from rankopt.train.run import embed_dataset, load_model, run_splits

        try:
            splits, note = run_splits(folder, cfg)
        except (
            DatasetNotFoundError,
            DataChangedError,
        ) as err:  # the numbers are in the run folder; the pictures need its images
            notes.append(
                "No curves or gallery: the run's test images cannot be read as they were "
                f"({' '.join(str(err).split())})"
            )
        else:
            if note:
                notes.append(note)
            model = load_model(folder, cfg)
            test = splits.test
            with progress("embedding the test queries", "image") as bar:
                q, ql = embed_dataset(model, test.queries, progress=bar)
            g = gl = None
            if test.gallery is not None:
                with progress("embedding the gallery", "image") as bar:
                    g, gl = embed_dataset(model, test.gallery, progress=bar)
            view = RetrievalView(q, _two_d(ql), g, None if gl is None else _two_d(gl), test.queries, test.gallery)
            if len(view.queries) != len(ids):
                raise ValueError(
                    f"{folder.path}: {len(ids)} per-query rows but its test split has {len(view.queries)} queries"
                )
    return Source(
        "retrieval",
        f"{cfg.data.name} · {cfg.loss.name} · {cfg.model.backbone}",
        folder.path,
        _means(out["test"]),
        per_query,
        ids,
        out.get("history", []),
        out.get("selection"),
        view,
        config=folder.saved_config(),
        notes=notes,
        data_fingerprint=folder.data_fingerprint(test=True),
    )


def _ssl_run(folder: RunFolder, cfg, with_rankings: bool, progress=_no_progress) -> Source:
    """A pre-training run: the frozen teacher's test retrieval (the pictures re-embed the test split),
    the untrained initialisation next to it, and retrieval at every nested dimension."""
    from rankopt.report import figures

    out = folder.metrics()
    ids, per_query = folder.read_per_query("query")
    view, notes, sections = None, [], []
    if with_rankings:
        from rankopt.data.base import DatasetNotFoundError
        from rankopt.ssl.run import test_features

        try:
            with progress("embedding the test images", "image") as bar:
                dataset, features, labels = test_features(folder, cfg, progress=bar)
        except (DatasetNotFoundError, DataChangedError) as err:
            notes.append(f"No curves or gallery: the run's test images cannot be read ({' '.join(str(err).split())})")
        else:
            view = RetrievalView(features, _two_d(labels), images=dataset)
    init, test = out.get("init", {}), out["test"]
    shared = [k for k in ("map@r", "hit@1", "knn_acc", "probe_acc") if k in init and k in test]
    if shared:
        fig = figures.grouped_bars(
            shared,
            {"initialisation": [init[k] for k in shared], "pre-trained": [test[k] for k in shared]},
            "test value",
        )
        sections.append(
            (
                "What pre-training bought",
                figures.svg(fig),
                "the frozen backbone before and after pre-training, on the same test images",
            )
        )
    if out.get("nested"):
        dims = [n["dim"] for n in out["nested"]]
        fig = figures.lines(
            {m: (dims, [n[m] for n in out["nested"]]) for m in ("map@r", "hit@1")},
            "embedding dimensions",
            "test value",
            logx=True,
        )
        sections.append(
            (
                "Retrieval at every nested dimension",
                figures.svg(fig),
                "the first d dimensions of the embedding alone: short codes to search, the full width to re-rank",
            )
        )
    rasa = out.get("rasa")
    if rasa:
        notes.append(
            f"RASA ({rasa['iterations']} iterations): position-probe R² on test patches "
            f"{rasa['position_r2_before']:.3f} before, {rasa['position_r2_after']:.3f} after"
        )
    return Source(
        "retrieval",
        f"{cfg.data.name} · pre-training · {cfg.head.kind} heads · {cfg.model.backbone}",
        folder.path,
        _means(test),
        per_query,
        ids,
        out.get("history", []),
        out.get("selection"),
        view,
        config=folder.saved_config(),
        notes=notes,
        data_fingerprint=folder.data_fingerprint(test=True),
        sections=sections,
    )


def _prompt_run(folder: RunFolder, cfg, with_rankings: bool, progress=_no_progress) -> Source:
    """A prompt-learning run: per-image correctness, and per class the learned prompts' accuracy next to
    the same towers' zero-shot accuracy (no rankings: a classifier ranks no gallery)."""
    from rankopt.report import figures

    out = folder.metrics()
    ids, columns = folder.read_per_query("query")
    test, zero = out["test"], out["zero_shot"]
    names = out.get("protocol", {}).get("class_names") or [str(i) for i in range(len(test["per_class"]))]
    fig = figures.grouped_bars(
        names, {"zero-shot": zero["per_class"], cfg.prompts.method: test["per_class"]}, "test accuracy"
    )
    sections = [
        (
            "Accuracy per class",
            figures.svg(fig),
            f"{out.get('shots')} shots per class; zero-shot: the template 'a photo of a {{class}}.' on the same "
            f"towers and test images (top-1 {zero['top1']:.4f})",
        )
    ]
    return Source(
        "retrieval",
        f"{cfg.data.name} · prompt learning · {cfg.prompts.method} · {out.get('shots')} shots",
        folder.path,
        {**_means(test), "zero_shot_top1": float(zero["top1"])},
        {"top1": columns["top1"], "zero_shot_top1": columns["zero_shot_top1"]},
        ids,
        out.get("history", []),
        out.get("selection"),
        None,
        config=folder.saved_config(),
        notes=["A classification run: the page shows accuracies; there is no ranking to draw."],
        data_fingerprint=folder.data_fingerprint(test=True),
        sections=sections,
    )


def _grounding_run(folder: RunFolder, cfg, with_rankings: bool, progress=_no_progress) -> Source:
    """A grounding run: P@1 of the proposer alone, the untuned and the tuned language model on seen and
    unseen expression templates, and example test scenes with the candidates and the chosen box."""
    import json

    from rankopt.report import figures

    out = folder.metrics()
    ids, columns = folder.read_per_query("query")
    parts = {"proposer": out["proposer"], "zero-shot": out["zero_shot"], "LoRA-tuned": out["test"]}
    groups = {name: [m["p@1"], m["p@1_seen"], m["p@1_unseen"]] for name, m in parts.items()}
    sections = [
        (
            "P@1",
            figures.svg(figures.grouped_bars(["all", "seen templates", "unseen templates"], groups, "P@1")),
            f"{out['test']['n_expressions']} test expressions on unseen scenes; P@1 = IoU(chosen box, ground truth) "
            "> 0.5; the proposer answers with its top-scoring box of the head noun",
        )
    ]
    notes = []
    try:
        images = np.load(folder.file("scenes.npz"))
        described = json.loads(folder.file("scenes.json").read_text())
    except (OSError, ValueError) as err:
        notes.append(f"No example scenes: {' '.join(str(err).split())}")
    else:
        where = {int(s): k for k, s in enumerate(images["scenes"])}
        answer = dict(zip(ids.tolist(), columns["tuned_answer"].tolist()))
        right = dict(zip(ids.tolist(), columns["tuned_p@1"].tolist()))
        examples = [
            {
                "image": images["images"][where[d["scene"]]],
                "boxes": d["boxes"],
                "gt": d["gt"],
                "chosen": None if answer.get(d["query"], -1) < 0 else int(answer[d["query"]]),
                "right": bool(right.get(d["query"], 0)),
                "expression": d["expression"],
            }
            for d in described[:9]
            if d["scene"] in where
        ]
        if examples:
            sections.append(
                (
                    "Example test scenes",
                    figures.svg(figures.grounding_scenes(examples)),
                    "grey: the candidates as numbered in the prompt; green dashed: the ground truth; the tuned "
                    "model's choice in blue when right, red when wrong (none drawn: no usable index)",
                )
            )
    metrics = {
        f"{name}_p@1": float(m["p@1"]) for name, m in (("proposer", out["proposer"]), ("zero_shot", out["zero_shot"]))
    }
    return Source(
        "retrieval",
        f"{cfg.data.name} scenes · grounding · {cfg.model.language_model} · {cfg.loss.kind} loss",
        folder.path,
        {**_means(out["test"]), **metrics},
        {
            "p@1": columns["tuned_p@1"],
            "mrr": columns["tuned_mrr"],
            "zero_shot_p@1": columns["zero_shot_p@1"],
            "proposer_p@1": columns["proposer_p@1"],
            # the index-logit argmax's P@1 (what a rank loss trains); runs before it was recorded lack it
            **({"p@1_index": columns["tuned_index_p@1"]} if "tuned_index_p@1" in columns else {}),
        },
        ids,
        out.get("history", []),
        out.get("selection"),
        None,
        config=folder.saved_config(),
        notes=["A grounding run: one chosen box per expression; the candidates' ranking is summarised by MRR.", *notes],
        data_fingerprint=folder.data_fingerprint(test=True),
        sections=sections,
    )


def _world_run(folder: RunFolder, cfg, with_rankings: bool, progress=_no_progress) -> Source:
    """A driving run: closed-loop collision rate and progress of VaVAM beside constant velocity and the
    IDM expert, the GPT's generated frames beside the real ones, sampled trajectories."""
    from rankopt.report import figures

    out = folder.metrics()
    ids, columns = folder.read_per_query("query")
    policies = {"VaVAM": out["test"], "constant velocity": out["constant_velocity"], "IDM expert": out["expert"]}
    sections = [
        (
            "Closed loop",
            figures.svg(
                figures.bars(list(policies), [p["collision_rate"] for p in policies.values()], "collision rate")
            ),
            f"{out['test']['episodes']} episodes per policy over the scenarios {', '.join(cfg.closed_loop.scenarios)}; "
            "progress (m): " + ", ".join(f"{k} {v['progress']:.1f}" for k, v in policies.items()),
        )
    ]
    notes = []
    try:
        ex = np.load(folder.file("examples.npz"))
    except (OSError, ValueError) as err:
        notes.append(f"No rollouts or trajectories: {' '.join(str(err).split())}")
    else:
        sections.append(
            (
                "Generated frames",
                figures.svg(figures.rollouts(ex["frames"], ex["generated"])),
                "test windows: the context and the real last frame (through the tokenizer), and the last frame the "
                "GPT generates from the context",
            )
        )
        sections.append(
            (
                "Trajectories",
                figures.svg(figures.trajectories(ex["samples"], ex["truth"], ex["constant_velocity"])),
                "the last frame's future: sampled by VaVAM (blue), driven by the expert (black), constant velocity "
                "(grey, dashed); ego frame",
            )
        )
    metrics = {k: float(v) for k, v in out["test"].items() if k != "episodes"}
    if out.get("perplexity") is not None:
        metrics["perplexity"] = float(out["perplexity"])
        metrics["copy_last_frame_perplexity"] = float(out["copy_last_frame_perplexity"])
    return Source(
        "retrieval",
        f"highway-env · VaVAM · GPT width {cfg.gpt.width}" + ("" if cfg.gpt.pretrained else " (not pre-trained)"),
        folder.path,
        metrics,
        columns,
        ids,
        out.get("history", []),
        out.get("selection"),
        None,
        config=folder.saved_config(),
        notes=["A driving run: per-query values are per test window (its last frame's trajectory).", *notes],
        data_fingerprint=folder.data_fingerprint(test=True),
        sections=sections,
    )


def _recsys_run(folder: RunFolder, cfg, with_rankings: bool, progress=_no_progress) -> Source:
    out = folder.metrics()
    ids, per_user = folder.read_per_query("user")
    activity, notes = None, []
    if with_rankings:
        from rankopt.recsys.run import run_data

        try:
            data = run_data(folder, cfg)
        except (FileNotFoundError, DataChangedError) as err:  # the per-user numbers are in the run folder
            notes.append(
                f"No NDCG by user activity: the training interactions could not be read ({' '.join(str(err).split())})"
            )
        else:
            activity = np.bincount(data.train.user, minlength=data.n_users)[ids]
    return Source(
        "recommendation",
        f"{Path(str(cfg.data.root)).name} · {cfg.model.name} · {cfg.loss.name}",
        folder.path,
        _means(out["test"]),
        per_user,
        ids,
        out.get("history", []),
        out.get("selection"),
        user_activity=activity,
        config=folder.saved_config(),
        notes=notes,
        data_fingerprint=folder.data_fingerprint(test=True),
    )


def _embeddings(p: Path, gallery: str | Path | None) -> Source:
    from rankopt.metrics import aggregate, evaluate_per_query

    q, ql = read_embeddings(p)
    g = gl = None
    if gallery is not None:
        g, gl = read_embeddings(gallery, "gallery file")
    result = evaluate_per_query(q, ql, g, gl)
    metrics = {k: v for k, v in aggregate(result).items() if not k.startswith("n_")}
    view = RetrievalView(
        np.asarray(q, dtype=np.float32),
        _two_d(ql),
        None if g is None else np.asarray(g, dtype=np.float32),
        None if gl is None else _two_d(gl),
    )
    return Source(
        "embeddings",
        p.name,
        p,
        metrics,
        result.values,
        np.arange(result.n_queries),
        retrieval=view,
        data_fingerprint=fingerprint(np.asarray(ql), *(() if gl is None else (np.asarray(gl),))),
    )


def _means(test: dict) -> dict[str, float]:
    return {k: float(v) for k, v in test.items() if not k.startswith("n_") and isinstance(v, (int, float))}


def _two_d(labels) -> np.ndarray:
    labels = np.asarray(labels)
    return labels[:, None] if labels.ndim == 1 else labels
