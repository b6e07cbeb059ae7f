import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binomtest

from lipcert import LipcertError
from lipcert.smoothing import (
    AbstainMetrics,
    min_samples,
    pvalues,
    reject,
    segcertify,
    segcertify_from_samples,
    tau_ceiling,
    tau_for_radius,
)


def _holm_reference(p, alpha):
    order = np.argsort(p, kind="stable")
    out = np.zeros(len(p), dtype=bool)
    for rank, idx in enumerate(order):
        if p[idx] > alpha / (len(p) - rank):
            break
        out[idx] = True
    return out


def test_pvalues_match_scipy_binomtest():
    counts = np.array([0, 5, 50, 80, 99, 100])
    expected = [binomtest(int(c), 100, 0.75, alternative="greater").pvalue for c in counts]
    np.testing.assert_allclose(pvalues(counts, 100, 0.75), expected, rtol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_sorted_step_down_and_dominates_bonferroni(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(70, 101, size=500)
    p = pvalues(counts, 100, 0.7)
    holm = reject(counts, 100, 0.7, 0.05, "holm")
    np.testing.assert_array_equal(holm, _holm_reference(p, 0.05))
    bonf = reject(counts, 100, 0.7, 0.05, "bonferroni")
    assert np.all(holm >= bonf) and holm.sum() >= bonf.sum()
    kf = reject(counts, 100, 0.7, 0.05, "kfwer", k=5)
    assert np.all(kf >= holm)


def test_false_certification_rate_is_at_most_alpha():
    # every pixel's true probability of its class equals tau: H0 holds everywhere, any certification is false
    rng = np.random.default_rng(0)
    n0, n, tau, alpha, runs, pixels = 10, 100, 0.8, 0.1, 400, 50
    bad = 0
    for _ in range(runs):
        draws = (rng.random((n0 + n, pixels)) >= tau).astype(np.int64)  # class 0 with probability tau
        draws[:n0] = 0  # the selection picks class 0, as it would with high probability
        res = segcertify_from_samples(draws, n0, tau, alpha, sigma=0.25, correction="holm")
        bad += bool((res.labels != -1).any())
    assert bad / runs <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)


def test_from_samples_matches_a_direct_computation():
    samples = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 1, 1]] * 20)
    n0, tau, alpha = 6, 0.6, 0.05
    res = segcertify_from_samples(samples, n0, tau, alpha, sigma=0.5)
    sel, est = samples[:n0], samples[n0:]
    mode = np.array([np.bincount(sel[:, j]).argmax() for j in range(3)])
    counts = (est == mode).sum(0)
    p = np.array([binomtest(int(c), len(est), tau, alternative="greater").pvalue for c in counts])
    expected = np.where(_holm_reference(p, alpha), mode, -1)
    np.testing.assert_array_equal(res.labels, expected)
    assert res.radius == pytest.approx(0.5 * 0.2533471, rel=1e-6)


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return torch.cat([x[:, :1], -x[:, :1]], 1)  # class 0 where the first channel is positive


def test_noise_is_fresh_for_every_sample_within_a_batch():
    model = _Recorder()
    x = torch.full((1, 4, 4), 0.5)
    segcertify(model, x, sigma=0.5, n0=4, n=60, tau=0.6, alpha=0.5, batch_size=16)
    noise = torch.cat(model.inputs) - x
    flat = noise.reshape(noise.shape[0], -1)
    for i in range(1, flat.shape[0]):
        assert not torch.equal(flat[i], flat[i - 1])  # reused noise would repeat rows within a batch
    corr = torch.corrcoef(flat)
    off = corr[~torch.eye(len(corr), dtype=torch.bool)]
    assert off.abs().mean() < 0.3


