import numpy as np
import pytest
import torch

from lipcert import LipcertError, flip_costs, margins, pixel_radius, targeted_costs


def test_margin_and_costs_by_hand():
    logits = np.array([[[[2.0, 1.0]], [[1.0, 1.0]], [[-1.0, 3.0]]]])  # (1, 3, 1, 2)
    pred, m = margins(logits)
    assert pred.tolist() == [[[0, 2]]]
    assert m.tolist() == [[[1.0, 2.0]]]
    np.testing.assert_allclose(flip_costs(logits, 2.0), [[[1.0 / 8, 4.0 / 8]]])
    np.testing.assert_allclose(pixel_radius(logits, 2.0), [[[1 / (2 * np.sqrt(2)), 2 / (2 * np.sqrt(2))]]])
    tc = targeted_costs(logits, 1.0)
    np.testing.assert_allclose(tc[0, :, 0, 0], [0.0, 0.5, 4.5])
    np.testing.assert_allclose(tc[0, :, 0, 1], [2.0, 2.0, 0.0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_costs_any_float_dtype_float64_out(dtype):
    logits = torch.randn(2, 4, 3, 5).to(dtype)
    c = flip_costs(logits, 1.0)
    assert c.dtype == np.float64 and c.shape == (2, 3, 5)
    top = torch.topk(logits.double(), 2, dim=1).values
    np.testing.assert_array_equal(c, ((top[:, 0] - top[:, 1]) ** 2 / 2).numpy())


def test_ties_cost_zero():
    logits = np.zeros((1, 3, 2, 2))
    assert np.all(flip_costs(logits, 1.0) == 0)


def test_min_targeted_cost_is_flip_cost(rng):
    logits = rng.normal(size=(2, 5, 4, 4))
    tc = targeted_costs(logits, 3.0)
    pred, _ = margins(logits)
    np.put_along_axis(tc, pred[:, None], np.inf, axis=1)
    np.testing.assert_allclose(tc.min(1), flip_costs(logits, 3.0))


@pytest.mark.parametrize(
    "bad",
    [np.ones((1, 2, 2, 2), dtype=np.int64), np.full((1, 2, 2, 2), np.nan), np.ones((2, 2, 2)), np.ones((1, 1, 2, 2))],
)
def test_bad_logits_rejected(bad):
    with pytest.raises(LipcertError):
        flip_costs(bad, 1.0)


@pytest.mark.parametrize("L", [0.0, -1.0, float("inf"), float("nan"), None])
def test_bad_lipschitz_rejected(L):
    with pytest.raises(LipcertError):
        flip_costs(np.ones((1, 2, 1, 1)), L)
