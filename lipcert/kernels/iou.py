"""Two-list sweep for the worst IoU of one class in one image, and its frontier for Dinkelbach."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..config import NUMBA_FLAGS


@njit(**NUMBA_FLAGS)
def iou_worst(tp_offsets, tp_prefix, fp_offsets, fp_prefix, tp0, union0, budgets):
    """Exact minimum of ``(TP - a) / (U + b)`` over affordable (a removed TPs, b added FPs).

    Group g is one (image, class): removing the a cheapest true positives costs ``tp_prefix[a-1]`` and
    adding the b cheapest false positives ``fp_prefix[b-1]`` (segments of the CSR arrays). For each a
    the best b is the largest affordable one, which only decreases as a grows (two pointers).

    Args:
        tp_offsets, tp_prefix: int64 (G+1,), float64 running sums of sorted TP-removal costs.
        fp_offsets, fp_prefix: int64 (G+1,), float64 running sums of sorted FP-addition costs.
        tp0, union0: int64 (G,) clean TP and union (G + FP) counts.
        budgets: float64 (E,) squared radii (already inflated for float safety).

    Returns:
        ``(worst, best_a, best_b)``: float64 (G, E) worst IoU (NaN when the union stays 0), and the int64
        (G, E) minimiser (a, b).
    """
    n_groups = tp0.shape[0]
    n_eps = budgets.shape[0]
    worst = np.full((n_groups, n_eps), np.nan)
    best_a = np.zeros((n_groups, n_eps), dtype=np.int64)
    best_b = np.zeros((n_groups, n_eps), dtype=np.int64)
    for g in range(n_groups):
        tp = tp_prefix[tp_offsets[g] : tp_offsets[g + 1]]
        fp = fp_prefix[fp_offsets[g] : fp_offsets[g + 1]]
        for e in range(n_eps):
            budget = budgets[e]
            b = np.searchsorted(fp, budget, side="right")  # affordable FPs with a = 0
            a = 0
            best = np.inf
            while True:
                den = union0[g] + b
                if den > 0:
                    val = (tp0[g] - a) / den
                    if val < best:
                        best = val
                        best_a[g, e] = a
                        best_b[g, e] = b
                if a >= tp.shape[0] or tp[a] > budget:
                    break
                a += 1
                rest = budget - tp[a - 1]
                while b > 0 and fp[b - 1] > rest:
                    b -= 1
            if best < np.inf:
                worst[g, e] = best
    return worst, best_a, best_b


@njit(**NUMBA_FLAGS)
def iou_frontier(tp_prefix, fp_prefix, budget):
    """Every (a, b(a)) choice of one (image, class) at one budget: b(a) = the largest affordable b.

    Returns:
        int64 (A + 1, 2) rows (a, b) for a = 0 .. A (A = the largest affordable a).
    """
    b = np.searchsorted(fp_prefix, budget, side="right")
    n_a = np.searchsorted(tp_prefix, budget, side="right")
    out = np.empty((n_a + 1, 2), dtype=np.int64)
    for a in range(n_a + 1):
        rest = budget - (tp_prefix[a - 1] if a > 0 else 0.0)
        while b > 0 and fp_prefix[b - 1] > rest:
            b -= 1
        out[a, 0] = a
        out[a, 1] = b
    return out
