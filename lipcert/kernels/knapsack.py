"""Fractional (Dantzig) knapsack bound for many budgets: an upper bound on the attacker's damage."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import NUMBA_FLAGS


@njit(**NUMBA_FLAGS)
def dantzig_bound(costs, values, budgets):
    """Largest value of a fractional knapsack (an upper bound on the 0/1 optimum) for every budget.

    Items are taken by decreasing value / cost (zero-cost items first), the last one fractionally.

    Args:
        costs: float64 (n,) >= 0.
        values: float64 (n,) >= 0.
        budgets: float64 (E,) >= 0.

    Returns:
        float64 (E,) fractional optima.
    """
    n = costs.shape[0]
    ratio = np.empty(n)
    for i in range(n):
        ratio[i] = np.inf if costs[i] == 0.0 else values[i] / costs[i]
    order = np.argsort(-ratio, kind="mergesort")
    cum_c = np.empty(n + 1)
    cum_v = np.empty(n + 1)
    cum_c[0] = 0.0
    cum_v[0] = 0.0
    for j in range(n):
        cum_c[j + 1] = cum_c[j] + costs[order[j]]
        cum_v[j + 1] = cum_v[j] + values[order[j]]
    out = np.empty(budgets.shape[0])
    for e in range(budgets.shape[0]):
        k = np.searchsorted(cum_c, budgets[e], side="right") - 1  # items fully taken
        best = cum_v[k]
        if k < n:
            item = order[k]
            best += values[item] * (budgets[e] - cum_c[k]) / costs[item]
        out[e] = best
    return out
