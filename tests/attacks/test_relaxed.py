"""The relaxed witness: a logit map inside the budget, checked independently, never below the relaxation."""

import itertools

import brute_force
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lipcert import CertifiedMetric
from lipcert.attacks.relaxed import miou_drop_table, move_drop, relaxed_miou_witness
from lipcert.core.errors import LipcertError


def _pooled_miou(pred, target, k, ignore=255):
    """Independent pooled mIoU: per-class intersection and union counted with boolean masks."""
    valid = target != ignore
    ious = []
    for c in range(k):
        inter = ((pred == c) & (target == c) & valid).sum()
        union = (((pred == c) | (target == c)) & valid).sum()
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def _change_norms(witness, logits):
    """l2 norm of each image's logit change, recomputed from the returned logits."""
    return np.sqrt(((witness["logits"] - np.asarray(logits)) ** 2).sum(axis=(1, 2, 3)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_witness_is_inside_the_budget_and_its_miou_is_what_its_argmax_gives(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 5))
    logits, target = brute_force.tiny_dataset(rng, int(rng.integers(1, 4)), int(rng.integers(2, 9)), k)
    target[rng.random(target.shape) < 0.1] = 255
    eps, lip = float(rng.choice([0.1, 0.5, 1.0, 3.0])), float(rng.choice([0.5, 1.0, 4.0]))
    w = relaxed_miou_witness(torch.from_numpy(logits), torch.from_numpy(target), eps, lip)
    norms = _change_norms(w, logits)
    assert (norms <= lip * eps).all() and np.allclose(norms, w["norms"])
    pred = w["logits"].argmax(1)
    assert w["miou"] == pytest.approx(_pooled_miou(pred, target, k), nan_ok=True)
    assert w["clean_miou"] == pytest.approx(_pooled_miou(logits.argmax(1), target, k), nan_ok=True)
    assert np.isnan(w["clean_miou"]) or w["miou"] <= w["clean_miou"] + 1e-12  # every flip lowers the mIoU


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_witness_never_beats_the_brute_force_of_the_relaxation_and_every_bound_stays_below_it(seed):
    """Lower-bound costs relax the witness's exact costs: brute force <= witness; sound bounds <= witness."""
    rng = np.random.default_rng(seed)
    logits, target = brute_force.tiny_dataset(rng, 2, 3, 3)
    for e in (0.5, 1.0, 2.0):
        w = relaxed_miou_witness(torch.from_numpy(logits), torch.from_numpy(target), e, 1.0)
        assert brute_force.pooled_miou(logits, target, e, 1.0) <= w["miou"] + 1e-12
        metric = CertifiedMetric("miou", [e], lipschitz=1.0, average="micro")
        metric.update(torch.from_numpy(logits), torch.from_numpy(target))
        cert = metric.compute()
        assert cert.extras["mean_of_classes"][0] <= cert.worst[0] <= w["miou"] + 1e-12


def test_two_classes_the_witness_reaches_the_optimum_when_each_flip_fits_alone():
    """K = 2: the lower-bound cost is exact; budget for one flip per image -> the brute-force optimum."""
    z = torch.tensor([[[[3.0, 0.5, -1.0]], [[0.0, 0.0, 0.0]]], [[[0.0, 0.0, 2.0]], [[1.0, 2.0, 0.0]]]])
    y = torch.tensor([[[0, 0, 1]], [[1, 1, 0]]])
    for e in (0.2, 0.6, 1.0, 2.5):
        w = relaxed_miou_witness(z, y, e, 1.0)
        assert w["miou"] == pytest.approx(brute_force.pooled_miou(z.numpy(), y.numpy(), e, 1.0))


def test_the_shipped_scale_budget_is_spent_and_lowers_the_miou():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 4, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 8, 8), generator=gen)
    w = relaxed_miou_witness(z, y, 0.2, 1.0)
    assert w["flips"] > 0 and w["miou"] < w["clean_miou"]
    assert (w["norms"] > 0.5 * 0.2).all()  # every image spends most of its budget


