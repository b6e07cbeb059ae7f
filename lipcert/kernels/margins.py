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
