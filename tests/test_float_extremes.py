"""Certificates at the ends of float64, checked in exact rational arithmetic (fractions).

Within the certified range (lipcert.core.config) every answer must be sound (never better than the exact
optimum for the budget eps**2) and exact up to the documented slack (never worse than the exact optimum
for eps**2 * (1 + 2e-9)); at eps = 0 exactly the ties are flippable. Outside the range the input is
refused with a LipcertError, and no finite input may crash the process.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lipcert
from lipcert import LipcertError
from lipcert.core.config import COST_REL_SLACK, EPS_RANGE, LIPSCHITZ_RANGE, LOGIT_LIMIT

SLACK_HI = Fraction(1) + Fraction(2 * COST_REL_SLACK)


def _magnitude(lo: int, hi: int):
    """Floats m * 10**e with e in [lo, hi], including exact powers of two and 0."""
    return st.one_of(
        st.builds(lambda m, e: m * 10.0**e, st.floats(1.0, 9.99), st.integers(lo, hi)),
        st.builds(lambda e: 2.0**e, st.integers(int(lo * 3.3), int(hi * 3.3))),
        st.just(0.0),
    )


logit = st.builds(lambda s, v: s * v, st.sampled_from([-1.0, 1.0]), _magnitude(-320, 47))
lipschitz = st.builds(lambda m, e: m * 10.0**e, st.floats(1.0, 9.99), st.integers(-39, 39))
radius = st.one_of(st.just(0.0), st.builds(lambda m, e: m * 10.0**e, st.floats(1.0, 9.99), st.integers(-99, 99)))


def _exact_costs(z: np.ndarray, L: float):
    """pred (N,) and exact Fraction costs (N, K) of moving pixel n to class k: (z_pred - z_k)**2 / (2 L**2)."""
    k, n = z.shape
    pred = z.argmax(0)
    cost = [[(Fraction(z[pred[p], p]) - Fraction(z[c, p])) ** 2 / (2 * Fraction(L) ** 2) for c in range(k)]
            for p in range(n)]  # fmt: skip
    return pred, cost


def _max_flips(costs: list[Fraction], budget: Fraction) -> int:
    total, count = Fraction(0), 0
    for c in sorted(costs):
        total += c
        if total > budget:
            break
        count += 1
    return count


@given(st.lists(st.tuples(logit, logit, logit), min_size=1, max_size=6), lipschitz, st.lists(radius, min_size=1,
       max_size=3))  # fmt: skip
def test_unit_certificates_are_sound_and_exact_up_to_the_slack_at_float_extremes(cols, L, eps):
    z = np.array(cols, dtype=np.float64).T  # (K=3, N)
    target = z.argmax(0)  # every pixel correct: pixel accuracy flips = stability flips
    cert = lipcert.certify_logits(z[None, :, None, :], eps, "pixel_accuracy", target[None, None, :], lipschitz=L)
    pred, cost = _exact_costs(z, L)
    margins = []
    for p in range(z.shape[1]):
        others = [cost[p][c] for c in range(3) if c != pred[p]]
        margins.append(min(others))  # the cheapest flip of pixel p
    n = z.shape[1]
    for j, e in enumerate(eps):
        flips = round((1.0 - cert.worst[0, j]) * n)
        budget = Fraction(e) ** 2
        assert _max_flips(margins, budget) <= flips <= _max_flips(margins, budget * SLACK_HI), (z, L, e)
        if e == 0:
            assert flips == sum(m == 0 for m in margins)
        naive = round((1.0 - cert.naive[0, j]) * n)
        assert sum(m <= budget for m in margins) <= naive <= sum(m <= budget * SLACK_HI for m in margins)


@given(st.lists(st.tuples(logit, logit), min_size=1, max_size=5), lipschitz, st.floats(0.05, 1.0))
def test_q2_radius_is_never_above_the_exact_radius(cols, L, level):
    z = np.array(cols, dtype=np.float64).T  # (2, N)
    target = z.argmax(0)
    r = lipcert.certified_radius(z[None, :, None, :], "pixel_accuracy", target[None, None, :], lipschitz=L,
                                 level=level)[0, 0]  # fmt: skip
    _, cost = _exact_costs(z, L)
    flips = sorted(max(c) for c in cost)  # K = 2: the other class's cost
    n = len(flips)
    need = math.ceil((1.0 - level) * n - 1e-9 * n)
    if need <= 0:
        assert r == 0.0
        return
    exact_sq = sum(flips[:need])
    assert math.isfinite(r)
    assert Fraction(r) ** 2 <= exact_sq, (z, L, level)
    if exact_sq < Fraction(EPS_RANGE[0]) ** 2:
        assert r == 0.0  # below the certified range: reported as 0, a sound lower bound
    else:
        assert Fraction(r) ** 2 >= exact_sq * (1 - Fraction(3 * COST_REL_SLACK))


@given(st.lists(st.tuples(logit, logit), min_size=1, max_size=3), st.lists(st.integers(0, 1), min_size=3,
       max_size=3), lipschitz, radius)  # fmt: skip
def test_per_image_iou_is_sound_and_exact_at_float_extremes(cols, labels, L, e):
    z = np.array(cols, dtype=np.float64).T  # (2, N)
    n = z.shape[1]
    target = np.array(labels[:n])
    cert = lipcert.certify_logits(z[None, :, None, :], [e], "iou", target[None, None, :], lipschitz=L)
    pred, cost = _exact_costs(z, L)

    def worst(budget):
        best = [math.inf, math.inf]
        for assignment in itertools.product(range(2), repeat=n):
            spent = sum(cost[p][assignment[p]] for p in range(n) if assignment[p] != pred[p])
            if spent > budget:
                continue
            for c in range(2):
                inter = sum(1 for p in range(n) if assignment[p] == c and target[p] == c)
                union = sum(1 for p in range(n) if assignment[p] == c or target[p] == c)
                if union:
                    best[c] = min(best[c], inter / union)
        return best

    lo, hi = worst(Fraction(e) ** 2 * SLACK_HI), worst(Fraction(e) ** 2)
    for c in range(2):
        got = cert.worst[0, 0, c]
        if math.isinf(hi[c]):  # the class stays undefined
            continue
        assert lo[c] - 1e-12 <= got <= hi[c] + 1e-12, (z, target, L, e, c)


def test_eps_zero_ties_only_even_when_the_squared_margin_underflows():
    # margins 1e-300 with L 1e30: (m / L)**2 underflows, yet the pixels are not ties
    z = np.array([[[[1e-300, 0.0]], [[0.0, 1e-300]]]])
    assert lipcert.certify_logits(z, [0.0], "stability", lipschitz=1e30).worst[0, 0] == 1.0
    tie = np.array([[[[0.5, 0.0]], [[0.5, 1e-300]]]])
    assert lipcert.certify_logits(tie, [0.0], "stability", lipschitz=1e30).worst[0, 0] == 0.5


def test_the_reported_segfault_input_is_refused_and_in_range_answers_are_exact():
    z = np.array([[[[2.0, 0.0]], [[0.0, 1.0]]]])
    with pytest.raises(LipcertError, match="range"):
        lipcert.certify_logits(z, [1.35e154], "recall", [[[0, 1]]], lipschitz=1)
    cert = lipcert.certify_logits(z, [EPS_RANGE[1]], "recall", [[[0, 1]]], lipschitz=1)
    assert cert.worst.tolist() == [[[0.0, 0.0]]]


def test_tiny_largest_radius_keeps_exact_ties():
    z = np.array([[[[1.0, 1.0, 2.0]], [[1.0, 0.0, 0.0]]]])  # one exact tie among three pixels
    cert = lipcert.certify_logits(z, [EPS_RANGE[0]], "stability", lipschitz=1.0)
    assert cert.worst[0, 0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("L", [LIPSCHITZ_RANGE[0], LIPSCHITZ_RANGE[1]])
def test_the_ends_of_the_lipschitz_range_certify_exactly(L):
    z = np.array([[[[3.0, 1.0]], [[0.0, 0.0]]]])
    radii = lipcert.pixel_radius(z, L)
    exact = [Fraction(3) / L, Fraction(1) / L]  # m / (sqrt(2) L), compared squared
    for r, m in zip(radii[0, 0], exact, strict=True):
        assert abs(Fraction(r) ** 2 * 2 - m**2) <= m**2 * Fraction(1, 10**12)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=4, max_size=8),
       st.floats(allow_nan=False, allow_infinity=False, min_value=0.0), st.floats(allow_nan=False,
       allow_infinity=False, min_value=1e-300), st.sampled_from(["pixel_accuracy", "stability", "recall", "iou",
       "miou", "fnr"]))  # fmt: skip
def test_no_finite_input_crashes_and_answers_are_refusals_or_values(values, e, L, metric):
    z = np.array(values[:4], dtype=np.float64).reshape(1, 2, 1, 2)
    target = np.array([[[0, 1]]])
    in_range = (np.abs(z) < LOGIT_LIMIT).all() and (e == 0 or EPS_RANGE[0] <= e <= EPS_RANGE[1])
    in_range = in_range and LIPSCHITZ_RANGE[0] <= L <= LIPSCHITZ_RANGE[1]
    try:
        cert = lipcert.certify_logits(z, [e], metric, target, lipschitz=L)
    except LipcertError as exc:
        assert not in_range, exc  # refused only outside the certified range
        return
    assert in_range
    w = cert.worst[np.isfinite(cert.worst)]
    assert np.all((w >= 0) & (w <= 1))
