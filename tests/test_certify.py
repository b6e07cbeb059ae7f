import brute_force
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lipcert import LipcertError, certified_radius, certify, certify_logits

EPS = [0.0, 0.3, 0.8, 1.5, 3.0]


@st.composite
def tiny_problem(draw, max_pixels=6, max_classes=3, ignore=True):
    k = draw(st.integers(2, max_classes))
    h = draw(st.integers(1, 2))
    w = draw(st.integers(1, max_pixels // h))
    # small integers create exact ties; the scale makes costs non-trivial
    vals = draw(st.lists(st.integers(-3, 3), min_size=k * h * w, max_size=k * h * w))
    logits = np.asarray(vals, dtype=np.float64).reshape(1, k, h, w) * draw(st.sampled_from([0.5, 1.0]))
    labels = list(range(k)) + ([255] if ignore else [])
    target = np.asarray(draw(st.lists(st.sampled_from(labels), min_size=h * w, max_size=h * w))).reshape(1, h, w)
    L = draw(st.sampled_from([0.5, 1.0, 2.0]))
    return logits, target, L


@given(tiny_problem())
def test_pixel_accuracy_equals_brute_force(problem):
    logits, target, L = problem
    cert = certify_logits(logits, EPS, "pixel_accuracy", target, lipschitz=L)
    t = target.ravel()
    for j, e in enumerate(EPS):
        bf = brute_force.brute_force(logits[0], e, L, lambda lab: brute_force.pixel_accuracy(lab, t))
        np.testing.assert_allclose(cert.worst[0, j], bf, equal_nan=True)


@given(tiny_problem(ignore=False))
def test_stability_equals_brute_force(problem):
    logits, _, L = problem
    cert = certify_logits(logits, EPS, "stability", lipschitz=L)
    pred = logits[0].reshape(logits.shape[1], -1).argmax(0)
    for j, e in enumerate(EPS):
        bf = brute_force.brute_force(logits[0], e, L, lambda lab: float((lab == pred).mean()))
        np.testing.assert_allclose(cert.worst[0, j], bf)


@given(tiny_problem())
def test_recall_and_fnr_equal_brute_force(problem):
    logits, target, L = problem
    rec = certify_logits(logits, EPS, "recall", target, lipschitz=L)
    fnr = certify_logits(logits, EPS, "fnr", target, lipschitz=L)
    t = target.ravel()
    for c in range(logits.shape[1]):
        for j, e in enumerate(EPS):
            bf = brute_force.brute_force(logits[0], e, L, lambda lab, c=c: brute_force.recall(lab, t, c))
            np.testing.assert_allclose(rec.worst[0, j, c], bf, equal_nan=True)
            np.testing.assert_allclose(fnr.worst[0, j, c], 1.0 - bf, equal_nan=True)


@given(tiny_problem(), st.sampled_from([0.0, 0.25, 0.5, 0.9]))
def test_q2_radius_is_the_smallest_reaching_eps(problem, level):
    logits, target, L = problem
    r = certified_radius(logits, "pixel_accuracy", target, lipschitz=L, level=level)[0, 0]
    t = target.ravel()
    if np.isnan(r):
        assert (t == 255).all()
        return
    bf_at = lambda e: brute_force.brute_force(logits[0], e, L, lambda lab: brute_force.pixel_accuracy(lab, t))  # noqa: E731
    if np.isinf(r):
        assert bf_at(100.0) > level
        return
    assert bf_at(r * (1 + 1e-7)) <= level + 1e-12  # reachable at r (up to float rounding of sqrt)
    if r > 0:
        assert bf_at(r * (1 - 1e-6)) > level  # not below r


@given(tiny_problem(), st.sampled_from([0.1, 0.5]))
def test_q2_drop_and_fnr_levels(problem, drop):
    logits, target, L = problem
    clean = certify_logits(logits, 0.0, "pixel_accuracy", target, lipschitz=L).clean[0]
    if np.isnan(clean):
        return
    r_drop = certified_radius(logits, "pixel_accuracy", target, lipschitz=L, drop=drop)
    r_lvl = certified_radius(logits, "pixel_accuracy", target, lipschitz=L, level=max(clean - drop, 0.0))
    if clean - drop >= 0:
        np.testing.assert_allclose(r_drop, r_lvl, equal_nan=True)
    r_fnr = certified_radius(logits, "fnr", target, lipschitz=L, level=0.5)
    r_rec = certified_radius(logits, "recall", target, lipschitz=L, level=0.5)
    np.testing.assert_allclose(r_fnr, r_rec, equal_nan=True)


@given(tiny_problem())
def test_monotone_in_eps_naive_weaker_and_eps0_is_clean_up_to_ties(problem):
    logits, target, L = problem
    eps = np.linspace(0, 4, 9)
    cert = certify_logits(logits, eps, "pixel_accuracy", target, lipschitz=L)
    w = cert.worst[0]
    if np.isnan(cert.clean[0]):
        assert np.isnan(w).all()
        return
    assert np.all(np.diff(w) <= 0)
    assert np.all(cert.naive[0] <= w)  # one perturbation pays for every flip: joint certifies more
    z = np.sort(logits[0], axis=0)
    valid = target[0] != 255
    pred = logits[0].argmax(0)
    ties_correct = ((z[-1] == z[-2]) & valid & (pred == target[0])).sum()
    assert w[0] == pytest.approx(cert.clean[0] - ties_correct / valid.sum())


@given(tiny_problem(), st.sampled_from([0.5, 2.0, 10.0]))
def test_scaling_with_lipschitz(problem, c):
    logits, target, L = problem
    a = certify_logits(logits, EPS, "pixel_accuracy", target, lipschitz=L)
    b = certify_logits(logits * c, EPS, "pixel_accuracy", target, lipschitz=L * c)
    d = certify_logits(logits, np.asarray(EPS) / c, "pixel_accuracy", target, lipschitz=L * c)
    np.testing.assert_allclose(a.worst, b.worst, equal_nan=True)
    np.testing.assert_allclose(a.worst, d.worst, equal_nan=True)


def test_eps_zero_counts_wrong_pixels_as_wrong():
    logits = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]]]])
    cert = certify_logits(logits, 0.0, "pixel_accuracy", torch.tensor([[[0, 1]]]), lipschitz=1.0)
    assert cert.worst[0, 0] == 0.5 and cert.clean[0] == 0.5


