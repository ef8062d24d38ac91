"""The published loss formulas written as plainly as possible (loops over queries and items), in float64.

Nothing here is shared with the library; autograd through these loops gives the reference gradients.
"""

from __future__ import annotations

import math

import torch


def heaviside(t):
    return (t >= 0).to(t.dtype)


def sigmoid_step(t, tau):
    return torch.sigmoid((t / tau).clamp(-50, 50))


def suprank_step(t, tau=0.01, delta=0.05, rho=100.0, start=0.5, offset=None):
    if offset is None:
        offset = 1 / (1 + math.exp(-delta / tau)) + start
    if t <= 0:
        return torch.sigmoid(t / tau)
    if t <= delta:
        return torch.sigmoid(t / tau) + start
    return rho * (t - delta) + offset


def _setup(emb, labels, ref, ref_labels, include_self):
    same = ref is None
    if same:
        ref, ref_labels = emb, labels
    lab = labels if labels.ndim == 2 else labels[:, None]
    rlab = ref_labels if ref_labels.ndim == 2 else ref_labels[:, None]
    s = emb @ ref.T
    n = ref.shape[0]

    def refs(i):
        return [j for j in range(n) if not (same and not include_self and j == i)]

    def level(i, j):
        return int((lab[i] == rlab[j]).sum())

    return s, refs, level, lab.shape[1]


def supap(emb, labels, ref=None, ref_labels=None, include_self=True, step=suprank_step):
    s, refs, level, n_lv = _setup(emb, labels, ref, ref_labels, include_self)
    aps = []
    for i in range(emb.shape[0]):
        r = refs(i)
        pos = [j for j in r if level(i, j) == n_lv]
        if not pos:
            continue
        total = 0.0
        for k in pos:
            plus = 1 + sum(heaviside(s[i, j] - s[i, k]) for j in pos if j != k)
            rank = plus + sum(step(s[i, j] - s[i, k]) for j in r if j not in pos)
            total = total + plus / rank
        aps.append(total / len(pos))
    return 1 - torch.stack(aps).mean()


def smoothap(emb, labels, ref=None, ref_labels=None, include_self=True, tau=0.01):
    s, refs, level, n_lv = _setup(emb, labels, ref, ref_labels, include_self)
    aps = []
    for i in range(emb.shape[0]):
        r = refs(i)
        pos = [j for j in r if level(i, j) == n_lv]
        if not pos:
            continue
        total = 0.0
        for k in pos:
            plus = 1 + sum(sigmoid_step(s[i, j] - s[i, k], tau) for j in pos if j != k)
            rank = 1 + sum(sigmoid_step(s[i, j] - s[i, k], tau) for j in r if j != k)
            total = total + plus / rank
        aps.append(total / len(pos))
    return 1 - torch.stack(aps).mean()


def _surrogate_rank(s, i, k, r, level, step):
    lk = level(i, k)
    exact = sum(heaviside(s[i, j] - s[i, k]) for j in r if j != k and level(i, j) >= lk)
    smooth = sum(step(s[i, j] - s[i, k]) for j in r if level(i, j) < lk)
    return 1 + exact + smooth


def smooth_hrank_step(t, leak=10.0, beta=25.0, gamma=0.5):
    return leak * t if t <= 0 else torch.clamp(beta * t + gamma, max=1.0)


def hap(emb, labels, ref=None, ref_labels=None, include_self=True, alpha=1.0, step=suprank_step, smooth_hrank=False):
    s, refs, level, n_lv = _setup(emb, labels, ref, ref_labels, include_self)
    out = []
    for i in range(emb.shape[0]):
        r = refs(i)
        counts = {}
        for j in r:
            counts[level(i, j)] = counts.get(level(i, j), 0) + 1

        def rel(j):
            lv = level(i, j)
            return 0.0 if lv == 0 else (lv / n_lv) ** alpha / counts[lv]

        items = [k for k in r if level(i, k) >= 1]
        if not items:
            continue
        total = 0.0
        for k in items:

            def h(j):
                t = s[i, j] - s[i, k]
                if smooth_hrank and level(i, j) > level(i, k):
                    return smooth_hrank_step(t)
                return heaviside(t)

            hrank = rel(k) + sum(min(rel(j), rel(k)) * h(j) for j in items if j != k)
            total = total + hrank / _surrogate_rank(s, i, k, r, level, step)
        out.append(total / sum(rel(k) for k in items))
    return 1 - torch.stack(out).mean()


def supndcg(emb, labels, ref=None, ref_labels=None, include_self=True, step=suprank_step):
    s, refs, level, n_lv = _setup(emb, labels, ref, ref_labels, include_self)
    out = []
    for i in range(emb.shape[0]):
        r = refs(i)
        items = [k for k in r if level(i, k) >= 1]
        if not items:
            continue
        dcg = sum((2 ** level(i, k) - 1) / torch.log2(1 + _surrogate_rank(s, i, k, r, level, step)) for k in items)
        ideal = sorted((level(i, k) for k in items), reverse=True)
        idcg = sum((2**lv - 1) / math.log2(1 + p) for p, lv in enumerate(ideal, start=1))
        out.append(dcg / idcg)
    return 1 - torch.stack(out).mean()


def suprecall(emb, labels, ks=(1, 2, 4, 8, 16), temperature=1.0, include_self=True, step=suprank_step):
    s, refs, level, n_lv = _setup(emb, labels, None, None, include_self)
    out = []
    for i in range(emb.shape[0]):
        r = refs(i)
        pos = [j for j in r if level(i, j) == n_lv]
        if not pos:
            continue
        ranks = [_surrogate_rank(s, i, k, r, level, step) for k in pos]
        per_k = [sum(torch.sigmoid((k - rk) / temperature) for rk in ranks) / min(len(pos), k) for k in ks]
        out.append(sum(per_k) / len(ks))
    return 1 - torch.stack(out).mean()


def fastap(emb, labels, num_bins=10):
    s = emb @ emb.T
    width = 4.0 / num_bins
    vals = []
    for i in range(emb.shape[0]):
        others = [j for j in range(emb.shape[0]) if j != i]
        pos = [j for j in others if labels[j] == labels[i]]
        if not pos:
            continue
        hp = [
            sum(torch.clamp(1 - (2 - 2 * s[i, j] - z * width).abs() / width, min=0) for j in pos)
            for z in range(num_bins + 1)
        ]
        ha = [
            sum(torch.clamp(1 - (2 - 2 * s[i, j] - z * width).abs() / width, min=0) for j in others)
            for z in range(num_bins + 1)
        ]
        total, cp, ca = 0.0, 0.0, 0.0
        for z in range(num_bins + 1):
            cp, ca = cp + hp[z], ca + ha[z]
            if ca > 0:
                total = total + hp[z] * cp / ca
        vals.append(1 - total / len(pos))
    return torch.stack(vals).mean()


def calibration(emb, labels, pos_margin=0.9, neg_margin=0.6):
    s = emb @ emb.T
    pos_terms, neg_terms = [], []
    for i in range(emb.shape[0]):
        for j in range(emb.shape[0]):
            if i == j:
                continue
            if labels[i] == labels[j]:
                if s[i, j] < pos_margin:
                    pos_terms.append(pos_margin - s[i, j])
            elif s[i, j] > neg_margin:
                neg_terms.append(s[i, j] - neg_margin)
    zero = emb.sum() * 0
    return (torch.stack(pos_terms).mean() if pos_terms else zero) + (
        torch.stack(neg_terms).mean() if neg_terms else zero
    )
