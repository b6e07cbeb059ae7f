import numpy as np
import pytest
import torch

from lipcert import CertifiedMetric, LipcertError, certify_logits


def _batches(seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        logits = torch.randn(2, 4, 5, 5, generator=g)
        target = torch.randint(0, 4, (2, 5, 5), generator=g)
        target[0, :2] = 255
        yield logits, target


@pytest.mark.parametrize("metric", ["pixel_accuracy", "recall", "fnr", "stability"])
def test_micro_pools_and_macro_averages(metric):
    eps = [0.0, 0.5, 1.0]
    micro = CertifiedMetric(metric, eps, lipschitz=1.0, average="micro")
    macro = CertifiedMetric(metric, eps, lipschitz=1.0, average="macro")
    per_image, nums, dens = [], [], []
    for logits, target in _batches():
        micro.update(logits, target)
        macro.update(logits, target)
        cert = certify_logits(logits, eps, metric, target, lipschitz=1.0)
        per_image.append(cert.worst)
        valid = (target != 255).numpy()
        if metric == "pixel_accuracy":
            nums.append(cert.worst * valid.sum((1, 2))[:, None])
            dens.append(valid.sum((1, 2)))
    per_image = np.concatenate(per_image)
    np.testing.assert_allclose(macro.compute().worst, np.nanmean(per_image, 0))
    if metric == "pixel_accuracy":
        np.testing.assert_allclose(micro.compute().worst, np.concatenate(nums).sum(0) / np.sum(dens))
    c = micro.compute()
    assert c.average == "micro" and macro.compute().average == "macro"
    assert c.worst.shape == ((3, 4) if metric in ("recall", "fnr") else (3,))


def test_reset_and_compute_before_update():
    m = CertifiedMetric("pixel_accuracy", 0.1, lipschitz=1.0)
    with pytest.raises(ValueError):
        m.compute()
    logits, target = next(_batches())
    m.update(logits, target)
    first = m.compute().worst
    m.update(logits, target)
    np.testing.assert_allclose(m.compute().worst, first)  # same data twice: same pooled ratio
    m.reset()
    with pytest.raises(ValueError):
        m.compute()


def test_bad_arguments():
    with pytest.raises(LipcertError):
        CertifiedMetric("pixel_accuracy", 0.1, lipschitz=1.0, average="weighted")
    with pytest.raises(LipcertError):
        CertifiedMetric("pixel_accuracy", 0.1, lipschitz=None)