def test_image_without_valid_pixels_is_nan_and_absent_class_is_nan():
    logits = torch.randn(2, 3, 2, 2)
    target = torch.full((2, 2, 2), 255)
    target[1] = 0
    cert = certify_logits(logits, [0.0, 1.0], "pixel_accuracy", target, lipschitz=1.0)
    assert np.isnan(cert.worst[0]).all() and np.isnan(cert.clean[0])
    assert not np.isnan(cert.worst[1]).any()
    rec = certify_logits(logits, [0.0, 1.0], "recall", target, lipschitz=1.0)
    assert rec.worst.shape == (2, 2, 3)
    assert np.isnan(rec.worst[1, :, 1:]).all() and not np.isnan(rec.worst[1, :, 0]).any()


def test_pixel_radius_map_and_shapes():
    logits = torch.randn(3, 4, 5, 6)
    target = torch.randint(0, 4, (3, 5, 6))
    cert = certify_logits(logits, [0.1, 0.2], "pixel_accuracy", target, lipschitz=2.0)
    assert cert.worst.shape == (3, 2) and cert.clean.shape == (3,) and cert.pixel_radius.shape == (3, 5, 6)
    top = torch.topk(logits.double(), 2, 1).values
    np.testing.assert_allclose(cert.pixel_radius, ((top[:, 0] - top[:, 1]) / (2 * np.sqrt(2))).numpy())
    # the naive certificate at eps is exactly "correct and radius > eps"
    correct = (logits.argmax(1) == target).numpy()
    for j, e in enumerate(cert.eps):
        expected = (correct & (cert.pixel_radius > e * (1 + 1e-9))).mean((1, 2))
        np.testing.assert_allclose(cert.naive[:, j], expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(eps=-0.1),
        dict(eps=float("nan")),
        dict(metric="dice"),
        dict(target=torch.zeros(1, 3, 3, dtype=torch.long)),
        dict(target=torch.full((1, 2, 2), 7)),
        dict(target=torch.full((1, 2, 2), -1)),
        dict(target=torch.zeros(1, 2, 2)),
        dict(lipschitz=0.0),
        dict(lipschitz=float("inf")),
        dict(logits=torch.zeros(1, 3, 2, 2, dtype=torch.long)),
        dict(logits=torch.full((1, 3, 2, 2), float("inf"))),
        dict(target=None),
    ],
)
def test_bad_inputs_raise(kwargs):
    args = dict(
        logits=torch.randn(1, 3, 2, 2),
        eps=0.5,
        metric="pixel_accuracy",
        target=torch.zeros(1, 2, 2, dtype=torch.long),
        lipschitz=1.0,
    )
    args.update(kwargs)
    with pytest.raises(LipcertError):
        certify_logits(args.pop("logits"), args.pop("eps"), args.pop("metric"), args.pop("target"), **args)


def test_lipschitz_is_required():
    with pytest.raises(TypeError):
        certify_logits(torch.randn(1, 3, 2, 2), 0.1, "stability")  # keyword-only, no default
    with pytest.raises(LipcertError, match="never defaults to 1"):
        certify_logits(torch.randn(1, 3, 2, 2), 0.1, "stability", lipschitz=None)