def test_seeded_runs_are_reproducible_and_model_mode_restored():
    model = _Recorder().train()
    x = torch.rand(2, 1, 4, 4) - 0.5
    a = segcertify(model, x, 0.25, 5, 50, 0.6, 0.1, generator=torch.Generator().manual_seed(1))
    b = segcertify(model, x, 0.25, 5, 50, 0.6, 0.1, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.labels.shape == (2, 4, 4) and model.training and a.n_forward == 55
    assert set(a.timings) == {"sampling", "testing", "correction"}


def test_tau_ceiling_and_small_n_raise():
    x = torch.rand(1, 8, 8)
    ceiling = tau_ceiling(50, 64, 0.01)
    with pytest.raises(LipcertError, match="ceiling"):
        segcertify(_Recorder(), x, 0.25, 5, 50, min(0.999, ceiling + 0.01), 0.01)
    with pytest.raises(LipcertError, match="too few"):
        segcertify(_Recorder(), x, 0.25, 5, 5, 0.6, 0.001)
    assert tau_for_radius(0.0, 0.3) == 0.5
    n = min_samples(0.9, 64, 0.01)
    assert 0.9**n <= 0.01 / 64 < 0.9 ** (n - 1)


def test_abstain_metrics_macro_micro():
    m = AbstainMetrics(2)
    m.update(np.array([[[0, -1]], [[1, 1]]]), np.array([[[0, 0]], [[1, 255]]]))
    out = m.compute()
    assert out["certified_pixel_accuracy_micro"] == pytest.approx(2 / 3)
    assert out["certified_pixel_accuracy_macro"] == pytest.approx(0.75)
    assert out["abstain_rate_micro"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(out["certified_map_iou_micro"], [0.5, 1.0])
    np.testing.assert_allclose(out["certified_recall_micro"], [0.5, 1.0])  # class 0: one of 2 pixels certified


def test_abstain_metrics_certified_recall_counts_pixels_per_class():
    rng = np.random.default_rng(5)
    targets = np.where(rng.random((3, 5, 6)) < 0.1, 255, rng.integers(0, 4, size=(3, 5, 6)))
    targets[targets == 3] = 2  # class 3 has no pixel: NaN, not 0
    labels = np.where(rng.random((3, 5, 6)) < 0.3, -1, rng.integers(0, 4, size=(3, 5, 6)))
    m = AbstainMetrics(4)
    m.update(labels, targets)
    recall = m.compute()["certified_recall_micro"]
    for c in range(3):
        expected = ((labels == c) & (targets == c)).sum() / (targets == c).sum()
        assert recall[c] == pytest.approx(expected)
    assert np.isnan(recall[3])


def _brute_worst_miou(maps, targets, k, abstain=-1, pooled=False):
    """Minimum mIoU over every assignment of the abstained pixels (per image mean, or pooled)."""
    import itertools

    def per_class(lab, t):
        inter = np.array([((lab == c) & (t == c)).sum() for c in range(k)])
        union = np.array([((lab == c) | (t == c)).sum() for c in range(k)])
        return inter, union

    def miou(inter, union):
        vals = [i / u for i, u in zip(inter, union, strict=True) if u > 0]
        return np.mean(vals) if vals else np.nan

    holes = [(i, p) for i, m in enumerate(maps) for p in np.flatnonzero(m.ravel() == abstain)]
    best = np.inf
    for choice in itertools.product(range(k), repeat=len(holes)):
        labs = [m.ravel().copy() for m in maps]
        for (i, p), c in zip(holes, choice, strict=True):
            labs[i][p] = c
        parts = [per_class(lab, t.ravel()) for lab, t in zip(labs, targets, strict=True)]
        if pooled:
            value = miou(sum(p[0] for p in parts), sum(p[1] for p in parts))
        else:
            value = np.nanmean([miou(*p) for p in parts])
        best = min(best, value)
    return best


@given(st.integers(2, 4), st.integers(1, 2), st.integers(0, 2**31 - 1))
def test_worst_case_miou_equals_brute_force_over_abstained_assignments(k, n_images, seed):
    rng = np.random.default_rng(seed)
    targets = [rng.integers(0, k, size=(1, 4)) for _ in range(n_images)]
    maps = [np.where(rng.random((1, 4)) < 0.35, -1, rng.integers(0, k, size=(1, 4))) for _ in range(n_images)]
    m = AbstainMetrics(k)
    m.update(np.stack(maps), np.stack(targets))
    out = m.compute()
    assert out["worst_case_miou_micro"] == pytest.approx(_brute_worst_miou(maps, targets, k, pooled=True))
    assert out["worst_case_miou_macro"] == pytest.approx(_brute_worst_miou(maps, targets, k))
    assert out["worst_case_miou_micro"] <= out["certified_map_miou_micro"] + 1e-12


@given(st.integers(1, 6), st.integers(1, 30), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_fused_mode_and_count_equals_a_numpy_reference(n0, n, k, seed):
    from lipcert.kernels import mode_and_count

    rng = np.random.default_rng(seed)
    samples = rng.integers(0, k, size=(n0 + n, 9000))  # more than one block of pixels
    sel = np.stack([(samples[:n0] == c).sum(0) for c in range(k)])  # (K, P) votes
    mode_ref = sel.argmax(0)  # lowest class on ties
    count_ref = (samples[n0:] == mode_ref).sum(0)
    mode, count, ok = mode_and_count(np.ascontiguousarray(samples), n0, int(samples[:n0].max()) + 1)
    assert ok
    np.testing.assert_array_equal(mode, mode_ref)
    np.testing.assert_array_equal(count, count_ref)
