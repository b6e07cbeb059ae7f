"""One pass over the logits: prediction, top-1 minus runner-up margin, and a finiteness check."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..config import NUMBA_FLAGS


@njit(**NUMBA_FLAGS)
def top2_margin(logits):
    """Predicted class (first maximum) and margin top1 - top2 of every pixel.

    Args:
        logits: float32 or float64 (B, K, N) array (N = H * W), C-contiguous.

    Returns:
        ``(pred, margin, finite)``: int64 (B, N), float64 (B, N) >= 0 (0 on ties), and False if any
        logit is NaN or infinite (then pred and margin are meaningless).
    """
    b_size, k_size, n_size = logits.shape
    pred = np.zeros((b_size, n_size), dtype=np.int64)
    margin = np.empty((b_size, n_size), dtype=np.float64)
    best = np.empty(n_size, dtype=np.float64)
    second = np.empty(n_size, dtype=np.float64)
    finite = True
    for b in range(b_size):
        for n in range(n_size):
            best[n] = logits[b, 0, n]
            second[n] = -np.inf
        for k in range(1, k_size):
            for n in range(n_size):
                v = np.float64(logits[b, k, n])
                if not np.isfinite(v):
                    finite = False
                if v > best[n]:
                    second[n] = best[n]
                    best[n] = v
                    pred[b, n] = k
                elif v > second[n]:
                    second[n] = v
        for n in range(n_size):
            m = best[n] - second[n]
            if not np.isfinite(m):
                finite = False
            margin[b, n] = m
    return pred, margin, finite


@njit(**NUMBA_FLAGS)
def unit_candidates(logits, target, ignore_index, per_class, correct_only, scale):
    """One pass for the unit-value certificates: margins, flip costs, candidate groups and clean counts.

    Fuses :func:`top2_margin` and :func:`lipcert.kernels.prefix.unit_groups` and checks the labels.

    Args:
        logits: float32/float64 (B, K, N); target: int64 (B, N) (``ignore_index`` = ignored; pass the
            predictions themselves for label-free stability); per_class / correct_only: as ``unit_groups``.
        scale: ``1 / (2 L**2)``, so that cost = margin**2 * scale.

    Returns:
        ``(pred, margin, costs, group, clean_num, den, finite, labels_ok)``.
    """
    b_size, k_size, n_size = logits.shape
    g_size = k_size if per_class else 1
    pred, margin, finite = top2_margin(logits)
    costs = np.empty(b_size * n_size, dtype=np.float64)
    group = np.full(b_size * n_size, -1, dtype=np.int64)
    clean_num = np.zeros((b_size, g_size), dtype=np.float64)
    den = np.zeros((b_size, g_size), dtype=np.float64)
    labels_ok = True
    for b in range(b_size):
        for n in range(n_size):
            i = b * n_size + n
            m = margin[b, n]
            costs[i] = m * m * scale
            t = target[b, n]
            if t == ignore_index:
                continue
            if t < 0 or t >= k_size:
                labels_ok = False
                continue
            g = t if per_class else 0
            den[b, g] += 1.0
            if (not correct_only) or pred[b, n] == t:
                clean_num[b, g] += 1.0
                group[i] = b * g_size + g
    return pred, margin, costs, group, clean_num, den, finite, labels_ok
