"""A BatchNorm fed only by a convolution is bounded as one merged convolution: sound and tighter."""

import numpy as np
import pytest
import torch
from dense_jacobian import jacobian_norm
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lipcert.lipschitz.neighbourhoods as neighbourhoods
from lipcert import lipschitz_bound


def _bn(c, gen, affine=True):
    bn = nn.BatchNorm2d(c, affine=affine)
    bn.running_mean.uniform_(-1, 1, generator=gen)
    bn.running_var.uniform_(0.01, 4.0, generator=gen)
    if affine:
        bn.weight.data.uniform_(-2, 2, generator=gen)
    return bn.eval()


def _unmerged(model, shape):
    """The bound with both merges switched off: the product of the layer bounds."""
    saved = neighbourhoods.conv_batchnorm_bound, neighbourhoods.merges_with_batchnorm
    neighbourhoods.conv_batchnorm_bound = lambda *args: None
    neighbourhoods.merges_with_batchnorm = lambda *args: False
    try:
        return lipschitz_bound(model, shape, progress=False)
    finally:
        neighbourhoods.conv_batchnorm_bound, neighbourhoods.merges_with_batchnorm = saved


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_merged_bound_is_above_the_exact_norm_and_at_most_the_product(seed):
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    c_in, c_out = int(rng.integers(1, 4)), int(rng.choice([2, 4]))
    groups = int(rng.choice([1, 2])) if c_in % 2 == 0 else 1
    conv = nn.Conv2d(c_in, c_out, int(rng.choice([1, 3])), stride=int(rng.integers(1, 3)),
                     padding=int(rng.integers(0, 2)), dilation=int(rng.integers(1, 3)), groups=groups)  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
    model = nn.Sequential(conv, _bn(c_out, gen, affine=bool(rng.integers(2))))
    shape = (c_in, int(rng.integers(5, 10)), int(rng.integers(5, 10)))
    merged = lipschitz_bound(model, shape, progress=False)
    assert merged >= jacobian_norm(model, shape) * (1 - 1e-9)
    assert merged <= _unmerged(model, shape) * (1 + 1e-9)


def test_merging_tightens_when_the_scales_and_the_kernels_disagree():
    """Output channel 0 has the large kernel, channel 1 the large BatchNorm scale: the product pairs them."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    bn = nn.BatchNorm2d(2, affine=False).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([10.0, 0.1]).view(2, 1, 1, 1))
        bn.running_var.copy_(torch.tensor([100.0, 0.01]) - bn.eps)  # scales 0.1 and 10
    model = nn.Sequential(conv, bn, nn.ReLU())
    assert lipschitz_bound(model, (1, 4, 4), progress=False) == pytest.approx(np.sqrt(2.0), rel=1e-3)
    assert _unmerged(model, (1, 4, 4)) == pytest.approx(100.0, rel=1e-3)


class _Shared(nn.Module):
    """The convolution's output feeds the BatchNorm and a skip: the BatchNorm's bound may still merge."""

    def __init__(self, gen):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), _bn(2, gen)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))

    def forward(self, x):
        h = self.conv(x)
        return self.bn(h) + 3.0 * h


class _NotBatchNorm(nn.BatchNorm2d):
    """Same attributes as a BatchNorm, another computation: never merged as one."""

    def forward(self, x):
        return 5.0 * super().forward(x)


def test_a_shared_convolution_is_merged_soundly_and_a_batchnorm_subclass_is_not_merged():
    gen = torch.Generator().manual_seed(0)
    shared = _Shared(gen).eval()
    assert jacobian_norm(shared, (2, 6, 6)) <= lipschitz_bound(shared, (2, 6, 6), progress=False)
    assert lipschitz_bound(shared, (2, 6, 6), progress=False) <= _unmerged(shared, (2, 6, 6))
    conv = nn.Conv2d(2, 2, 3, padding=1)
    odd = _NotBatchNorm(2).eval()
    odd.running_var.fill_(0.25)
    from lipcert.lipschitz import layer_bounds

    with layer_bounds({_NotBatchNorm: lambda m, hw: 10.0}):  # the user's bound for the subclass
        b = lipschitz_bound(nn.Sequential(conv, odd), (2, 6, 6), progress=False)
        assert b == _unmerged(nn.Sequential(conv, odd), (2, 6, 6))  # the product: no merge for a subclass
    assert b >= jacobian_norm(nn.Sequential(conv, odd).eval(), (2, 6, 6))


class _Concat(nn.Module):
    """conv(cat(a(x), b(x))), optionally with a BatchNorm after the convolution (a decoder block)."""

    def __init__(self, gen, bn: bool, scale_a=1.0, scale_b=1.0):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 3, 1)
        self.conv = nn.Conv2d(5, 2, 3, padding=1)
        self.bn = _bn(2, gen) if bn else nn.Identity()
        with torch.no_grad():
            for m, s in ((self.a, scale_a), (self.b, scale_b), (self.conv, 1.0)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * s)

    def forward(self, x):
        return self.bn(self.conv(torch.cat([self.a(x), torch.relu(self.b(x))], 1)))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_a_concatenated_input_is_bounded_part_by_part_soundly(seed, bn):
    gen = torch.Generator().manual_seed(seed)
    model = _Concat(gen, bn, scale_a=float(torch.rand(1, generator=gen)) * 3).eval()
    shape = (2, 6, 7)
    got = lipschitz_bound(model, shape, progress=False)
    for _ in range(3):  # relu active on a random part: the Jacobian differs from point to point
        point = torch.randn(1, *shape, generator=gen)
        assert got >= jacobian_norm(model, shape, point) * (1 - 1e-9)
    assert got <= _unmerged(model, shape) * (1 + 1e-9)


def test_the_part_by_part_bound_is_tighter_when_one_branch_is_weak():
    gen = torch.Generator().manual_seed(0)
    model = _Concat(gen, bn=False, scale_a=1.0, scale_b=1e-3).eval()
    with torch.no_grad():
        model.conv.weight[:, 2:] *= 100.0  # the weak branch meets the strong kernels
    assert lipschitz_bound(model, (2, 6, 6), progress=False) < 0.5 * _unmerged(model, (2, 6, 6))


class _TwoNorms(nn.Module):
    """One convolution read by two BatchNorms (both merged), plus a convolution of a constant map."""

    def __init__(self, gen):
        super().__init__()
        self.conv, self.bn1, self.bn2 = nn.Conv2d(2, 2, 3, padding=1), _bn(2, gen), _bn(2, gen)
        self.const_conv, self.const_bn = nn.Conv2d(2, 2, 1), _bn(2, gen)
        self.register_buffer("bias_map", torch.randn(1, 2, 6, 6, generator=gen))

    def forward(self, x):
        h = self.conv(x)
        return self.bn1(h) - 2.0 * self.bn2(h) + self.const_bn(self.const_conv(self.bias_map))


def test_a_convolution_read_by_two_batchnorms_or_fed_a_constant_is_bounded_finitely_and_soundly():
    gen = torch.Generator().manual_seed(5)
    model = _TwoNorms(gen).eval()
    got = lipschitz_bound(model, (2, 6, 6), progress=False)
    assert np.isfinite(got) and got >= jacobian_norm(model, (2, 6, 6)) * (1 - 1e-9)
    assert got <= _unmerged(model, (2, 6, 6)) * (1 + 1e-9)
