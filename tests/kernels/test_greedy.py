"""The two-pass greedy (candidates + histograms, then flip counts) against its numpy reference."""

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

from lipcert.kernels import grouped_flip_counts, unit_candidates, unit_certificate


def _both(logits, target, per_class, correct_only, lipschitz, eps, complement=False):
    """The kernels' answers (radii, flip counts, clean and valid counts) equal the reference's."""
    budgets = eps * eps * (1 + 1e-9)
    cap = float(budgets.max())
    ans = reference.unit_answers(logits, target, 255, per_class, correct_only, lipschitz, budgets)
    got = unit_candidates(logits, target, 255, per_class, correct_only, lipschitz, cap)
    np.testing.assert_array_equal(got[0], ans["radius"])
    for x, key in zip(got[5:], ("clean", "den", "finite", "labels_ok"), strict=True):
        np.testing.assert_array_equal(x, ans[key])
    b, k = logits.shape[:2]
    g = k if per_class else 1
    flips = grouped_flip_counts(*got[1:5], b, g, budgets, cap)
    np.testing.assert_array_equal(flips[0], ans["joint"])
    np.testing.assert_array_equal(flips[1], ans["single"])
    fused = unit_certificate(logits, target, 255, per_class, correct_only, lipschitz, eps, 1e-9, complement)
    fused_ref = reference.unit_certificate(
        logits, target, 255, per_class, correct_only, lipschitz, eps, 1e-9, complement
    )
    for x, y in zip(fused, fused_ref, strict=True):
        np.testing.assert_array_equal(x, y)
    return got, flips


