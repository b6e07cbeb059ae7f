import warnings

import brute_force
import numpy as np
import pytest
import reference
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_certify import tiny_problem

import lipcert
from lipcert import certify_logits, certify_weighted, joint_miou
from lipcert.kernels import dantzig_bound

EPS = [0.0, 0.5, 1.2]


def _miou(lab, t, k):
    vals = [brute_force.iou(lab, t, c) for c in range(k)]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


@settings(max_examples=15)
@given(tiny_problem(max_pixels=4, max_classes=3))
def test_joint_miou_equals_brute_force_and_dominates_the_mean_bound(problem):
    logits, target, L = problem
    cert = joint_miou(logits, target, EPS, lipschitz=L)
    bound = certify_logits(logits, EPS, "miou", target, lipschitz=L).worst
    t, k = target.ravel(), logits.shape[1]
    for j, e in enumerate(EPS):
        bf = brute_force.brute_force(logits[0], e, L, lambda lab: _miou(lab, t, k))
        if np.isnan(bf):
            assert np.isnan(cert.worst[0, j])
            continue
        assert cert.extras["status"][0, j] == 0
        assert cert.worst[0, j] == pytest.approx(bf, abs=1e-9)
        assert bound[0, j] <= cert.worst[0, j] + 1e-9


def test_joint_miou_time_limit_returns_a_proven_bound():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, 6, 6, generator=g)
    target = torch.randint(0, 4, (1, 6, 6), generator=g)
    exact = joint_miou(logits, target, [0.6], lipschitz=1.0, time_limit=60.0)
    rushed = joint_miou(logits, target, [0.6], lipschitz=1.0, time_limit=1e-6)
    assert rushed.extras["status"][0, 0] in (0, 2)
    assert rushed.worst[0, 0] <= exact.worst[0, 0] + 1e-9  # a time-limited answer never overstates
    assert exact.worst[0, 0] <= exact.extras["attack"][0, 0] + 1e-9


@settings(max_examples=25)
@given(tiny_problem(max_pixels=6, max_classes=3), st.lists(st.integers(0, 5), min_size=3, max_size=3))
def test_weighted_exact_equals_brute_force_and_dantzig_is_below(problem, class_w):
    logits, target, L = problem
    k = logits.shape[1]
    w = np.asarray(class_w[:k], dtype=float)
    exact = certify_weighted(logits, target, EPS, w, lipschitz=L, method="exact")
    frac = certify_weighted(logits, target, EPS, w, lipschitz=L, method="dantzig")
    t = target.ravel()
    valid = t != 255
    pw = np.where(valid, w[np.clip(t, 0, k - 1)], 0.0)
    total = pw.sum()
    for j, e in enumerate(EPS):
        if total == 0:
            assert np.isnan(exact.worst[0, j])
            continue
        bf = brute_force.brute_force(logits[0], e, L, lambda lab: float((pw * (lab == t)).sum() / total))
        assert exact.worst[0, j] == pytest.approx(bf, abs=1e-9)
        assert frac.worst[0, j] <= exact.worst[0, j] + 1e-12
    assert frac.status in ("bound", "exact") and exact.status == "exact"


def test_weighted_with_unit_weights_equals_pixel_accuracy_and_masks():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 5, generator=g)
    target = logits.argmax(1)
    target[0, 0] = 255
    unit = certify_weighted(logits, target, [0.1, 0.4], np.ones(3), lipschitz=1.0, method="exact")
    ref = certify_logits(logits, [0.1, 0.4], "pixel_accuracy", target, lipschitz=1.0)
    np.testing.assert_allclose(unit.worst, ref.worst)
    mask = torch.zeros(2, 5, 5)
    mask[:, 2:] = 1.0  # "only this region counts"
    region = certify_weighted(logits, target, [0.4], mask, lipschitz=1.0, method="exact")
    sub = certify_logits(logits[:, :, 2:], [0.4], "pixel_accuracy", target[:, 2:], lipschitz=1.0)
    np.testing.assert_allclose(region.worst, sub.worst)


@given(st.integers(0, 30), st.integers(0, 2**31 - 1))
def test_dantzig_equals_reference_and_bounds_01_optimum(n, seed):
    rng = np.random.default_rng(seed)
    costs = np.round(rng.exponential(size=n), 1)
    values = np.round(rng.exponential(size=n) * 3, 1)
    budgets = np.array([0.0, 0.5, 2.0, 100.0])
    got = dantzig_bound(costs, values, budgets)
    np.testing.assert_allclose(got, reference.dantzig_bound(costs, values, budgets))
    if n <= 10:
        for j, b in enumerate(budgets):
            best = 0.0
            for mask in range(2**n):
                sel = np.array([(mask >> i) & 1 for i in range(n)], dtype=bool)
                if costs[sel].sum() <= b:
                    best = max(best, values[sel].sum())
            assert got[j] >= best - 1e-12


