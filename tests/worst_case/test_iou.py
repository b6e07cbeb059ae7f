import itertools

import brute_force
import numpy as np
import pytest
import reference
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_certify import tiny_problem

from lipcert import CertifiedMetric, certify_logits, joint_miou
from lipcert.kernels import iou_worst
from lipcert.worst_case.iou import dinkelbach_min_ratio

EPS = [0.0, 0.4, 1.0, 2.0]


@given(tiny_problem())
def test_per_image_iou_equals_brute_force(problem):
    logits, target, L = problem
    cert = certify_logits(logits, EPS, "iou", target, lipschitz=L)
    t = target.ravel()
    for c in range(logits.shape[1]):
        for j, e in enumerate(EPS):
            bf = brute_force.brute_force(logits[0], e, L, lambda lab, c=c: brute_force.iou(lab, t, c))
            np.testing.assert_allclose(cert.worst[0, j, c], bf, equal_nan=True)
    assert np.all((cert.naive <= cert.worst) | np.isnan(cert.worst))


@given(tiny_problem(max_pixels=4, max_classes=3))
def test_miou_bound_is_below_the_joint_brute_force_optimum(problem):
    logits, target, L = problem
    cert = certify_logits(logits, EPS, "miou", target, lipschitz=L)
    t = target.ravel()
    k = logits.shape[1]

    def miou(lab):
        vals = [brute_force.iou(lab, t, c) for c in range(k)]
        vals = [v for v in vals if not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    for j, e in enumerate(EPS):
        bf = brute_force.brute_force(logits[0], e, L, miou)
        if np.isnan(bf):
            assert np.isnan(cert.worst[0, j])
        else:
            assert cert.worst[0, j] <= bf + 1e-12


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 2**31 - 1))
def test_iou_kernel_equals_twin(n_tp, n_fp, seed):
    rng = np.random.default_rng(seed)
    tp = np.cumsum(np.round(rng.exponential(size=n_tp), 1))
    fp = np.cumsum(np.round(rng.exponential(size=n_fp), 1))
    off_t, off_f = np.array([0, n_tp]), np.array([0, n_fp])
    tp0 = np.array([n_tp + int(rng.integers(0, 3))]) if n_tp else np.array([int(rng.integers(0, 2))])
    union0 = tp0 + rng.integers(0, 5, size=1)
    budgets = np.array([0.0, 0.5, 2.0, 10.0])
    got = iou_worst(off_t, tp, off_f, fp, tp0, union0, budgets)
    ref = reference.iou_worst(off_t, tp, off_f, fp, tp0, union0, budgets)
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_array_equal(x, y)


def test_reference_counter_example_pooled_iou():
    # image 1 may end at 5/10 or 1/3, image 2 is fixed at 100/100: per-image minimisers give 101/103 = 0.981,
    # the pooled optimum is 105/110 = 0.955 (the reference code's aggregation is not a sound bound).
    num = np.array([5, 1, 100])
    den = np.array([10, 3, 100])
    ratio, choice = dinkelbach_min_ratio(num, den, np.array([2, 1]))
    assert ratio == 105 / 110 and choice.tolist() == [0, 2]


@given(
    st.lists(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=4), min_size=1, max_size=4)
)
def test_dinkelbach_equals_enumeration(images):
    num = np.array([n for img in images for n, _ in img])
    den = np.array([d for img in images for _, d in img])
    lens = np.array([len(img) for img in images])
    best = np.inf
    for combo in itertools.product(*images):
        d = sum(x[1] for x in combo)
        if d > 0:
            best = min(best, sum(x[0] for x in combo) / d)
    ratio, _ = dinkelbach_min_ratio(num, den, lens)
    if np.isinf(best):
        assert np.isnan(ratio)  # every combination has an empty union
    else:
        assert ratio == best


