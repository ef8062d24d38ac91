"""The per-step schedules of DINOv2 / Franca (their ``CosineScheduler``): a linear warm-up from
``start`` to ``base`` over ``warmup`` steps, then a half cosine from ``base`` to ``final`` over the
remaining steps:

    v(t) = start + (base − start) · t / warmup                                   t < warmup
    v(t) = final + ½ (base − final) (1 + cos(π (t − warmup) / (total − warmup)))  t ≥ warmup

(``np.linspace`` in the authors' code puts the warm-up's last step at ``base`` exactly: the same
values, one step apart.) Learning rate: warm-up from 0, cosine to ``min_lr``; weight decay: cosine
from 0.04 to its final value; teacher momentum: cosine from 0.994 to 1; teacher temperature: linear
warm-up from 0.04 to 0.07, then constant (base = final).

>>> round(cosine(0, 100, base=1.0, final=0.0, warmup=10), 6), round(cosine(10, 100, base=1.0, final=0.0, warmup=10), 6)
(0.0, 1.0)
>>> round(cosine(55, 100, base=1.0, final=0.0, warmup=10), 6)   # half-way through the cosine
0.5
"""

from __future__ import annotations

import math

__all__ = ["cosine"]


def cosine(step: int, total: int, base: float, final: float, warmup: int = 0, start: float = 0.0) -> float:
    """The schedule's value at ``step`` of ``total`` (see the module docstring); past the end: ``final``."""
    if step < warmup:
        return start + (base - start) * step / warmup
    span = max(1, total - warmup)
    t = min(step - warmup, span)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * t / span))