@pytest.mark.parametrize(
    ("eps", "target", "match"),
    [
        (0.0, None, "eps"),
        (float("nan"), None, "eps"),
        (-1.0, None, "eps"),
        (0.1, 7, "labels"),
        (0.1, "shape", "shape"),
        (1e300, None, "eps"),
        (0.1, "huge", "2\\*\\*161|range|large"),
        (0.1, "nan", "finite|NaN"),
        (0.1, "average", "average"),
    ],
)
def test_bad_inputs_are_refused_in_the_users_terms(eps, target, match):
    z = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    if target == "shape":
        y = torch.zeros(1, 3, 2, dtype=torch.int64)
    elif target == "average":
        y = torch.zeros(1, 2, 2, dtype=torch.int64)
    elif target in ("huge", "nan"):
        z[0, 0, 0, 0] = 1e60 if target == "huge" else float("nan")
        y = torch.zeros(1, 2, 2, dtype=torch.int64)
    else:
        y = torch.zeros(1, 2, 2, dtype=torch.int64) if target is None else torch.full((1, 2, 2), target)
    with pytest.raises(LipcertError, match=match):
        relaxed_miou_witness(z, y, eps, 1.0, average="pooled" if target == "average" else "micro")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_drop_table_equals_recomputing_the_pooled_miou_after_each_move(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    cm = rng.integers(0, 3, (k, k))
    cm[rng.integers(k)] *= int(rng.integers(0, 2))  # sometimes a class without pixels
    cm[0, 0] += 1

    def miou(m):
        inter = np.diag(m).astype(float)
        union = m.sum(0) + m.sum(1) - inter
        return float(np.mean(inter[union > 0] / union[union > 0]))

    table = miou_drop_table(cm)
    for t, j, c in itertools.product(range(k), repeat=3):
        expected = 0.0
        if j != c and cm[t, j] > 0:
            moved = cm.copy()
            moved[t, j] -= 1
            moved[t, c] += 1
            expected = miou(cm) - miou(moved)
            assert move_drop(cm, t, j, c) == pytest.approx(expected, abs=1e-12)
        assert table[t, j, c] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-150, 1e-6, 1.0, 1e6, 1e12, 1e40])
def test_witness_holds_at_the_ends_of_float64_and_on_ties(scale):
    """Huge or tiny logits against the budget, and exact ties: the witness is still inside and consistent."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64) * scale
    z[0, 1] = z[0, 0]  # exact ties: class 0 is the prediction there (first index)
    y = torch.randint(0, 3, (2, 4, 4), generator=gen)
    for eps in (1e-3, 0.1, 10.0):
        w = relaxed_miou_witness(z, y, eps, 1.0)
        assert (_change_norms(w, z.numpy()) <= eps).all()
        assert w["miou"] == pytest.approx(_pooled_miou(w["logits"].argmax(1), y.numpy(), 3))


def test_a_batch_without_labelled_pixels_gives_an_undefined_miou_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = relaxed_miou_witness(torch.randn(2, 3, 2, 2), torch.full((2, 2, 2), 255), 0.1, 1.0)
    assert np.isnan(w["miou"]) and np.isnan(w["clean_miou"]) and w["flips"] == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_macro_witness_is_per_image_and_above_every_per_image_bound_and_brute_force(seed):
    from lipcert import certify_logits

    rng = np.random.default_rng(seed)
    logits, target = brute_force.tiny_dataset(rng, 3, 3, 3)
    for e in (0.5, 1.0, 2.0):
        w = relaxed_miou_witness(torch.from_numpy(logits), torch.from_numpy(target), e, 1.0, average="macro")
        cert = certify_logits(torch.from_numpy(logits), [e], "miou", torch.from_numpy(target), lipschitz=1.0)
        assert (_change_norms(w, logits) <= e).all()
        pred = w["logits"].argmax(1)
        for i in range(3):
            assert w["per_image"][i] == pytest.approx(_pooled_miou(pred[i], target[i], 3))
            assert cert.worst[i, 0] <= w["per_image"][i] + 1e-12
            exact = brute_force.pooled_miou(logits[i : i + 1], target[i : i + 1], e, 1.0)
            assert exact <= w["per_image"][i] + 1e-12
        assert w["miou"] == pytest.approx(np.mean(w["per_image"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rounds": 0}, "rounds"), ({"rounds": 1.5}, "rounds"), ({"ignore_index": "none"}, "ignore_index"),
     ({"lipschitz": -1.0}, "L|lipschitz"), ({"average": None}, "average")],
)  # fmt: skip
def test_bad_options_are_refused_naming_them(kwargs, match):
    args = {"eps": 0.1, "lipschitz": 1.0, **kwargs}
    with pytest.raises(LipcertError, match=match):
        relaxed_miou_witness(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), **args)
