"""SegCertify's selection and estimation counts in one pass over the label samples."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS


@njit(parallel=True, **NUMBA_FLAGS)
def mode_and_count(samples, n0, n_classes):
    """Per pixel: the most frequent class of the first n0 samples and how often the rest predict it.

    Args:
        samples: int (S, P) labels in [0, n_classes) of S noisy samples at P pixels (C-contiguous).
        n0: selection samples (the first n0 rows); the other S - n0 rows estimate.
        n_classes: the number of classes K (labels are in [0, K)).

    Returns:
        ``(mode, count, ok)``: int64 (P,) the selected class (lowest on ties), int64 (P,) the number of
        estimation samples equal to it, in [0, S - n0], and False if a selection label is outside
        [0, n_classes) (then mode and count are meaningless). Pixels run in parallel, in blocks.
    """
    s_size, p_size = samples.shape
    mode = np.empty(p_size, dtype=np.int64)
    count = np.zeros(p_size, dtype=np.int64)
    block = 4096
    n_blocks = (p_size + block - 1) // block
    bad = np.zeros(n_blocks, dtype=np.bool_)
    for job in prange(n_blocks):
        lo = job * block
        hi = min(p_size, lo + block)
        votes = np.zeros((hi - lo, n_classes), dtype=np.int64)
        for s in range(n0):
            for p in range(lo, hi):
                c = samples[s, p]
                if 0 <= c < n_classes:
                    votes[p - lo, c] += 1
                else:
                    bad[job] = True
        local = np.empty(hi - lo, dtype=samples.dtype)  # the block's modes in the samples' own dtype
        for p in range(lo, hi):
            best, arg = -1, 0
            for c in range(n_classes):
                if votes[p - lo, c] > best:
                    best, arg = votes[p - lo, c], c
            mode[p] = arg
            local[p - lo] = arg
        hits = np.zeros(hi - lo, dtype=np.int32)  # same-width compare and a narrow sum: vectorises
        for first in range(n0, s_size, _ROWS_PER_SUM):  # int32 sums of at most 2**30 rows, added to int64
            hits[:] = 0
            for s in range(first, min(s_size, first + _ROWS_PER_SUM)):
                row = samples[s, lo:hi]
                for i in range(hi - lo):
                    hits[i] += np.int32(row[i] == local[i])
            for i in range(hi - lo):
                count[lo + i] += hits[i]
    return mode, count, not bad.any()


_ROWS_PER_SUM = 2**30
