"""One pass over the logits: prediction, top-1 minus runner-up margin, and a finiteness check."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import NUMBA_FLAGS

_BLOCK = 4096  # pixels per parallel block


@njit(parallel=True, **NUMBA_FLAGS)
def top2_margin(logits):
    """Predicted class (first maximum) and margin top1 - top2 of every pixel.

    Args:
        logits: float32 or float64 (B, K, N) array (N = H * W), C-contiguous.

    Returns:
        ``(pred, margin, finite)``: int64 (B, N), float64 (B, N) >= 0 (0 on ties), and False if any
        logit is NaN or infinite (then pred and margin are meaningless). Blocks of pixels run in parallel;
        each pixel's result does not depend on the blocking.
    """
    b_size, k_size, n_size = logits.shape
    pred = np.zeros((b_size, n_size), dtype=np.int64)
    margin = np.empty((b_size, n_size), dtype=np.float64)
    n_blocks = (n_size + _BLOCK - 1) // _BLOCK
    bad = np.zeros(b_size * n_blocks, dtype=np.bool_)
    for job in prange(b_size * n_blocks):
        b = job // n_blocks
        lo = (job % n_blocks) * _BLOCK
        hi = min(n_size, lo + _BLOCK)
        best = np.empty(hi - lo, dtype=logits.dtype)  # compare in the input precision (exact)
        second = np.empty(hi - lo, dtype=logits.dtype)
        for n in range(lo, hi):
            v = logits[b, 0, n]
            if not np.isfinite(v):
                bad[job] = True
            best[n - lo] = v
            second[n - lo] = -np.inf
        for k in range(1, k_size):
            for n in range(lo, hi):
                v = logits[b, k, n]
                if not np.isfinite(v):
                    bad[job] = True
                if v > best[n - lo]:
                    second[n - lo] = best[n - lo]
                    best[n - lo] = v
                    pred[b, n] = k
                elif v > second[n - lo]:
                    second[n - lo] = v
        for n in range(lo, hi):
            margin[b, n] = np.float64(best[n - lo]) - np.float64(second[n - lo])
    return pred, margin, not bad.any()


@njit(parallel=True, **NUMBA_FLAGS)
def unit_candidates(logits, target, ignore_index, per_class, correct_only, scale):
    """One pass for the unit-value certificates: margins, flip costs, candidate groups and clean counts.

    Fuses :func:`top2_margin` with grouping the candidates and checking the labels (blocks of pixels in
    parallel; counts are integers, so the result does not depend on the blocking).

    Args:
        logits: float32/float64 (B, K, N); target: int64 (B, N) (``ignore_index`` = ignored).
        per_class: group candidates by ground-truth class (recall / fnr) instead of one group per image.
        correct_only: candidates are the correctly classified pixels (else every valid pixel: stability).
        scale: ``1 / (2 L**2)``, so that cost = margin**2 * scale.

    Returns:
        ``(pred, margin, costs, group, clean_num, den, finite, labels_ok)``: int64 (B, N), float64 (B, N),
        float64 (B*N,), int64 (B*N,) group ``b * G + g`` or -1, float64 (B, G) candidate and valid counts,
        and two flags (finite logits; every label in [0, K) or ignored).
    """
    b_size, k_size, n_size = logits.shape
    g_size = k_size if per_class else 1
    pred, margin, finite = top2_margin(logits)
    costs = np.empty(b_size * n_size, dtype=np.float64)
    group = np.full(b_size * n_size, -1, dtype=np.int64)
    n_blocks = (n_size + _BLOCK - 1) // _BLOCK
    part_clean = np.zeros((b_size * n_blocks, g_size), dtype=np.int64)
    part_den = np.zeros((b_size * n_blocks, g_size), dtype=np.int64)
    bad = np.zeros(b_size * n_blocks, dtype=np.bool_)
    for job in prange(b_size * n_blocks):
        b = job // n_blocks
        lo = (job % n_blocks) * _BLOCK
        for n in range(lo, min(n_size, lo + _BLOCK)):
            i = b * n_size + n
            m = margin[b, n]
            costs[i] = m * m * scale
            t = target[b, n]
            if t == ignore_index:
                continue
            if t < 0 or t >= k_size:
                bad[job] = True
                continue
            g = t if per_class else 0
            part_den[job, g] += 1
            if (not correct_only) or pred[b, n] == t:
                part_clean[job, g] += 1
                group[i] = b * g_size + g
    clean_num = np.zeros((b_size, g_size), dtype=np.float64)
    den = np.zeros((b_size, g_size), dtype=np.float64)
    for job in range(b_size * n_blocks):
        b = job // n_blocks
        for g in range(g_size):
            clean_num[b, g] += part_clean[job, g]
            den[b, g] += part_den[job, g]
    return pred, margin, costs, group, clean_num, den, finite, not bad.any()
