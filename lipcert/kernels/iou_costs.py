"""The cheapest TP-removal and FP-addition costs of every (image, class), in one kernel (images in parallel).

Replaces a numpy build that materialised and sorted a (K, N) float64 cost array per image: here each
pixel's costs are computed on the fly, twice (count, then fill); only those a budget can pay (<= cap)
are stored, counted per budget, and only the cheapest ones whose running sum fits cap are sorted and
kept.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS
from .bins import bin_of, bin_scale
from .margins import pair_cost


@njit(**NUMBA_FLAGS)
def _pixel_costs(logits, pred, margin, target, ignore_index, inv, cap, b, tp_out, fp_out, tp_pos, fp_pos, fill):
    """Count (``fill`` False) or write (True) image b's TP and FP costs <= cap; returns nothing.

    Counting adds to ``tp_pos`` / ``fp_pos`` (K,); writing stores at and advances those positions.
    """
    k_size, n_size = logits.shape[1], logits.shape[2]
    for n in range(n_size):
        t = target[b, n]
        if t == ignore_index:
            continue
        p = pred[b, n]
        if t == p:
            c = pair_cost(margin[b, n], inv)
            if c <= cap:
                if fill:
                    tp_out[tp_pos[t]] = c
                tp_pos[t] += 1
        top = np.float64(logits[b, p, n])
        for k in range(k_size):
            if k == p or k == t:
                continue
            d = top - np.float64(logits[b, k, n])
            c = pair_cost(d, inv)
            if c <= cap:
                if fill:
                    fp_out[fp_pos[k]] = c
                fp_pos[k] += 1


@njit(**NUMBA_FLAGS)
def _singles(seg, sorted_budgets, order, out):
    """``out[e]`` = number of costs in ``seg`` that are <= budgets[e] on their own."""
    hist = np.zeros(sorted_budgets.shape[0] + 1, dtype=np.int64)
    for c in seg:
        hist[np.searchsorted(sorted_budgets, c, side="left")] += 1  # fits the budgets from this rank on
    acc = 0
    for j in range(sorted_budgets.shape[0]):
        acc += hist[j]
        out[order[j]] = acc


@njit(**NUMBA_FLAGS)
def _cheapest_head(seg, cap):
    """Sort the affordable prefix of a segment's costs; return its length.

    Sort, in place at the front of ``seg`` (costs <= cap, any order), the cheapest costs whose running
    sum stays <= cap; return how many. Only the bins (equal-width in sqrt(cost)) up to the first whose
    cumulative sum exceeds cap are sorted: every cost of an earlier bin is at most every later one.
    """
    m = seg.shape[0]
    if m == 0:
        return 0
    nb = max(1, m // 4)
    to_bin = bin_scale(cap, nb)
    count = np.zeros(nb, dtype=np.int64)
    total = np.zeros(nb, dtype=np.float64)
    for c in seg:
        j = bin_of(c, to_bin, nb)
        count[j] += 1
        total[j] += c
    last, spent, n_head = nb - 1, 0.0, 0
    for j in range(nb):  # the first bin whose cumulative sum exceeds cap is the last one needed
        spent += total[j]
        n_head += count[j]
        if spent > cap:
            last = j
            break
    head = np.empty(n_head, dtype=np.float64)
    n = 0
    for c in seg:
        if bin_of(c, to_bin, nb) <= last:
            head[n] = c
            n += 1
    head = np.sort(head[:n])
    acc, kept = 0.0, 0
    for c in head:
        acc += c
        if acc > cap:
            break
        seg[kept] = c
        kept += 1
    return kept


@njit(**NUMBA_FLAGS)
def _select(seg, sorted_budgets, order, cap, single):
    """Count the per-budget singles of ``seg``, then move its kept head to the front; return its length."""
    _singles(seg, sorted_budgets, order, single)
    return _cheapest_head(seg, cap)


@njit(**NUMBA_FLAGS)
def _copy_with_sums(src, dst, prefix):
    """``dst[:] = src[:len(dst)]`` and ``prefix`` = its running sums (float64, in order)."""
    acc = 0.0
    for j in range(dst.shape[0]):
        acc += src[j]
        dst[j] = src[j]
        prefix[j] = acc


@njit(parallel=True, **NUMBA_FLAGS)
def iou_costs(logits, pred, margin, target, ignore_index, inv, budgets):
    """Cheapest TP-removal and FP-addition costs of every (image, class), sorted, with running sums.

    For class k of image b (valid pixels): removing a true positive (GT k, predicted k) costs
    ``(margin * inv)**2 / 2``; adding a false positive on a pixel of another ground-truth class that is not
    predicted k costs ``((z_pred - z_k) * inv)**2 / 2`` (``inv = 1 / L``, ``pair_cost``). Only the
    cheapest costs whose running sum stays <= cap (the largest budget) are kept: no budget <= cap can pay for more, so
    every joint answer is unchanged; how many costs fit each budget on its own (the per-pixel view) is
    counted from all of them.

    Args:
        logits: float32/float64 (B, K, N).
        pred: int64 (B, N) first argmax.
        margin: float64 (B, N) top1 - top2.
        target: int64 (B, N) labels in [0, K) or ``ignore_index``.
        ignore_index: label of ignored pixels (-1 for none).
        inv: ``1 / L``.
        budgets: float64 (E,) >= 0, any order.

    Returns:
        ``(tp_offsets, tp_costs, tp_prefix, fp_offsets, fp_costs, fp_prefix, tp0, union0, tp_single,
        fp_single)``: CSR over groups ``b * K + k`` (int64 (B*K+1,), float64 kept costs ascending per group
        and their running sums), int64 (B*K,) clean true positives and clean union ``|GT k| + FP_k``, and
        int64 (B*K, E) numbers of TP / FP costs that are <= each budget on their own.
    """
    b_size, k_size, n_size = logits.shape
    n_groups, n_eps = b_size * k_size, budgets.shape[0]
    cap = 0.0
    for e in range(n_eps):
        cap = max(cap, budgets[e])
    order = np.argsort(budgets)
    sorted_budgets = budgets[order]
    tp_n = np.zeros((b_size, k_size), dtype=np.int64)
    fp_n = np.zeros((b_size, k_size), dtype=np.int64)
    tp0 = np.zeros((b_size, k_size), dtype=np.int64)
    union0 = np.zeros((b_size, k_size), dtype=np.int64)
    empty = np.empty(0, dtype=np.float64)
    for b in prange(b_size):
        _pixel_costs(logits, pred, margin, target, ignore_index, inv, cap, b, empty, empty, tp_n[b], fp_n[b], False)
        for n in range(n_size):
            t = target[b, n]
            if t == ignore_index:
                continue
            union0[b, t] += 1  # ground truth
            if pred[b, n] == t:
                tp0[b, t] += 1
            else:
                union0[b, pred[b, n]] += 1  # a clean false positive of the predicted class
    tp_all = np.zeros(n_groups + 1, dtype=np.int64)  # every cost <= cap, before selection
    fp_all = np.zeros(n_groups + 1, dtype=np.int64)
    for g in range(n_groups):
        tp_all[g + 1] = tp_all[g] + tp_n[g // k_size, g % k_size]
        fp_all[g + 1] = fp_all[g] + fp_n[g // k_size, g % k_size]
    tp_buf = np.empty(tp_all[-1], dtype=np.float64)
    fp_buf = np.empty(fp_all[-1], dtype=np.float64)
    tp_single = np.zeros((n_groups, n_eps), dtype=np.int64)
    fp_single = np.zeros((n_groups, n_eps), dtype=np.int64)
    tp_kept = np.zeros(n_groups, dtype=np.int64)
    fp_kept = np.zeros(n_groups, dtype=np.int64)
    for b in prange(b_size):
        tp_pos = tp_all[b * k_size : (b + 1) * k_size].copy()
        fp_pos = fp_all[b * k_size : (b + 1) * k_size].copy()
        _pixel_costs(logits, pred, margin, target, ignore_index, inv, cap, b, tp_buf, fp_buf, tp_pos, fp_pos, True)
        for g in range(b * k_size, (b + 1) * k_size):
            tp_kept[g] = _select(tp_buf[tp_all[g] : tp_all[g + 1]], sorted_budgets, order, cap, tp_single[g])
            fp_kept[g] = _select(fp_buf[fp_all[g] : fp_all[g + 1]], sorted_budgets, order, cap, fp_single[g])
    tp_offsets = np.zeros(n_groups + 1, dtype=np.int64)
    fp_offsets = np.zeros(n_groups + 1, dtype=np.int64)
    for g in range(n_groups):
        tp_offsets[g + 1] = tp_offsets[g] + tp_kept[g]
        fp_offsets[g + 1] = fp_offsets[g] + fp_kept[g]
    tp_costs = np.empty(tp_offsets[-1], dtype=np.float64)
    fp_costs = np.empty(fp_offsets[-1], dtype=np.float64)
    tp_prefix = np.empty(tp_offsets[-1], dtype=np.float64)
    fp_prefix = np.empty(fp_offsets[-1], dtype=np.float64)
    for g in prange(n_groups):
        _copy_with_sums(tp_buf[tp_all[g] :], tp_costs[tp_offsets[g] : tp_offsets[g + 1]], tp_prefix[tp_offsets[g] :])
        _copy_with_sums(fp_buf[fp_all[g] :], fp_costs[fp_offsets[g] : fp_offsets[g + 1]], fp_prefix[fp_offsets[g] :])
    return (tp_offsets, tp_costs, tp_prefix, fp_offsets, fp_costs, fp_prefix, tp0.ravel(), union0.ravel(),
            tp_single, fp_single)  # fmt: skip
