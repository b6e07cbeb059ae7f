"""Sorted prefix sums per group and the look-ups that answer every radius at once."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import NUMBA_FLAGS


@njit(**NUMBA_FLAGS)
def _scatter_by_group(costs, group, n_groups, cap):
    """CSR layout of the costs <= cap of each group (in input order): (offsets (G+1,), values (m,))."""
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(costs.shape[0]):
        g = group[i]
        if g >= 0 and costs[i] <= cap:
            offsets[g + 1] += 1
    for g in range(n_groups):
        offsets[g + 1] += offsets[g]
    pos = offsets[:-1].copy()
    values = np.empty(offsets[n_groups], dtype=np.float64)
    for i in range(costs.shape[0]):
        g = group[i]
        if g >= 0 and costs[i] <= cap:
            values[pos[g]] = costs[i]
            pos[g] += 1
    return offsets, values


@njit(**NUMBA_FLAGS)
def grouped_sorted_prefix(costs, group, n_groups, cap=np.inf):
    """Sort the costs of each group ascending and take their running sums.

    Args:
        costs: float64 (n,) non-negative costs.
        group: int64 (n,) group of each cost in [0, n_groups), or -1 to leave it out.
        n_groups: number of groups G.
        cap: costs above ``cap`` are left out. With ``cap`` = the largest budget this changes no answer
            for budgets <= cap (costs are >= 0, so a set containing such a cost never fits) and skips
            sorting pixels no radius can flip.

    Returns:
        ``(offsets, sorted_costs, prefix)``: int64 (G+1,), float64 (m,) and float64 (m,) where ``m`` is
        the number of kept costs; ``prefix[offsets[g] + j]`` is the sum of the ``j + 1`` cheapest costs
        of group g (accumulated in float64, cheapest first).
    """
    offsets, values = _scatter_by_group(costs, group, n_groups, cap)
    prefix = np.empty_like(values)
    _sort_and_sum(offsets, values, prefix, 0, n_groups)
    return offsets, values, prefix


@njit(**NUMBA_FLAGS)
def _sort_and_sum(offsets, values, prefix, first, last):
    """Sort segments in place and write their running sums.

    Sort the segments ``first .. last - 1`` ascending in place and write their running sums
    (accumulated in float64, cheapest first).
    """
    for g in range(first, last):
        lo, hi = offsets[g], offsets[g + 1]
        if hi > lo:
            values[lo:hi] = np.sort(values[lo:hi])
            acc = 0.0
            for j in range(lo, hi):
                acc += values[j]
                prefix[j] = acc


@njit(**NUMBA_FLAGS)
def segment_value_at(offsets, values, counts):
    """The ``k``-th smallest value of each segment (1-based) for every requested ``k``.

    Args:
        offsets: int64 (G+1,) segment boundaries.
        values: float64 (m,) ascending within each segment (e.g. prefix sums).
        counts: int64 (G, Lv) requested ranks.

    Returns:
        float64 (G, Lv): 0.0 where ``k <= 0``, ``inf`` where ``k`` exceeds the segment size.
    """
    n_groups = offsets.shape[0] - 1
    out = np.empty(counts.shape, dtype=np.float64)
    for g in range(n_groups):
        size = offsets[g + 1] - offsets[g]
        for j in range(counts.shape[1]):
            k = counts[g, j]
            if k <= 0:
                out[g, j] = 0.0
            elif k > size:
                out[g, j] = np.inf
            else:
                out[g, j] = values[offsets[g] + k - 1]
    return out
