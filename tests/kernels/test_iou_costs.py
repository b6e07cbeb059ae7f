"""The IoU cost kernel and the hull kernel against references written from the math."""

from fractions import Fraction

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

from lipcert.kernels import iou_costs, top2_margin


def _inputs(rng, b, k, n, dtype, ignore):
    logits = rng.integers(-2, 3, size=(b, k, n)).astype(dtype)  # ties: zero costs, equal costs
    pred, margin, _ = top2_margin(logits)
    target = rng.choice(list(range(k)) + [ignore], size=(b, n)).astype(np.int64)
    target[:, : n // 2] = pred[:, : n // 2]  # many true positives
    return logits, pred, margin, target


@given(st.integers(1, 3), st.integers(2, 5), st.integers(1, 40), st.integers(0, 2**31 - 1), st.booleans())
def test_kernel_equals_numpy_twin(b, k, n, seed, none_ignored):
    rng = np.random.default_rng(seed)
    ignore = -1 if none_ignored else 255
    logits, pred, margin, target = _inputs(rng, b, k, n, np.float32, ignore)
    for budgets in ([0.0], [2.0, 0.5], [100.0, 0.0, 3.0]):
        got = iou_costs(logits, pred, margin, target, ignore, 0.5, np.array(budgets))
        ref = reference.iou_costs(logits, pred, margin, target, ignore, 0.5, np.array(budgets))
        for x, y in zip(got, ref, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_image_and_float_logits(dtype):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5000)).astype(dtype)
    pred, margin, _ = top2_margin(logits)
    target = np.where(rng.random((2, 5000)) < 0.7, pred, rng.integers(0, 4, size=(2, 5000)))
    target[:, :7] = 255
    budgets = np.array([0.6, 0.01, 0.2])
    got = iou_costs(logits, pred, margin, target, 255, 0.125, budgets)
    ref = reference.iou_costs(logits, pred, margin, target, 255, 0.125, budgets)
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_array_equal(x, y)
    offsets, costs, prefix = got[3], got[4], got[5]
    assert all(np.all(np.diff(costs[offsets[g] : offsets[g + 1]]) >= 0) for g in range(8))  # sorted
    assert prefix.max() <= 0.6  # only what the largest budget can pay for jointly
    assert got[9].sum() > offsets[-1]  # the per-pixel counts see more costs than the kept heads


def _assert_hull_of(hull: np.ndarray, frontier: np.ndarray) -> None:
    """A hull's defining property: its points are frontier points, and for every weight r >= 0 the best
    ``a + r b`` over the hull equals the best over the whole frontier (exact, in integers: r = p / q)."""
    assert {tuple(x) for x in hull.tolist()} <= {tuple(x) for x in frontier.tolist()}
    a, b = frontier[:, 0], frontier[:, 1]
    ha, hb = hull[:, 0], hull[:, 1]
    # every r at which the maximiser can change is the slope between two frontier points; one r strictly
    # between each pair of consecutive slopes (and beyond the ends) has a unique maximiser on the hull
    slopes = sorted({Fraction(int(a[j] - a[i]), int(b[i] - b[j])) for i in range(len(a)) for j in range(i + 1, len(a))
                     if b[i] > b[j] and a[j] > a[i]})  # fmt: skip
    probes = {Fraction(0), *slopes, *(s + 1 for s in slopes[-1:])}
    probes |= {(x + y) / 2 for x, y in zip(slopes, slopes[1:], strict=False)}
    probes |= {s / 2 for s in slopes[:1]}
    weights = {(r.numerator, r.denominator) for r in probes}
    for p_, q_ in weights:
        assert (q_ * ha + p_ * hb).max() == (q_ * a + p_ * b).max(), (p_, q_)


@given(st.integers(1, 3), st.integers(2, 4), st.integers(1, 30), st.integers(0, 2**31 - 1))
def test_hull_kernel_keeps_every_maximiser_of_the_frontier(b, k, n, seed):
    from lipcert.kernels import iou_hulls

    rng = np.random.default_rng(seed)
    logits, pred, margin, target = _inputs(rng, b, k, n, np.float64, 255)
    logits = logits + rng.normal(scale=0.3, size=logits.shape)  # distinct costs, long frontiers
    pred, margin, _ = top2_margin(logits)
    budgets = np.array([0.0, 0.3, 1.0, 5.0])
    tpo, _, tpp, fpo, _, fpp, *_ = iou_costs(logits, pred, margin, target, 255, 0.5, budgets)
    points, sizes = iou_hulls(tpo, tpp, fpo, fpp, budgets, b, k)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    j = 0
    for budget in budgets:  # the kernel's order: radius, class, image
        for c in range(k):
            for i in range(b):
                g = i * k + c
                frontier = reference.iou_frontier(tpp[tpo[g] : tpo[g + 1]], fpp[fpo[g] : fpo[g + 1]], budget)
                _assert_hull_of(points[starts[j] : starts[j + 1]], frontier)
                j += 1
