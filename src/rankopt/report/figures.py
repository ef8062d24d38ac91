"""The report's plots, drawn with matplotlib (Agg) and inlined as SVG text; thumbnails as PNG data URIs."""

from __future__ import annotations

import base64
import io
import re

import numpy as np

__all__ = [
    "svg",
    "histogram",
    "lines",
    "bars",
    "grouped_bars",
    "grounding_scenes",
    "rollouts",
    "trajectories",
    "thumbnail",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display, no network: files only
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def svg(fig) -> str:
    """The figure as inline SVG markup (no XML prologue, no external reference), then closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    text = buf.getvalue()
    return re.sub(r"^.*?(<svg)", r"\1", text, count=1, flags=re.S)


def histogram(values: np.ndarray, xlabel: str, bins: int = 20):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    v = values[~np.isnan(values)]
    ax.hist(v, bins=bins, range=(0, 1), color="#4c72b0", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("queries")
    return fig


def lines(
    series: dict[str, tuple],
    xlabel: str,
    ylabel: str,
    *,
    logx: bool = False,
    mark_x: float | None = None,
    mark_label: str = "",
):
    """One line per name: (x, y)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=name)
    if logx:
        ax.set_xscale("log")
    if mark_x is not None:
        ax.axvline(mark_x, color="#c44e52", linestyle="--", linewidth=1, label=mark_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1 or mark_x is not None:
        ax.legend(frameon=False, fontsize=7)
    return fig


def bars(labels: list[str], values: list[float], ylabel: str, errors: list[tuple[float, float]] | None = None):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    x = np.arange(len(labels))
    yerr = None
    if errors is not None:
        yerr = np.array(
            [[v - lo for v, (lo, _) in zip(values, errors)], [hi - v for v, (_, hi) in zip(values, errors)]]
        )
    ax.bar(x, values, color="#55a868", yerr=yerr, capsize=3)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    return fig


def training(
    loss: list[tuple[int, float]], valid: list[tuple[int, float]], valid_label: str, mark_x: int | None = None
):
    """The training loss (left axis) and the validation metric (right axis) per epoch: two scales, two
    axes; whole epochs on x, even for a one-epoch run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    epochs = sorted({e for e, _ in loss} | {e for e, _ in valid})
    if loss:
        ax.plot(
            *zip(*loss), marker="o" if len(loss) < 30 else None, markersize=3, color="#4c72b0", label="training loss"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="#4c72b0")
    handles, labels = ax.get_legend_handles_labels()
    if valid:
        right = ax.twinx()
        right.plot(
            *zip(*valid), marker="o" if len(valid) < 30 else None, markersize=3, color="#55a868", label=valid_label
        )
        right.set_ylabel(valid_label, color="#55a868")
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if mark_x is not None:
        handles.append(ax.axvline(mark_x, color="#c44e52", linestyle="--", linewidth=1))
        labels.append("selected epoch")
    if epochs:
        lo, hi = min(epochs), max(epochs)
        ax.set_xlim(lo - 0.5, hi + 0.5) if lo == hi else ax.set_xlim(lo, hi)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, min_n_ticks=1))
    ax.legend(handles, labels, frameon=False, fontsize=7)
    return fig


def grouped_bars(labels: list[str], groups: dict[str, list[float]], ylabel: str):
    """Bars of several groups side by side at each label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    x = np.arange(len(labels))
    width = 0.8 / len(groups)
    for k, (name, values) in enumerate(groups.items()):
        ax.bar(x + (k - (len(groups) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=7)
    return fig


def grounding_scenes(examples: list[dict], columns: int = 3):
    """Referring-expression examples: each scene with its candidate boxes (grey, numbered as in the
    prompt), the ground truth (green, dashed) and the tuned model's chosen box (blue when right, red
    when wrong); the expression as the title. ``examples``: dicts with image, boxes, gt, chosen,
    right, expression."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    rows = -(-len(examples) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, e in zip(axes.flat, examples):
        ax.imshow(e["image"], cmap="gray", vmin=0, vmax=255)
        for k, (x1, y1, x2, y2) in enumerate(e["boxes"]):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="0.6", lw=0.6))
            ax.text(x1 + 1, y1 + 1, str(k), color="0.8", fontsize=6, va="top")
        x1, y1, x2, y2 = e["gt"]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="tab:green", lw=1.2, ls="--"))
        if e["chosen"] is not None:
            x1, y1, x2, y2 = e["boxes"][e["chosen"]]
            color = "tab:blue" if e["right"] else "tab:red"
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, lw=1.6))
        ax.set_title(e["expression"], fontsize=7)
    return fig


def rollouts(frames: np.ndarray, generated: np.ndarray):
    """Rows of test windows: the context frames and the real last frame (through the tokenizer), then
    the GPT's generated last frame. frames (N, T, H, W), generated (N, H, W), uint8."""
    plt = _plt()
    n, t = frames.shape[:2]
    fig, axes = plt.subplots(n, t + 1, figsize=(1.6 * (t + 1), 0.9 * n + 0.3), squeeze=False)
    for i in range(n):
        for j in range(t + 1):
            ax = axes[i, j]
            ax.imshow(frames[i, j] if j < t else generated[i], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(
                    "generated" if j == t else ("real, last" if j == t - 1 else f"context {j + 1}"), fontsize=7
                )
    return fig


def trajectories(samples: np.ndarray, truth: np.ndarray, constant: np.ndarray):
    """Per test window: the sampled trajectories (blue), the expert's (black) and constant velocity
    (grey, dashed), in the ego frame (x ahead, y to the right; metres)."""
    plt = _plt()
    n = len(truth)
    fig, axes = plt.subplots(1, n, figsize=(2.0 * n, 2.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        for s in samples[i]:
            ax.plot(s[:, 0], s[:, 1], "-", color="tab:blue", lw=0.8, alpha=0.7)
        ax.plot(truth[i][:, 0], truth[i][:, 1], "k.-", lw=1.2)
        ax.plot(constant[i][:, 0], constant[i][:, 1], "--", color="0.5", lw=1)
        ax.plot([0], [0], "k^", ms=5)
        ax.invert_yaxis()  # y to the right of the car, drawn downwards as in the frames
        ax.set_xlabel("ahead (m)", fontsize=7)
    axes[0, 0].set_ylabel("right (m)", fontsize=7)
    return fig


def thumbnail(image) -> str:
    """A dataset image (tensor (C, H, W) or (H, W), any range) as a PNG data URI, min-max scaled."""
    plt = _plt()
    a = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    buf = io.BytesIO()
    plt.imsave(buf, a, cmap="gray" if a.ndim == 2 else None, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
