"""A convolution reading an activation of a convolution: bounded through the activation's slope range.

The rule claims ``||A2 D A1|| <= c ||F2 F1|| + r ||F2|| ||F1||`` for every diagonal D of slopes in the
activation's range (widened to hold 0); the tests check that claim against the worst slopes an
alternating search finds on the dense matrices of the two layers, not only against realised Jacobians.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dense_jacobian import jacobian_norm
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lipcert.lipschitz.bound as bound_module
from lipcert import LipschitzBoundError, lipschitz_bound, lipschitz_lower_bound
from lipcert.lipschitz import layer_bounds
from lipcert.lipschitz.activations import GELU, SILU
from lipcert.lipschitz.operator_norms import clear_norm_cache, compose_kernels

ACTIVATIONS = [  # (module, least slope, largest slope)
    (nn.ReLU, 0.0, 1.0), (lambda: nn.LeakyReLU(0.2), 0.2, 1.0), (lambda: nn.LeakyReLU(-0.5), -0.5, 1.0),
    (lambda: nn.LeakyReLU(2.0), 1.0, 2.0), (nn.GELU, 1 - GELU, GELU), (nn.SiLU, 1 - SILU, SILU),
    (nn.Tanh, 0.0, 1.0), (nn.Sigmoid, 0.0, 0.25), (lambda: nn.ELU(1.5), 0.0, 1.5), (nn.ReLU6, 0.0, 1.0),
]  # fmt: skip


def _without_rule(model, shape):
    saved = bound_module.across_activation_bound
    bound_module.across_activation_bound = lambda *args: None
    try:
        return lipschitz_bound(model, shape, progress=False)
    finally:
        bound_module.across_activation_bound = saved


def _affine_matrix(layers: nn.Module, shape) -> torch.Tensor:
    """The dense matrix of an affine map (its Jacobian anywhere), float64."""
    x = torch.zeros(1, *shape, dtype=torch.float64)
    return torch.autograd.functional.jacobian(lambda v: layers(v).flatten(), x).reshape(-1, x.numel())


def _worst_chain_slopes(mats: list, lo: float, hi: float, seed: int) -> float:
    """Largest ``||A_k D_{k-1} ... D_1 A_1||`` an alternating search finds, each D in [lo, hi] (a lower bound).

    Given the top singular pair (u, v) of the current product, ``u^T (...) v`` is linear in each D_i,
    maximised by ``hi`` where the two sides' entries have a positive product and ``lo`` elsewhere.
    """
    gen = torch.Generator().manual_seed(seed)
    ds = [lo + (hi - lo) * torch.rand(m.shape[0], generator=gen, dtype=torch.float64) for m in mats[:-1]]
    best = 0.0
    for _ in range(25):
        for i in range(len(ds)):  # u^T (...) v is linear in D_i: the best D_i follows the signs
            total = mats[0]
            for d, m in zip(ds, mats[1:], strict=True):
                total = m @ (d[:, None] * total)
            u, s, vh = torch.linalg.svd(total)
            best = max(best, float(s[0]))
            right, left = vh[0], u[:, 0]
            for j in range(i + 1):  # the input side of D_i: A_i D_{i-1} ... A_1 v
                right = mats[j] @ (right if j == 0 else ds[j - 1] * right)
            for j in range(len(mats) - 1, i, -1):  # the output side: A_{i+1}^T D_{i+1} ... A_k^T u
                left = mats[j].T @ (left if j == len(mats) - 1 else ds[j] * left)
            ds[i] = torch.where(left * right > 0, hi, lo).to(torch.float64)
    return best


def _random_pair(rng, gen):
    c_in, mid, c_out = (int(v) for v in rng.integers(1, 5, 3))
    groups = 2 if mid % 2 == 0 and c_out % 2 == 0 and rng.integers(2) else 1
    conv1 = nn.Conv2d(c_in, mid, int(rng.choice([1, 2, 3])), int(rng.integers(1, 3)), int(rng.integers(0, 3)),
                      int(rng.integers(1, 3)))  # fmt: skip
    conv2 = nn.Conv2d(mid, c_out, int(rng.choice([1, 3, 4])), int(rng.integers(1, 3)), int(rng.integers(0, 3)),
                      int(rng.integers(1, 3)), groups=groups)  # fmt: skip
    front, back = [conv1], [conv2]
    for layers, c in ((front, mid), (back, c_out)):
        if rng.integers(2):
            bn = nn.BatchNorm2d(c)
            bn.running_mean.uniform_(-1, 1, generator=gen)
            bn.running_var.uniform_(0.1, 3.0, generator=gen)
            bn.weight.data.uniform_(-2, 2, generator=gen)
            layers.append(bn)
    for conv in (conv1, conv2):
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    return nn.Sequential(*front).eval(), nn.Sequential(*back).eval(), c_in


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_bound_holds_for_the_worst_slopes_and_never_exceeds_the_product(seed):
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    front, back, c_in = _random_pair(rng, gen)
    make, lo, hi = ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]
    shape = (c_in, int(rng.integers(5, 10)), int(rng.integers(5, 10)))
    try:
        mid = front(torch.zeros(1, *shape)).shape
        back(torch.zeros(mid))
    except RuntimeError:  # a kernel larger than its input: no model
        return
    model = nn.Sequential(*front, make(), *back).eval()
    got = lipschitz_bound(model, shape, progress=False)
    a1, a2 = _affine_matrix(copy.deepcopy(front).double(), shape), _affine_matrix(copy.deepcopy(back).double(), mid[1:])
    worst = max(
        _worst_chain_slopes([a1, a2], lo, hi, seed), _worst_chain_slopes([a1, a2], min(lo, 0.0), max(hi, 0.0), seed + 1)
    )
    realised = max(jacobian_norm(model, shape, torch.randn(1, *shape, generator=gen)) for _ in range(2))
    assert got >= max(worst, realised) * (1 - 1e-9)
    assert got <= _without_rule(model, shape) * (1 + 1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_a_chain_of_three_is_bounded_above_its_worst_slopes(seed):
    """The bound of the whole plane carried from one pair to the next holds for every slope pattern."""
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    widths = [int(v) for v in rng.integers(1, 4, 4)]
    kernels = [int(rng.choice([1, 3])) for _ in range(3)]
    convs = [  # a 3x3 kernel gets padding 1, so that three strides of 2 still leave a 9x9 input 2x2
        nn.Conv2d(widths[i], widths[i + 1], k, int(rng.integers(1, 3)), int(rng.integers(k // 2, 2)))
        for i, k in enumerate(kernels)
    ]
    make, lo, hi = ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]
    shape = (widths[0], 9, 9)
    sizes = [shape]
    for conv in convs:
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        sizes.append(tuple(conv(torch.zeros(1, *sizes[-1])).shape[1:]))
    model = nn.Sequential(convs[0], make(), convs[1], make(), convs[2]).eval()
    got = lipschitz_bound(model, shape, progress=False)
    mats = [_affine_matrix(copy.deepcopy(c).double(), size) for c, size in zip(convs, sizes, strict=False)]
    worst = max(
        _worst_chain_slopes(mats, a, b, seed + i) for i, (a, b) in enumerate([(lo, hi), (min(lo, 0), max(hi, 0))])
    )
    assert got >= worst * (1 - 1e-9)
    assert got <= _without_rule(model, shape) * (1 + 1e-9)


def test_the_zeros_outside_the_first_window_are_held_by_the_widened_slope_range():
    """Over the plane ``F2 F1 = 0``; through conv1's window the border survives: norm 1 at slope 1.

    ``a_j = x_j``, ``b_j = x_{j+1}`` (a valid convolution), then ``z_j = a_{j+1} - b_j`` with padding 1:
    inside, the two cancel; at the ends ``b_{-1}`` and ``a_{n-1}`` lie outside conv1's window (zeros), so
    ``z = (x_0, 0, ..., 0, -x_{n-1})``. LeakyReLU(0.2) at slope 1 everywhere (a large bias): the Jacobian
    has norm 1. With the range [0.2, 1] itself, ``0.6 ||F2 F1|| + 0.4 ||F2|| ||F1|| = 0.8`` would be
    below it; widened to [0, 1] the bound is 1, exactly.
    """
    conv1, conv2 = nn.Conv2d(1, 2, (1, 2)), nn.Conv2d(2, 1, (1, 2), padding=(0, 1), bias=False)
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]))
        conv1.bias.fill_(10.0)
        conv2.weight.copy_(torch.tensor([[[[0.0, 1.0]], [[-1.0, 0.0]]]]))
    model = nn.Sequential(conv1, nn.LeakyReLU(0.2), conv2).eval()
    shape = (1, 3, 6)
    realised = jacobian_norm(model, shape, torch.rand(1, *shape))
    assert realised == pytest.approx(1.0, rel=1e-9)
    assert lipschitz_bound(model, shape, progress=False) == pytest.approx(1.0, rel=1e-5)


def test_a_cancelling_pair_is_bounded_at_its_true_constant():
    """``relu(x) - relu(x - 5)``: the product says 2, the composed pair cancels, the true constant is 1."""
    conv1, conv2 = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv1.weight.fill_(1.0)
        conv1.bias.copy_(torch.tensor([0.0, -5.0]))
        conv2.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
    model = nn.Sequential(conv1, nn.ReLU(), conv2).eval()
    got = lipschitz_bound(model, (1, 4, 4), progress=False)
    assert got == pytest.approx(1.0, rel=1e-5)
    assert _without_rule(model, (1, 4, 4)) == pytest.approx(2.0, rel=1e-5)
    lower = lipschitz_lower_bound(model, torch.full((1, 1, 4, 4), 2.5), n_iter=5, n_random=1)
    assert lower == pytest.approx(1.0, rel=1e-5) and lower <= got


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_composed_kernels_equal_the_two_convolutions_run_one_after_the_other(seed):
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    c_in, mid, c_out = (int(v) for v in rng.integers(1, 4, 3))
    k1, k2 = (tuple(int(v) for v in rng.integers(1, 4, 2)) for _ in range(2))
    s1, s2, d1, d2 = (tuple(int(v) for v in rng.integers(1, 4, 2)) for _ in range(4))
    w1 = torch.randn(mid, c_in, *k1, generator=gen, dtype=torch.float64)
    w2 = torch.randn(c_out, mid, *k2, generator=gen, dtype=torch.float64)
    x = torch.randn(1, c_in, 40, 40, generator=gen, dtype=torch.float64)
    both = F.conv2d(F.conv2d(x, w1, stride=s1, dilation=d1), w2, stride=s2, dilation=d2)
    kernel, stride = compose_kernels(w1, (s1, d1), w2, (s2, d2))
    one = F.conv2d(x, kernel, stride=stride)
    h, w = min(both.shape[2], one.shape[2]), min(both.shape[3], one.shape[3])
    assert h > 0 and w > 0
    torch.testing.assert_close(one[..., :h, :w], both[..., :h, :w])


class _Subclass(nn.ReLU):
    def forward(self, x):
        return 3.0 * super().forward(x)


@pytest.mark.parametrize(
    "middle",
    [lambda: _Subclass(), lambda: nn.Softplus(), lambda: nn.Hardswish()],
    ids=["relu subclass", "softplus", "hardswish"],
)
def test_no_rule_for_activations_without_a_proven_slope_range(middle):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), middle(), nn.Conv2d(3, 2, 3, padding=1)).eval()
    with layer_bounds({_Subclass: lambda m, hw: 3.0}):
        got = lipschitz_bound(model, (2, 6, 6), progress=False)
        assert got == _without_rule(model, (2, 6, 6))
    assert got >= jacobian_norm(model, (2, 6, 6), torch.randn(1, 2, 6, 6)) * (1 - 1e-9)


def test_circular_padding_and_large_composites_fall_back_to_the_product_soundly():
    torch.manual_seed(1)
    circular = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1)
    ).eval()
    assert lipschitz_bound(circular, (2, 6, 6), progress=False) == _without_rule(circular, (2, 6, 6))
    wide = nn.Sequential(  # a stride 2 then a dilation 18: a 75x75 composed kernel, not formed
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=18, dilation=18)
    ).eval()
    assert lipschitz_bound(wide, (2, 40, 40), progress=False) == _without_rule(wide, (2, 40, 40))


def test_a_chain_of_four_is_sound_tighter_and_unchanged_by_the_norm_cache():
    torch.manual_seed(2)
    layers = [nn.Conv2d(3, 8, 3, padding=1)]
    for _ in range(3):
        layers += [nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)]
    model = nn.Sequential(*layers).eval()
    shape = (3, 12, 12)
    cold = (clear_norm_cache(), lipschitz_bound(model, shape, progress=False))[1]
    assert lipschitz_bound(model, shape, progress=False) == cold  # memoised norms: same value
    assert cold < _without_rule(model, shape)
    for _ in range(3):
        assert cold >= jacobian_norm(model, shape, torch.randn(1, *shape)) * (1 - 1e-9)
    with torch.no_grad():
        model[2].weight.mul_(3.0)  # the cache is keyed by the weights' content, not the module
    changed = lipschitz_bound(model, shape, progress=False)
    clear_norm_cache()
    assert changed == lipschitz_bound(model, shape, progress=False) and changed > cold


class _Decoder(nn.Module):
    """conv2(relu(conv1(cat(a(x), relu(b(x)))))): conv1 on a concatenation, read across an activation."""

    def __init__(self, gen, weak: float):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 3, 1)
        self.conv1, self.conv2 = nn.Conv2d(5, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)
        with torch.no_grad():
            for m in (self.a, self.b, self.conv1, self.conv2):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
            self.b.weight.mul_(weak)
            self.conv1.weight[:, 2:] /= weak  # the weak branch meets the strong kernels

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(torch.cat([self.a(x), torch.relu(self.b(x))], 1))))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1.0, 1e-2]))
def test_a_pair_whose_first_convolution_reads_a_concatenation_is_bounded_part_by_part_soundly(seed, weak):
    gen = torch.Generator().manual_seed(seed)
    model = _Decoder(gen, weak).eval()
    shape = (2, 6, 7)
    got = lipschitz_bound(model, shape, progress=False)
    for _ in range(3):
        assert got >= jacobian_norm(model, shape, torch.randn(1, *shape, generator=gen)) * (1 - 1e-9)
    assert got <= _without_rule(model, shape) * (1 + 1e-9)


def test_the_part_by_part_pair_is_tighter_when_one_branch_is_weak():
    model = _Decoder(torch.Generator().manual_seed(0), 1e-2).eval()
    assert lipschitz_bound(model, (2, 6, 7), progress=False) < 0.8 * _without_rule(model, (2, 6, 7))


@pytest.mark.parametrize(
    "inner,outer", [((3, 2, 1, 1), (4, 2, 1, 1)), ((3, 2, 1), (4, 3, 1, 1))], ids=["channels", "not 4-D"]
)
def test_kernels_that_do_not_chain_are_refused_by_name(inner, outer):
    geometry = ((1, 1), (1, 1))
    with pytest.raises(LipschitzBoundError, match="compose_kernels"):
        compose_kernels(
            torch.zeros(inner, dtype=torch.float64), geometry, torch.zeros(outer, dtype=torch.float64), geometry
        )
