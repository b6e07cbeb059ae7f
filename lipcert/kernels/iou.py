"""Two-list sweep for the worst IoU of one class in one image, and its frontier for Dinkelbach."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS


@njit(**NUMBA_FLAGS)
def iou_worst(tp_offsets, tp_prefix, fp_offsets, fp_prefix, tp0, union0, budgets):
    """Exact minimum of ``(TP - a) / (U + b)`` over affordable (a removed TPs, b added FPs).

    Group g is one (image, class): removing the a cheapest true positives costs ``tp_prefix[a-1]`` and
    adding the b cheapest false positives ``fp_prefix[b-1]`` (segments of the CSR arrays). For each a
    the best b is the largest affordable one, which only decreases as a grows (two pointers).

    Args:
        tp_offsets: int64 (G+1,) CSR offsets of the sorted TP-removal costs.
        tp_prefix: float64 running sums of those costs.
        fp_offsets: int64 (G+1,) CSR offsets of the sorted FP-addition costs.
        fp_prefix: float64 running sums of those costs.
        tp0: int64 (G,) clean true positives.
        union0: int64 (G,) clean unions (G + FP).
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
def _frontier_hull(tp_prefix, fp_prefix, budget, out):
    """Upper hull of one (image, class) frontier at one budget, written to ``out``.

    The frontier: every choice (a, b(a)) for a = 0 .. A removed true positives (A = the largest
    affordable a), b(a) = the largest affordable number of added false positives (a increasing, b
    non-increasing).

    Keeps the points maximising ``a + r b`` for some r >= 0 (every ratio minimiser is among them): a point
    is dropped when the next one has at least its b, or when it is not strictly above the chord of its
    neighbours. Returns the number of hull rows.
    """
    b = np.searchsorted(fp_prefix, budget, side="right")
    n_a = np.searchsorted(tp_prefix, budget, side="right")
    size = 0
    for a in range(n_a + 1):
        rest = budget - (tp_prefix[a - 1] if a > 0 else 0.0)
        while b > 0 and fp_prefix[b - 1] > rest:
            b -= 1
        while size > 0 and out[size - 1, 1] <= b:  # dominated: not more a, not less b
            size -= 1
        while size >= 2:
            a1, b1 = out[size - 2, 0], out[size - 2, 1]
            a2, b2 = out[size - 1, 0], out[size - 1, 1]
            if (a2 - a1) * (b - b1) - (b2 - b1) * (a - a1) >= 0:  # middle point not strictly above the chord
                size -= 1
            else:
                break
        out[size, 0] = a
        out[size, 1] = b
        size += 1
    return size


@njit(parallel=True, **NUMBA_FLAGS)
def iou_hulls(tp_offsets, tp_prefix, fp_offsets, fp_prefix, budgets, n_images, n_classes):
    """Upper hulls of the (a, b) frontiers of every (budget e, class k, image i), in that order.

    Args:
        tp_offsets: CSR over groups ``i * K + k`` (running sums).
        tp_prefix: CSR over groups ``i * K + k`` (running sums).
        fp_offsets: CSR over groups ``i * K + k`` (running sums).
        fp_prefix: CSR over groups ``i * K + k`` (running sums).
        budgets: float64 (E,).
        n_images: B.
        n_classes: K.

    Returns:
        ``(points, sizes)``: int64 (m, 2) rows (a, b), the hulls one after another in item order
        ``(e * K + k) * B + i``, and int64 (E*K*B,) the number of rows of each.
    """
    n_items = budgets.shape[0] * n_classes * n_images
    starts = np.zeros(n_items + 1, dtype=np.int64)  # room for each whole frontier
    for item in range(n_items):
        e, g = _item_group(item, n_images, n_classes)
        tp = tp_prefix[tp_offsets[g] : tp_offsets[g + 1]]
        starts[item + 1] = starts[item] + np.searchsorted(tp, budgets[e], side="right") + 1
    room = np.empty((starts[n_items], 2), dtype=np.int64)
    sizes = np.empty(n_items, dtype=np.int64)
    for item in prange(n_items):
        e, g = _item_group(item, n_images, n_classes)
        sizes[item] = _frontier_hull(
            tp_prefix[tp_offsets[g] : tp_offsets[g + 1]],
            fp_prefix[fp_offsets[g] : fp_offsets[g + 1]],
            budgets[e],
            room[starts[item] : starts[item + 1]],
        )
    points = np.empty((sizes.sum(), 2), dtype=np.int64)
    out = 0
    for item in range(n_items):
        points[out : out + sizes[item]] = room[starts[item] : starts[item] + sizes[item]]
        out += sizes[item]
    return points, sizes


@njit(**NUMBA_FLAGS)
def _item_group(item, n_images, n_classes):
    """(budget index e, group i * K + k) of hull item ``(e * K + k) * B + i``."""
    e, rest = item // (n_classes * n_images), item % (n_classes * n_images)
    return e, (rest % n_images) * n_classes + rest // n_images
