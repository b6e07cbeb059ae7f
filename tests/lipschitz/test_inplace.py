"""In-place calls overwrite their input: later reads of it see the output, and the bound must too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dense_jacobian import jacobian_norm
from torch import nn

from lipcert import LipschitzBoundError, lipschitz_bound


class _ReadAfter(nn.Module):
    """``h = conv(x)``, an in-place call on h, then h itself is returned (it holds the call's output)."""

    def __init__(self, overwrite, batchnorm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.overwrite = overwrite
        self.bn = nn.BatchNorm2d(2).eval() if batchnorm else nn.Identity()
        if batchnorm:
            self.bn.running_var.fill_(0.01)  # a large scale: merged with the convolution it would be wrong
        torch.manual_seed(0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape))

    def forward(self, x):
        h = self.conv(x)
        self.overwrite(h, x)
        return self.bn(h)


def _module(layer):
    def call(h, x):
        layer(h)

    call.layer = layer  # registered below, so that the module is a submodule of the model
    return call


def _add_in_place(h, x):
    h += 4 * x  # the caller's tensor changes; the caller's name still points at it


def _add_into(h, x):
    torch.add(30 * x, 40 * x, out=h)  # h now holds 70 x, far above the convolution it replaces


CASES = {
    "LeakyReLU(3, inplace=True)": lambda: _module(nn.LeakyReLU(3.0, inplace=True)),
    "ELU(3, inplace=True)": lambda: _module(nn.ELU(3.0, inplace=True)),
    "F.leaky_relu(h, 3.0, True)": lambda: lambda h, x: F.leaky_relu(h, 3.0, True),
    "F.leaky_relu(h, 3.0, inplace=True)": lambda: lambda h, x: F.leaky_relu(h, 3.0, inplace=True),
    "torch.add(30 x, 40 x, out=h)": lambda: _add_into,
}


@pytest.mark.parametrize("batchnorm", [False, True], ids=["read", "read by a BatchNorm"])
@pytest.mark.parametrize("name", list(CASES))
def test_reads_after_an_in_place_call_are_bounded_as_what_runs(name, batchnorm):
    overwrite = CASES[name]()
    model = _ReadAfter(overwrite, batchnorm).eval()
    if hasattr(overwrite, "layer"):
        model.add_module("layer", overwrite.layer)
    shape = (2, 5, 5)
    got = lipschitz_bound(model, shape, progress=False)
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        a, b = torch.randn(1, *shape, generator=gen) * 3, torch.randn(1, *shape, generator=gen) * 3
        with torch.no_grad():  # a realised ratio (autograd refuses out= calls)
            assert got >= float((model(a) - model(b)).norm() / (a - b).norm()) * (1 - 1e-6)
        if "out=" not in name:
            assert got >= jacobian_norm(model, shape, a) * (1 - 1e-9)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["read", "read by a BatchNorm"])
def test_an_augmented_assignment_torch_fx_records_as_a_sum_is_refused(batchnorm):
    """fx records ``h += 4 x`` as ``h + 4 x`` (a node nobody reads) and h as unchanged: the graph is not
    the model, which a run on a random input shows."""
    model = _ReadAfter(_add_in_place, batchnorm).eval()
    with pytest.raises(LipschitzBoundError, match=r"h \+= y"):
        lipschitz_bound(model, (2, 5, 5), progress=False)
    sum_then_read = nn.Sequential(nn.Conv2d(2, 2, 1))  # a sum whose operand is read again is fine
    assert lipschitz_bound(_SumThenRead(sum_then_read), (2, 5, 5), progress=False) > 0


class _SumThenRead(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        h = self.body(x)
        y = h + x
        return y * 2 + h


def test_a_plain_in_place_relu_keeps_the_merged_bound():
    """conv -> BatchNorm -> ReLU(inplace) -> conv: the in-place call is the only reader, nothing changes."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True), nn.Conv2d(3, 2, 3, padding=1)
    ).eval()
    twin = nn.Sequential(model[0], model[1], nn.ReLU(), model[3]).eval()
    assert lipschitz_bound(model, (2, 6, 6), progress=False) == lipschitz_bound(twin, (2, 6, 6), progress=False)
