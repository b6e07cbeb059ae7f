"""One harness for every accumulator: torchmetrics semantics, split invariance, reset, pickle, state_dict."""

import pickle

import numpy as np
import pytest
import torch
import torchmetrics

import lipcert
from lipcert import METRICS, CertifiedMetric, certify_logits
from lipcert.metrics import AbstainMetrics

EPS = [0.0, 0.15, 0.6]


def _data(seed, b=4, k=3, h=4, w=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (b, h, w), generator=g)
    target[:, 0, 0] = 255
    return logits, target


def _arrays(cert):
    return [np.asarray(v, dtype=float) for v in (cert.worst, cert.naive, cert.clean)]


def _assert_same(a, b, exact):
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        assert x.shape == y.shape
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15)


CASES = [(m, a) for m in METRICS for a in ("macro", "micro")]


def test_the_accumulators_are_torchmetrics_metrics():
    assert issubclass(lipcert.CertifiedMetric, torchmetrics.Metric)
    assert issubclass(AbstainMetrics, torchmetrics.Metric)
    assert CertifiedMetric.full_state_update is False and AbstainMetrics.full_state_update is False
    assert CertifiedMetric("fnr", 0.1, lipschitz=1.0).higher_is_better is False
    assert CertifiedMetric("iou", 0.1, lipschitz=1.0).higher_is_better is True


@pytest.mark.parametrize(("metric", "average"), CASES)
def test_split_invariance_reset_pickle_state_dict_and_forward(metric, average):
    (xa, ya), (xb, yb) = _data(1), _data(2)
    whole = CertifiedMetric(metric, EPS, lipschitz=1.2, average=average)
    whole.update(torch.cat([xa, xb]), torch.cat([ya, yb]))
    split = CertifiedMetric(metric, EPS, lipschitz=1.2, average=average)
    split.update(xa, ya)
    split.update(xb, yb)
    # micro: ratios of integer counts (exact); macro: the same per-image values added in another grouping
    _assert_same(whole.compute(), split.compute(), exact=average == "micro")
    assert split.compute().extras["n_images"] == 8
    # pickle and state_dict carry the whole state
    _assert_same(pickle.loads(pickle.dumps(split)).compute(), split.compute(), exact=True)
    loaded = CertifiedMetric(metric, EPS, lipschitz=1.2, average=average)
    loaded.load_state_dict(split.state_dict())
    _assert_same(loaded.compute(), split.compute(), exact=True)
    # forward: the batch's own certificate, and the batch joins the accumulated state
    fwd = CertifiedMetric(metric, EPS, lipschitz=1.2, average=average)
    fwd.update(xa, ya)
    batch_cert = fwd(xb, yb)
    only_b = CertifiedMetric(metric, EPS, lipschitz=1.2, average=average)
    only_b.update(xb, yb)
    _assert_same(batch_cert, only_b.compute(), exact=True)
    _assert_same(fwd.compute(), split.compute(), exact=True)
    # reset forgets everything: the next dataset is certified alone
    split.reset()
    split.update(xb, yb)
    _assert_same(split.compute(), only_b.compute(), exact=True)
    # .to(device) keeps the numbers
    _assert_same(split.to("cpu").compute(), only_b.compute(), exact=True)


@pytest.mark.parametrize("metric", METRICS)
def test_macro_is_the_mean_of_the_functional_per_image_certificates(metric):
    logits, target = _data(3)
    acc = CertifiedMetric(metric, EPS, lipschitz=0.9, average="macro")
    acc.update(logits, target)
    per_image = certify_logits(logits, EPS, metric, target, lipschitz=0.9)
    worst = per_image.worst if metric != "fnr" else 1.0 - per_image.worst  # fnr: mean of recalls, complemented
    expected = np.nanmean(worst, axis=0)
    expected = expected if metric != "fnr" else 1.0 - expected
    np.testing.assert_allclose(acc.compute().worst, expected, rtol=1e-12)


def test_abstain_metrics_split_invariance_pickle_and_state_dict():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 3, size=(6, 4, 5))
    target = rng.integers(0, 3, size=(6, 4, 5))
    whole, split = AbstainMetrics(3), AbstainMetrics(3)
    whole.update(labels, target)
    split.update(labels[:2], target[:2])
    split.update(labels[2:], target[2:])
    a, b = whole.compute(), split.compute()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    c = pickle.loads(pickle.dumps(split)).compute()
    loaded = AbstainMetrics(3)
    loaded.load_state_dict(split.state_dict())
    for key in a:
        np.testing.assert_array_equal(np.asarray(c[key]), np.asarray(b[key]))
        np.testing.assert_array_equal(np.asarray(loaded.compute()[key]), np.asarray(b[key]))
    split.reset()
    split.update(labels[:1], target[:1])
    assert split.compute()["certified_pixel_accuracy_micro"] == pytest.approx(float((labels[0] == target[0]).mean()))
