"""One pass over the logits: prediction, top-1 minus runner-up margin, and a finiteness check."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS

PIXELS_PER_BLOCK = 4096  # pixels per parallel job (images up to this size: one image per job)
TILE = 512  # pixels whose running top-2 stays in L1 while the classes stream past
_OVERFLOW_SCALE = 2.0**863  # |v| * 2**863 overflows to inf for |v| >= 2**161: LOGIT_LIMIT of lipcert.core.config


@njit(**NUMBA_FLAGS)
def pair_cost(diff, inv):
    """Cost ``(diff * inv)**2 / 2`` of a logit difference ``diff >= 0`` (``inv = 1 / L``).

    Scaled before squaring, so that no intermediate overflows in the certified range (lipcert.core.config).
    A positive difference whose square underflows to 0 costs the smallest positive float instead: a
    pixel is free (cost 0) exactly on a tie, and the round-up (< 5e-324 per pixel) is far inside the
    budget slack at every radius >= EPS_MIN.
    """
    r = diff * inv
    c = 0.5 * (r * r)
    if c == 0.0 and diff > 0.0:
        return 5e-324
    return c


@njit(**NUMBA_FLAGS)
def pair_costs(diff, inv):
    """:func:`pair_cost` of every element of a float64 array (any shape); returns a new array."""
    flat = diff.ravel()
    out = np.empty(flat.shape[0], dtype=np.float64)
    for i in range(flat.shape[0]):
        out[i] = pair_cost(flat[i], inv)
    return out.reshape(diff.shape)


@njit(**NUMBA_FLAGS)
def top2_tile(logits, b, lo, n, best, second, arg, check):
    """Running top-2 of pixels ``lo .. lo + n`` of image b, compared in the input precision.

    Writes ``best``, ``second``, ``arg`` (first maximum) and ``check`` (0 for a pixel whose logits are all
    finite and below ``2**161`` in magnitude, NaN otherwise: ``w - w`` with ``w = v * 2**863`` is NaN
    exactly when w is NaN or +-inf). Branch-free, so it vectorises.
    """
    for i in range(n):
        v = logits[b, 0, lo + i]
        best[i] = v
        second[i] = -np.inf
        arg[i] = 0
        w = np.float64(v) * _OVERFLOW_SCALE
        check[i] = w - w
    for k in range(1, logits.shape[1]):
        for i in range(n):
            v = logits[b, k, lo + i]
            top = best[i]
            lower = v if v < top else top
            second[i] = lower if lower > second[i] else second[i]
            arg[i] = k if v > top else arg[i]
            best[i] = v if v > top else top
            w = np.float64(v) * _OVERFLOW_SCALE
            check[i] += w - w


@njit(parallel=True, **NUMBA_FLAGS)
def top2_margin(logits):
    """Predicted class (first maximum) and margin top1 - top2 of every pixel.

    Args:
        logits: float32 or float64 (B, K, N) array (N = H * W), C-contiguous.

    Returns:
        ``(pred, margin, finite)``: int64 (B, N), float64 (B, N) >= 0 (0 on ties), and False if any
        logit is NaN, infinite or at least ``2**161`` in magnitude (then pred and margin are
        meaningless). Blocks of pixels run in parallel;
        each pixel's result does not depend on the blocking.
    """
    b_size, _, n_size = logits.shape
    pred = np.empty((b_size, n_size), dtype=np.int64)
    margin = np.empty((b_size, n_size), dtype=np.float64)
    n_blocks = (n_size + PIXELS_PER_BLOCK - 1) // PIXELS_PER_BLOCK
    bad = np.zeros(b_size * n_blocks, dtype=np.bool_)
    for job in prange(b_size * n_blocks):
        b = job // n_blocks
        best = np.empty(TILE, dtype=logits.dtype)
        second = np.empty(TILE, dtype=logits.dtype)
        arg = np.empty(TILE, dtype=np.int32)
        check = np.empty(TILE, dtype=logits.dtype)
        hi = min(n_size, (job % n_blocks + 1) * PIXELS_PER_BLOCK)
        for lo in range((job % n_blocks) * PIXELS_PER_BLOCK, hi, TILE):
            n = min(TILE, hi - lo)
            top2_tile(logits, b, lo, n, best, second, arg, check)
            for i in range(n):
                margin[b, lo + i] = np.float64(best[i]) - np.float64(second[i])
                pred[b, lo + i] = arg[i]
                if check[i] != 0:
                    bad[job] = True
    return pred, margin, not bad.any()