def test_certify_runs_one_eval_forward_and_restores_mode():
    calls = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 3, 1)

        def forward(self, x):
            calls.append((self.training, torch.is_grad_enabled()))
            return self.conv(x)

    net = Net().train()
    x = torch.rand(2, 1, 4, 4)
    cert = certify(net, x, [0.1], "stability", lipschitz=3.0)
    assert calls == [(False, False)] and net.training
    with torch.no_grad():
        ref = certify_logits(net.eval()(x), [0.1], "stability", lipschitz=3.0)
    np.testing.assert_array_equal(cert.worst, ref.worst)
    assert cert.lipschitz_source == "declared"


def test_unknown_metric_options_are_refused():
    with pytest.raises(LipcertError, match="Unknown option"):
        certify_logits(torch.randn(1, 3, 2, 2), 0.1, "stability", lipschitz=1.0, classes=[1])


def test_the_computed_lipschitz_path_leaves_every_submodule_in_its_own_mode():
    from lipcert.models import LipUNet

    net = LipUNet(3, in_channels=1, widths=[(8, 1)], stem=8).train()
    frozen_bn = [m for m in net.modules() if not list(m.children())][:3]
    for m in frozen_bn:
        m.eval()  # a user who froze a few layers
    before = {name: m.training for name, m in net.named_modules()}
    cert = certify(net, torch.rand(1, 1, 16, 16), [0.1], "stability")
    assert cert.lipschitz_source.startswith("computed")
    assert {name: m.training for name, m in net.named_modules()} == before


def test_a_conv_subclass_with_its_own_forward_is_neither_exported_away_nor_certified():
    from lipcert import LipschitzBoundError
    from lipcert.models import export_plain

    class Shifted(torch.nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 0 - 5.0

    net = torch.nn.Sequential(Shifted(1, 2, 1))
    x = torch.rand(1, 1, 4, 4)
    frozen = export_plain(net)
    assert type(frozen[0]) is Shifted
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), net(x))
    with pytest.raises(LipschitzBoundError, match="Shifted"):
        certify(net, x, 0.1, "stability")


def test_certify_refuses_a_frozen_copy_that_does_not_reproduce_the_model():
    from torch.nn.utils import parametrize

    from lipcert import LipschitzBoundError

    class Drifting(torch.nn.Module):  # a parametrisation whose weight changes on every access
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, w):
            self.calls += 1
            return w * self.calls

    conv = torch.nn.Conv2d(1, 2, 1, bias=False)
    parametrize.register_parametrization(conv, "weight", Drifting())
    with pytest.raises(LipschitzBoundError, match="differ"):
        certify(conv, torch.rand(1, 1, 4, 4), 0.1, "stability")


def test_images_outside_unit_range_need_the_explicit_opt_out():
    net = torch.nn.Conv2d(1, 2, 1, bias=False)
    x = torch.rand(1, 1, 4, 4) * 255
    with pytest.raises(LipcertError, match=r"\[0, 1\]"):
        certify(net, x, 0.1, "stability", lipschitz=1.0)
    cert = certify(net, x, 0.1, "stability", lipschitz=1.0, allow_outside_unit=True)
    assert cert.worst.shape == (1, 1)


def test_flipped_numpy_inputs_are_accepted():
    z = np.random.default_rng(0).normal(size=(1, 3, 4, 4))
    t = np.zeros((1, 4, 4), dtype=np.int64)
    a = certify_logits(z[..., ::-1], [0.1], "pixel_accuracy", t[..., ::-1], lipschitz=1.0)
    b = certify_logits(np.ascontiguousarray(z[..., ::-1]), [0.1], "pixel_accuracy", t, lipschitz=1.0)
    np.testing.assert_array_equal(a.worst, b.worst)


def test_the_library_leaves_the_callers_thread_count_alone():
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(1); import numpy as np, lipcert; "
        "lipcert.certify_logits(np.random.rand(2, 3, 70, 70), [0.1], 'stability', lipschitz=1.0); "
        "lipcert.certify_logits(np.random.rand(2, 3, 8, 8), [0.1], 'iou', np.zeros((2, 8, 8), int), lipschitz=1.0); "
        "print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "1"


def test_print_of_a_certificate_shows_shapes_and_summaries_not_the_radius_map():
    z = np.random.default_rng(0).normal(size=(2, 3, 64, 64))
    cert = certify_logits(z, [0.1, 0.2], "iou", z.argmax(1), lipschitz=1.0)
    text = repr(cert)
    assert "pixel_radius (2, 64, 64)" in text and "worst (2, 2, 3)" in text and "exact" in text
    assert len(text) < 600