def _weighted_brute_force(logits, target, e, weights, L):
    """Exact worst weighted pixel accuracy of one image (every subset of correct pixels)."""
    import itertools
    from fractions import Fraction

    z = logits[0].reshape(logits.shape[1], -1).astype(np.float64)
    t = target.ravel()
    pred = z.argmax(0)
    top2 = np.sort(z, axis=0)
    margin = [Fraction(top2[-1, p]) - Fraction(top2[-2, p]) for p in range(z.shape[1])]
    w = np.asarray(weights, dtype=np.float64)[t]
    correct = [p for p in range(z.shape[1]) if pred[p] == t[p]]
    best = 0.0
    for r in range(len(correct) + 1):
        for subset in itertools.combinations(correct, r):
            if sum(margin[p] ** 2 / (2 * Fraction(L) ** 2) for p in subset) <= Fraction(e) ** 2:
                best = max(best, sum(w[p] for p in subset))
    return (sum(w[p] for p in correct) - best) / w.sum()


@pytest.mark.parametrize("weights", [[1e-10, 2e-10], [1.0000001, 2.0000001]])
def test_non_integral_weights_are_never_labelled_exact(weights):
    logits = np.array([[[[3.0, 1.0, 2.0]], [[0.0, 0.0, 0.5]]]])
    target = np.array([[[0, 0, 1]]])
    cert = certify_weighted(logits, target, [2.0], weights, lipschitz=1.0, method="exact")
    truth = _weighted_brute_force(logits, target, 2.0, weights, 1.0)
    assert cert.worst[0, 0] <= truth + 1e-12
    assert cert.status != "exact" or cert.worst[0, 0] == pytest.approx(truth, abs=1e-12)
    assert cert.status in ("bound", "exact")


def test_weighted_time_limit_without_a_solution_returns_a_proven_bound():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 8, 8))
    target = logits.argmax(1)
    weights = rng.integers(1, 50, size=(1, 8, 8)).astype(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cert = certify_weighted(logits, target, [1.5], weights, lipschitz=1.0, method="exact", time_limit=1e-9)
    warned = any(issubclass(w.category, lipcert.LipcertWarning) for w in caught)
    assert warned == (cert.status == "time_limit")  # the user is told when the answer is a bound
    exact = certify_weighted(logits, target, [1.5], weights, lipschitz=1.0, method="exact", time_limit=30.0)
    assert exact.status == "exact"
    assert cert.status in ("time_limit", "exact")
    assert cert.worst[0, 0] <= exact.worst[0, 0] + 1e-12


def test_joint_attack_never_below_worst_even_for_logits_one_ulp_apart():
    a = 1.0
    b = np.nextafter(a, 2.0)
    logits = np.array([[[[b, 0.0]], [[a, 1.0]]]])  # pixel 0: margin of 1 ulp, which /L would round away
    target = np.array([[[1, 1]]])
    for L in (3.0, 7.0, 1e6):
        cert = joint_miou(logits, target, [0.0, 1e-9, 0.5], lipschitz=L)
        attack = cert.extras["attack"]
        ok = np.isnan(attack) | (attack >= cert.worst - 1e-12)
        assert ok.all(), (L, cert.worst, attack)


def test_joint_miou_at_tiny_eps_is_exact_without_overflow_warnings():
    import warnings

    logits = np.array([[[[2.0, 0.0, 1.0]], [[0.0, 0.5, 1.5]]]])
    target = np.array([[[0, 1, 1]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = joint_miou(logits, target, [1e-12], lipschitz=1.0)
    assert cert.status == "exact"
    assert cert.worst[0, 0] == pytest.approx(certify_logits(logits, [0.0], "miou", target, lipschitz=1.0).clean[0])


@settings(max_examples=40)
@given(tiny_problem(max_pixels=5, max_classes=4))
def test_the_split_cuts_of_the_joint_solver_never_exceed_a_brute_force_optimum(problem):
    """Each cut bounds the sum of ground-truth IoUs of every affordable labelling with m other classes defined."""
    from lipcert.worst_case.costs import top2
    from lipcert.worst_case.iou import build_iou_problem, iou_per_image
    from lipcert.worst_case.joint import _cuts
    from lipcert.worst_case.unit import budgets_of

    logits, target, L = problem
    t, k = target.ravel(), logits.shape[1]
    z = torch.as_tensor(logits)
    pred, margin = top2(z)
    budgets = budgets_of(np.array(EPS))
    p = build_iou_problem(
        z.double().numpy().reshape(1, k, -1), pred.reshape(1, -1), margin.reshape(1, -1), target.reshape(1, -1),
        L, 255, budgets,
    )  # fmt: skip
    worst, _, _ = iou_per_image(p)
    valid = t != 255
    in_gt = np.bincount(t[valid], minlength=k) > 0

    def sum_and_m(lab):
        inter = [((lab == c) & (t == c) & valid).sum() for c in range(k)]
        union = [(((lab == c) | (t == c)) & valid).sum() for c in range(k)]
        s = sum(inter[c] / union[c] for c in range(k) if in_gt[c])
        return s, sum(1 for c in range(k) if not in_gt[c] and union[c] > 0)

    for j, e in enumerate(EPS):
        if not valid.any():
            continue
        cuts = _cuts(p, worst, 0, j, np.asarray(pred[0]).ravel(), t, valid, k)
        for m, cut in enumerate(cuts):
            if cut is None:
                continue
            best = brute_force.brute_force(
                logits[0], e, L, lambda lab, m=m: sum_and_m(lab)[0] if sum_and_m(lab)[1] == m else np.inf
            )
            assert cut <= best + 1e-9  # inf when no affordable labelling has m other classes defined