@given(
    st.integers(1, 3), st.integers(2, 5), st.integers(1, 40), st.integers(0, 2**31 - 1), st.booleans(), st.booleans()
)
def test_small_inputs_with_ties_equal_the_sorted_running_sums(b, k, n, seed, per_class, correct_only):
    rng = np.random.default_rng(seed)
    logits = rng.integers(-2, 3, size=(b, k, n)).astype(np.float32)  # many exact ties (cost 0)
    target = rng.choice(list(range(k)) + [255], size=(b, n)).astype(np.int64)
    eps = np.concatenate([[0.0], rng.exponential(size=4) * 2])
    _both(logits, target, per_class, correct_only, 1.0, eps, complement=bool(seed % 2))


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "eps",
    [
        np.array([0.0, 0.01, 0.1, 0.55, 1.4, 6.3]),
        np.random.default_rng(1).permutation(np.linspace(0.0, 3.0, 64)),  # many radii per bin, any order
    ],
    ids=["6 radii", "64 radii"],
)
def test_several_blocks_and_tiles_equal_the_reference(per_class, dtype, eps):
    rng = np.random.default_rng(3)
    b, k, n = 2, 4, 9001  # three blocks of pixels per image, the last one short; many tiles
    logits = rng.normal(size=(b, k, n)).astype(dtype)
    target = rng.choice([0, 1, 2, 3, 255], size=(b, n), p=[0.4, 0.3, 0.2, 0.05, 0.05]).astype(np.int64)
    target[:, : n // 2] = logits[:, :, : n // 2].argmax(1)  # many correct pixels
    budgets = eps * eps * (1 + 1e-9)
    got, (joint, single) = _both(logits, target, per_class, True, 0.5, eps)
    # and against a direct sort of every group's costs
    cost = reference.top2_margin(logits)[1] ** 2 * 2.0  # L = 0.5
    np.testing.assert_allclose(got[0], reference.top2_margin(logits)[1] / (np.sqrt(2) * 0.5))
    correct = (logits.argmax(1) == target) & (target != 255)
    for i in range(b):
        for g in range(k if per_class else 1):
            c = np.sort(cost[i][correct[i] & ((target[i] == g) if per_class else True)])
            np.testing.assert_array_equal(joint[i, g], np.searchsorted(np.cumsum(c), budgets, side="right"))
            np.testing.assert_array_equal(single[i, g], np.searchsorted(c, budgets, side="right"))


def test_cap_zero_keeps_only_ties_and_cap_inf_keeps_every_candidate():
    logits = np.array([[[1.0, 2.0, 0.0, 5.0], [1.0, 0.0, 0.0, 1.0]]], dtype=np.float32)
    target = np.array([[0, 0, 1, 0]])
    got = unit_candidates(logits, target, 255, False, True, 1.0, 0.0)
    np.testing.assert_array_equal(got[0] * np.sqrt(2), [[0.0, 2.0, 0.0, 4.0]])
    # cap 0: only pixel 0 (a tie, predicted 0 = its label) can be flipped, and it costs nothing
    assert grouped_flip_counts(*got[1:5], 1, 1, np.array([0.0]), 0.0)[0].tolist() == [[[1]]]
    # cap inf: the three correct pixels cost 0, 2 and 8 (pixel 2, a tie predicted 0, is wrong already)
    got = unit_candidates(logits, target, 255, False, True, 1.0, np.inf)
    joint, single = grouped_flip_counts(*got[1:5], 1, 1, np.array([0.0, 2.0, 9.9, 10.0]), np.inf)
    assert joint.tolist() == [[[1, 2, 2, 3]]] and single.tolist() == [[[1, 2, 3, 3]]]


def test_bad_inputs_are_flagged():
    logits = np.zeros((1, 2, 5), dtype=np.float32)
    target = np.array([[0, 1, 2, 255, 0]])  # label 2 is out of range for K = 2
    assert bool(unit_candidates(logits, target, 255, False, True, 1.0, 1.0)[-1]) is False
    assert reference.unit_answers(logits, target, 255, False, True, 1.0, np.array([1.0]))["labels_ok"] is False
    eps = np.array([1.0])
    assert bool(unit_certificate(logits, target, 255, False, True, 1.0, eps, 0.0, False)[-1]) is False
    logits[0, 1, 3] = np.nan  # on an ignored pixel: still refused
    assert bool(unit_candidates(logits, np.zeros((1, 5), np.int64), 255, False, True, 1.0, 1.0)[-2]) is False
    assert (
        bool(unit_certificate(logits, np.zeros((1, 5), np.int64), 255, False, True, 1.0, eps, 0.0, False)[-2]) is False
    )


@pytest.mark.parametrize("eps", [[0.0], [0.0, 0.0], [2.0, 0.0, 0.5]])
def test_zero_and_unsorted_radii(eps):
    rng = np.random.default_rng(1)
    logits = rng.integers(-2, 3, size=(2, 3, 50)).astype(np.float32)  # ties: cost 0, flippable at eps 0
    target = rng.choice([0, 1, 2, 255], size=(2, 50)).astype(np.int64)
    _both(logits, target, False, True, 1.0, np.array(eps))
    _both(logits, target, True, True, 1.0, np.array(eps), complement=True)


@given(st.integers(0, 2**31 - 1))
def test_pass_two_split_over_threads_equals_the_per_image_pass(seed):
    """One large image with several groups is split over the threads; with one thread it is not."""
    import numba

    rng = np.random.default_rng(seed)
    b, k, n = int(rng.integers(1, 3)), int(rng.integers(2, 12)), int(rng.choice([300, 9000]))
    logits = rng.normal(size=(b, k, n)) * rng.choice([0.01, 1.0, 3.0])
    target = np.where(rng.random((b, n)) < 0.8, logits.argmax(1), rng.integers(0, k, (b, n)))
    budgets = np.sort(rng.uniform(0.0, 2.0, int(rng.integers(1, 70))))
    got = unit_candidates(logits, target, 255, True, True, 1.0, float(budgets.max()))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # images in parallel (here: one after the other), each serially
        serial = grouped_flip_counts(*got[1:5], b, k, budgets, float(budgets.max()))
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        split = grouped_flip_counts(*got[1:5], b, k, budgets, float(budgets.max()))
    finally:
        numba.set_num_threads(before)
    ans = reference.unit_answers(logits, target, 255, True, True, 1.0, budgets)
    for x, y, key in zip(serial, split, ("joint", "single"), strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, ans[key])
