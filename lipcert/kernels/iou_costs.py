"""The sorted TP-removal and FP-addition costs of every (image, class), in one kernel (images in parallel).

Replaces a numpy build that materialised a (K, N) float64 cost array per image: here each pixel's
costs are computed on the fly, twice (count, then fill), and only those a budget can pay (<= cap) are
stored, sorted per class and summed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import NUMBA_FLAGS
from .prefix import sort_and_sum


@njit(**NUMBA_FLAGS)
def _pixel_costs(logits, pred, margin, target, ignore_index, scale, cap, b, tp_out, fp_out, tp_pos, fp_pos, fill):
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
            c = margin[b, n] * margin[b, n] * scale
            if c <= cap:
                if fill:
                    tp_out[tp_pos[t]] = c
                tp_pos[t] += 1
        top = np.float64(logits[b, p, n])
        for k in range(k_size):
            if k == p or k == t:
                continue
            d = top - np.float64(logits[b, k, n])
            c = d * d * scale
            if c <= cap:
                if fill:
                    fp_out[fp_pos[k]] = c
                fp_pos[k] += 1


@njit(parallel=True, **NUMBA_FLAGS)
def iou_costs(logits, pred, margin, target, ignore_index, scale, cap):
    """TP-removal and FP-addition costs of every (image, class) costing <= cap, sorted, with running sums.

    For class k of image b (valid pixels): removing a true positive (GT k, predicted k) costs
    ``margin**2 * scale``; adding a false positive on a pixel of another ground-truth class that is not
    predicted k costs ``(z_pred - z_k)**2 * scale`` (``scale = 1 / (2 L**2)``).

    Args:
        logits: float32/float64 (B, K, N); pred int64 (B, N) first argmax; margin float64 (B, N) top1 - top2;
        target: int64 (B, N) labels in [0, K) or ``ignore_index`` (-1 for none).
        scale: ``1 / (2 L**2)``; cap: costs above it are left out (budgets <= cap never reach them).

    Returns:
        ``(tp_offsets, tp_costs, tp_prefix, fp_offsets, fp_costs, fp_prefix, tp0, union0)``: CSR over
        groups ``b * K + k`` (int64 (B*K+1,), float64 costs ascending per group and their running sums),
        and int64 (B*K,) clean true positives and clean union ``|GT k| + FP_k``.
    """
    b_size, k_size, n_size = logits.shape
    tp_n = np.zeros((b_size, k_size), dtype=np.int64)
    fp_n = np.zeros((b_size, k_size), dtype=np.int64)
    tp0 = np.zeros((b_size, k_size), dtype=np.int64)
    union0 = np.zeros((b_size, k_size), dtype=np.int64)
    empty = np.empty(0, dtype=np.float64)
    for b in prange(b_size):
        _pixel_costs(logits, pred, margin, target, ignore_index, scale, cap, b, empty, empty, tp_n[b], fp_n[b], False)
        for n in range(n_size):
            t = target[b, n]
            if t == ignore_index:
                continue
            union0[b, t] += 1  # ground truth
            if pred[b, n] == t:
                tp0[b, t] += 1
            else:
                union0[b, pred[b, n]] += 1  # a clean false positive of the predicted class
    tp_offsets = np.zeros(b_size * k_size + 1, dtype=np.int64)
    fp_offsets = np.zeros(b_size * k_size + 1, dtype=np.int64)
    for g in range(b_size * k_size):
        tp_offsets[g + 1] = tp_offsets[g] + tp_n[g // k_size, g % k_size]
        fp_offsets[g + 1] = fp_offsets[g] + fp_n[g // k_size, g % k_size]
    tp_costs = np.empty(tp_offsets[-1], dtype=np.float64)
    fp_costs = np.empty(fp_offsets[-1], dtype=np.float64)
    tp_prefix = np.empty(tp_offsets[-1], dtype=np.float64)
    fp_prefix = np.empty(fp_offsets[-1], dtype=np.float64)
    for b in prange(b_size):
        tp_pos = tp_offsets[b * k_size : (b + 1) * k_size].copy()
        fp_pos = fp_offsets[b * k_size : (b + 1) * k_size].copy()
        _pixel_costs(
            logits, pred, margin, target, ignore_index, scale, cap, b, tp_costs, fp_costs, tp_pos, fp_pos, True
        )
        sort_and_sum(tp_offsets, tp_costs, tp_prefix, b * k_size, (b + 1) * k_size)
        sort_and_sum(fp_offsets, fp_costs, fp_prefix, b * k_size, (b + 1) * k_size)
    return tp_offsets, tp_costs, tp_prefix, fp_offsets, fp_costs, fp_prefix, tp0.ravel(), union0.ravel()
