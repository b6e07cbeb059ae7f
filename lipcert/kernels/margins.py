"""One pass over the logits: prediction, top-1 minus runner-up margin, and a finiteness check."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import NUMBA_FLAGS

PIXELS_PER_BLOCK = 4096  # pixels per parallel job (images up to this size: one image per job)
_TILE = 512  # pixels whose running top-2 stays in L1 while the classes stream past


@njit(**NUMBA_FLAGS)
def _top2_tile(logits, b, lo, n, best, second, arg, check):
    """Running top-2 of pixels ``lo .. lo + n`` of image b, compared in the input precision.

    Writes ``best``, ``second``, ``arg`` (first maximum) and ``check`` (0 for a pixel whose logits are all
    finite, NaN otherwise: ``v - v`` is NaN exactly for NaN and +-inf). Branch-free, so it vectorises.
    """
    for i in range(n):
        v = logits[b, 0, lo + i]
        best[i] = v
        second[i] = -np.inf
        arg[i] = 0
        check[i] = v - v
    for k in range(1, logits.shape[1]):
        for i in range(n):
            v = logits[b, k, lo + i]
            top = best[i]
            lower = v if v < top else top
            second[i] = lower if lower > second[i] else second[i]
            arg[i] = k if v > top else arg[i]
            best[i] = v if v > top else top
            check[i] += v - v


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
    b_size, _, n_size = logits.shape
    pred = np.empty((b_size, n_size), dtype=np.int64)
    margin = np.empty((b_size, n_size), dtype=np.float64)
    n_blocks = (n_size + PIXELS_PER_BLOCK - 1) // PIXELS_PER_BLOCK
    bad = np.zeros(b_size * n_blocks, dtype=np.bool_)
    for job in prange(b_size * n_blocks):
        b = job // n_blocks
        best = np.empty(_TILE, dtype=logits.dtype)
        second = np.empty(_TILE, dtype=logits.dtype)
        arg = np.empty(_TILE, dtype=np.int32)
        check = np.empty(_TILE, dtype=logits.dtype)
        hi = min(n_size, (job % n_blocks + 1) * PIXELS_PER_BLOCK)
        for lo in range((job % n_blocks) * PIXELS_PER_BLOCK, hi, _TILE):
            n = min(_TILE, hi - lo)
            _top2_tile(logits, b, lo, n, best, second, arg, check)
            for i in range(n):
                margin[b, lo + i] = np.float64(best[i]) - np.float64(second[i])
                pred[b, lo + i] = arg[i]
                if check[i] != 0:
                    bad[job] = True
    return pred, margin, not bad.any()
