"""The cost histogram of the greedy: bins equal-width in sqrt(cost), shared by pass 1 and pass 2."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import NUMBA_FLAGS
from .margins import PIXELS_PER_BLOCK

_ITEMS_PER_BIN = 4  # bins per group = pixels per block / (4 G): a few items per bin


@njit(**NUMBA_FLAGS)
def n_bins(n_pixels, n_groups):
    """Histogram bins per group for images of ``n_pixels`` pixels and ``n_groups`` groups (>= 1)."""
    return max(1, min(n_pixels, PIXELS_PER_BLOCK) // (_ITEMS_PER_BIN * n_groups))


@njit(**NUMBA_FLAGS)
def bin_scale(cap, n_bin):
    """The factor of :func:`bin_of`: ``n_bin**2 / cap`` (0 when cap is 0 or inf: a single bin)."""
    scale = n_bin * n_bin / cap if 0.0 < cap < np.inf else 0.0
    return scale if scale < np.inf else 0.0


@njit(**NUMBA_FLAGS)
def bin_of(cost, scale, n_bin):
    """The histogram bin of a cost.

    Bin of a cost in [0, cap] among ``n_bin`` bins (``scale`` = :func:`bin_scale`), equal-width in
    ``sqrt(cost)``, i.e. in the margin, where pixels spread more evenly than in its square. Non-decreasing
    in the cost (every step is a monotone rounding). Any cost, even NaN or inf, maps into [0, n_bin).
    """
    v = cost * scale
    if v < n_bin * n_bin:  # False for NaN: no float reaches an index outside [0, n_bin)
        return min(n_bin - 1, int(np.sqrt(max(v, 0.0))))
    return n_bin - 1
