import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lipcert.kernels import grouped_sorted_prefix, segment_count_leq, segment_value_at, twins


@given(st.integers(0, 60), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_numba_equals_numpy_twin(n, n_groups, seed):
    rng = np.random.default_rng(seed)
    costs = np.round(rng.exponential(size=n), 2)  # rounding creates ties
    group = rng.integers(-1, n_groups, size=n).astype(np.int64)
    a = grouped_sorted_prefix(costs, group, n_groups)
    b = twins.grouped_sorted_prefix(costs, group, n_groups)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # identical numbers, not just close
    for x, y in zip(
        grouped_sorted_prefix(costs, group, n_groups, 1.0),
        twins.grouped_sorted_prefix(costs, group, n_groups, 1.0),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    offsets, values, prefix = a
    thr = np.concatenate([[0.0], rng.exponential(size=4) * 3])
    np.testing.assert_array_equal(
        segment_count_leq(offsets, prefix, thr), twins.segment_count_leq(offsets, prefix, thr)
    )
    # the cap changes no count for thresholds <= cap
    cap = float(thr.max())
    co, _, cp = grouped_sorted_prefix(costs, group, n_groups, cap)
    np.testing.assert_array_equal(segment_count_leq(co, cp, thr), segment_count_leq(offsets, prefix, thr))
    ks = rng.integers(-1, n + 2, size=(n_groups, 3)).astype(np.int64)
    np.testing.assert_array_equal(segment_value_at(offsets, prefix, ks), twins.segment_value_at(offsets, prefix, ks))


def test_prefix_by_hand():
    costs = np.array([3.0, 1.0, 2.0, 5.0])
    group = np.array([0, 0, -1, 1], dtype=np.int64)
    offsets, values, prefix = grouped_sorted_prefix(costs, group, 2)
    assert offsets.tolist() == [0, 2, 3]
    assert values.tolist() == [1.0, 3.0, 5.0]
    assert prefix.tolist() == [1.0, 4.0, 5.0]
    assert segment_count_leq(offsets, prefix, np.array([0.5, 4.0, 5.0])).tolist() == [[0, 2, 2], [0, 0, 1]]
    assert segment_value_at(offsets, prefix, np.array([[0, 2], [1, 2]])).tolist() == [[0.0, 4.0], [5.0, np.inf]]


@given(
    st.integers(1, 3),
    st.integers(2, 6),
    st.integers(1, 30),
    st.integers(0, 2**31 - 1),
    st.sampled_from([np.float32, np.float64]),
)
def test_top2_margin_equals_numpy_twin(b, k, n, seed, dtype):
    from lipcert.kernels import top2_margin

    rng = np.random.default_rng(seed)
    logits = rng.integers(-2, 3, size=(b, k, n)).astype(dtype)  # many exact ties
    got = top2_margin(logits)
    ref = twins.top2_margin(logits)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert got[2] is True and ref[2] is True
    logits[0, -1, 0] = np.nan
    assert top2_margin(logits)[2] is False and twins.top2_margin(logits)[2] is False


@given(
    st.integers(1, 3), st.integers(2, 5), st.integers(1, 30), st.integers(0, 2**31 - 1), st.booleans(), st.booleans()
)
def test_unit_candidates_equals_numpy_twin(b, k, n, seed, per_class, correct_only):
    from lipcert.kernels import unit_candidates

    rng = np.random.default_rng(seed)
    logits = rng.integers(-2, 3, size=(b, k, n)).astype(np.float32)
    target = rng.choice(list(range(k)) + [255], size=(b, n)).astype(np.int64)
    got = unit_candidates(logits, target, 255, per_class, correct_only, 0.5)
    ref = twins.unit_candidates(logits, target, 255, per_class, correct_only, 0.5)
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_array_equal(x, y)
    target[0, 0] = k  # an invalid label is reported by both
    assert unit_candidates(logits, target, 255, per_class, correct_only, 0.5)[-1] is False
    assert twins.unit_candidates(logits, target, 255, per_class, correct_only, 0.5)[-1] is False


@given(st.integers(0, 80), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_linear_time_flip_counts_equal_the_sorted_prefix_search(n, n_groups, seed):
    from lipcert.kernels import grouped_flip_counts

    rng = np.random.default_rng(seed)
    costs = np.round(rng.exponential(size=n), 2) * rng.integers(0, 2, size=n)  # zeros (ties) and repeats
    group = rng.integers(-1, n_groups, size=n).astype(np.int64)
    budgets = np.concatenate([[0.0], np.sort(rng.exponential(size=5) * 4) * (1 + 1e-9)])
    got = grouped_flip_counts(costs, group, n_groups, budgets)
    ref = twins.grouped_flip_counts(costs, group, n_groups, budgets)
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_array_equal(x, y)
