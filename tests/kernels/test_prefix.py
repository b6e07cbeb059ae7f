import numpy as np
import reference
from hypothesis import given
from hypothesis import strategies as st

from lipcert.kernels import grouped_sorted_prefix, segment_value_at


@given(st.integers(0, 60), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_numba_equals_numpy_twin(n, n_groups, seed):
    rng = np.random.default_rng(seed)
    costs = np.round(rng.exponential(size=n), 2)  # rounding creates ties
    group = rng.integers(-1, n_groups, size=n).astype(np.int64)
    a = grouped_sorted_prefix(costs, group, n_groups)
    b = reference.grouped_sorted_prefix(costs, group, n_groups)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # identical numbers, not just close
    for x, y in zip(
        grouped_sorted_prefix(costs, group, n_groups, 1.0),
        reference.grouped_sorted_prefix(costs, group, n_groups, 1.0),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    offsets, values, prefix = a
    thr = np.concatenate([[0.0], rng.exponential(size=4) * 3])
    # the cap changes no count for thresholds <= cap
    cap = float(thr.max())
    co, _, cp = grouped_sorted_prefix(costs, group, n_groups, cap)
    count = reference.segment_count_leq
    np.testing.assert_array_equal(count(co, cp, thr), count(offsets, prefix, thr))
    ks = rng.integers(-1, n + 2, size=(n_groups, 3)).astype(np.int64)
    expected = reference.segment_value_at(offsets, prefix, ks)
    np.testing.assert_array_equal(segment_value_at(offsets, prefix, ks), expected)


def test_prefix_by_hand():
    costs = np.array([3.0, 1.0, 2.0, 5.0])
    group = np.array([0, 0, -1, 1], dtype=np.int64)
    offsets, values, prefix = grouped_sorted_prefix(costs, group, 2)
    assert offsets.tolist() == [0, 2, 3]
    assert values.tolist() == [1.0, 3.0, 5.0]
    assert prefix.tolist() == [1.0, 4.0, 5.0]
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
    ref = reference.top2_margin(logits)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert got[2] is True and ref[2] is True
    logits[0, -1, 0] = np.nan
    assert bool(top2_margin(logits)[2]) is False and bool(reference.top2_margin(logits)[2]) is False
