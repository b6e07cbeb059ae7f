"""The OR-Tools solvers on their own: optimum vs enumeration, labels, and the safe side of rounding."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lipcert.solvers import joint_miou_min, knapsack_max


def _best_subset(costs, values, budget):
    best = 0.0
    for mask in itertools.product([0, 1], repeat=len(costs)):
        m = np.array(mask, dtype=bool)
        if costs[m].sum() <= budget:
            best = max(best, values[m].sum())
    return best


@given(st.integers(1, 9), st.integers(0, 2**31 - 1), st.booleans())
def test_knapsack_is_the_enumerated_optimum_or_a_bound_above_it(n, seed, integral):
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.05, 1.0, size=n)
    values = rng.integers(1, 9, size=n).astype(float) if integral else rng.uniform(0.1, 5.0, size=n)
    budget = float(rng.uniform(0.01, costs.sum() + 0.01))  # from almost nothing to everything affordable
    value, status = knapsack_max(costs, values, budget, time_limit=10.0)
    best = _best_subset(costs, values, budget)
    assert value >= best - 1e-9  # never understates the damage: the certificate stays on the safe side
    if status == "exact":
        assert integral and value == pytest.approx(best, abs=1e-9)  # exact only for truly integral values
    else:
        assert status in ("bound", "time_limit")


def test_knapsack_without_any_affordable_item_is_zero_and_exact():
    value, status = knapsack_max(np.array([2.0, 3.0]), np.array([1.0, 4.0]), 1.0, time_limit=5.0)
    assert (value, status) == (0.0, "exact")


def _joint_brute(z, target, budget, inv):
    """min over every affordable reassignment of the image's mIoU (classes with an empty union left out)."""
    k, n = z.shape
    pred = z.argmax(0)
    best = np.inf
    for labels in itertools.product(range(k), repeat=n):
        labels = np.array(labels)
        d = z[pred, np.arange(n)] - z[labels, np.arange(n)]
        if ((d * inv) ** 2 / 2).sum() > budget:
            continue
        ious = []
        for c in range(k):
            inter = np.sum((labels == c) & (target == c))
            union = np.sum((labels == c) | (target == c))
            if union:
                ious.append(inter / union)
        best = min(best, np.mean(ious))
    return best


@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.3, 1.0, 4.0]))
def test_joint_miou_min_is_the_enumerated_worst_case(seed, budget):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(3, 4))
    target = rng.integers(0, 3, size=4)
    res = joint_miou_min(z, target, np.ones(4, dtype=bool), budget * (1 + 1e-9), time_limit=20.0,
                         attack_budget=budget)  # fmt: skip
    truth = _joint_brute(z, target, budget, 1.0)
    assert res.value <= truth + 1e-9  # a proven lower bound
    assert res.attack_value >= truth - 1e-9  # a feasible attack cannot beat the true worst case
    if res.status == "exact":
        assert res.value == pytest.approx(truth, abs=1e-9)