@given(st.integers(0, 2**31 - 1))
def test_pooled_iou_equals_enumeration_over_image_frontiers(seed):
    rng = np.random.default_rng(seed)
    logits = rng.integers(-2, 3, size=(3, 2, 1, 3)).astype(np.float64)
    target = rng.integers(0, 2, size=(3, 1, 3))
    eps = [0.0, 0.8, 1.6]
    acc = CertifiedMetric("iou", eps, lipschitz=1.0, average="micro")
    acc.update(torch.from_numpy(logits), torch.from_numpy(target))
    got = acc.compute().worst
    # enumerate, per image, every affordable assignment's (intersection, union) and pool
    for j, e in enumerate(eps):
        for c in range(2):
            options = []
            for i in range(3):
                t = target[i].ravel()
                opts = set()
                for lab in brute_force.affordable_assignments(logits[i], e, 1.0):
                    inter = int(((lab == c) & (t == c)).sum())
                    union = int(((lab == c) | (t == c)).sum())
                    opts.add((inter, union))
                options.append(opts)
            best = np.inf
            for combo in itertools.product(*options):
                u = sum(x[1] for x in combo)
                if u:
                    best = min(best, sum(x[0] for x in combo) / u)
            expected = np.nan if np.isinf(best) else best
            np.testing.assert_allclose(got[j, c], expected, equal_nan=True)


def test_pooled_and_macro_miou_shapes_and_absent_class_counts():
    logits = torch.tensor([[[[3.0, 3.0]], [[0.0, 2.9]]], [[[3.0, 3.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[0, 1]], [[0, 0]]])
    micro = CertifiedMetric("iou", [0.0, 0.1], lipschitz=1.0)
    micro.update(logits, target)
    cert = micro.compute()
    # class 0: image 1 has TP 1 / union 2, image 2 TP 2 / union 2; the only cheap pixel (margin 0.1) is a
    # false positive of class 0, and flipping it back can only help: pooled 3/4 at both radii
    assert cert.worst.shape == (2, 2)
    assert cert.worst[:, 0].tolist() == [0.75, 0.75] and cert.worst[:, 1].tolist() == [0.0, 0.0]
    macro = CertifiedMetric("miou", [0.0, 0.1], lipschitz=1.0, average="macro")
    macro.update(logits, target)
    assert macro.compute().worst.shape == (2,)


@given(tiny_problem(max_pixels=5, max_classes=4))
def test_split_miou_bound_lies_between_the_mean_of_classes_and_the_joint_optimum(problem):
    logits, target, L = problem
    cert = certify_logits(logits, EPS, "miou", target, lipschitz=L)
    mean_of_classes = cert.extras["mean_of_classes"]
    ok = np.isnan(cert.worst) | (cert.worst >= mean_of_classes - 1e-12)
    assert ok.all() and np.array_equal(np.isnan(cert.worst), np.isnan(mean_of_classes))
    exact = joint_miou(logits, target, EPS, lipschitz=L)
    for j in range(len(EPS)):
        if exact.extras["status"][0, j] == 0 and not np.isnan(exact.worst[0, j]):
            assert cert.worst[0, j] <= exact.worst[0, j] + 1e-12


def test_split_miou_is_strictly_tighter_when_the_budget_cannot_break_every_class():
    m = 2.0
    logits = np.zeros((1, 3, 1, 3))
    for p in range(3):
        logits[0, p, 0, p] = m  # pixel p predicts class p with margin m to both others
    target = np.array([[[0, 1, 2]]])
    e = m / np.sqrt(2.0)  # exactly one pixel's flip cost m**2 / 2
    cert = certify_logits(logits, [e], "miou", target, lipschitz=1.0)
    assert cert.extras["mean_of_classes"][0, 0] == pytest.approx(0.0)
    assert cert.worst[0, 0] == pytest.approx(1 / 3)  # two classes broken at most
    exact = joint_miou(logits, target, [e], lipschitz=1.0)
    assert exact.worst[0, 0] == pytest.approx(0.5)  # one flip: IoUs 0, 1/2, 1
