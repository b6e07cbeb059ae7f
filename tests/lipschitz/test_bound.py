import math

import pytest
import torch
from deel import torchlip
from orthogonium.layers.conv.AOC import AdaptiveOrthoConv2d, AdaptiveOrthoConvTranspose2d
from torch import nn

from lipcert import LipschitzBoundError, lipschitz_bound, lipschitz_lower_bound
from lipcert.models import InputNormalization, LipNet, LipUNet, export_plain

torch.manual_seed(0)


def _conv(**kw):
    c = nn.Conv2d(4, 6, bias=False, **kw)
    with torch.no_grad():
        c.weight.normal_()
    return c


LAYERS = {
    "conv3_zeros": lambda: _conv(kernel_size=3, padding=1),
    "conv3_circular": lambda: _conv(kernel_size=3, padding=1, padding_mode="circular"),
    "conv3_replicate1": lambda: _conv(kernel_size=3, padding=1, padding_mode="replicate"),
    "conv3_stride2": lambda: _conv(kernel_size=3, stride=2, padding=1),
    "conv3_dilated": lambda: _conv(kernel_size=3, padding=2, dilation=2),
    "conv3_dilated_stride2": lambda: _conv(kernel_size=3, stride=2, padding=2, dilation=2),
    "conv2_groups": lambda: nn.Conv2d(4, 6, 2, groups=2, bias=False),
    "conv_t2": lambda: nn.ConvTranspose2d(4, 6, 2, stride=2, bias=False),
    "conv_t3": lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, bias=False),
    "conv_t4": lambda: nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, bias=False),
    "aoc3": lambda: AdaptiveOrthoConv2d(4, 8, 3, padding=1, padding_mode="zeros", bias=False),
    "aoc3_s2": lambda: AdaptiveOrthoConv2d(4, 16, 3, stride=2, padding=1, padding_mode="zeros", bias=False),
    "aoc_t2": lambda: AdaptiveOrthoConvTranspose2d(4, 2, 2, stride=2, bias=False),
    "spectral3": lambda: torchlip.SpectralConv2d(4, 6, 3, padding=1),
    "batchnorm": lambda: _bn(),
    "avgpool": lambda: nn.AvgPool2d(2),
    "avgpool_overlap": lambda: nn.AvgPool2d(3, stride=1, padding=1),
    "maxpool_overlap": lambda: nn.MaxPool2d(3, stride=1, padding=1),
    "upsample": lambda: nn.Upsample(scale_factor=2, mode="nearest"),
    "normalization": lambda: InputNormalization([0.5] * 4, [0.2, 0.3, 0.4, 0.5], gain=2.0),
    "linear": lambda: nn.Linear(8, 5, bias=False),
}


def _bn():
    bn = nn.BatchNorm2d(4)
    bn.running_var = torch.tensor([0.5, 2.0, 0.1, 1.0])
    bn.weight.data = torch.tensor([1.0, -3.0, 0.5, 1.0])
    return bn.eval()


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("size", [8, 13])
def test_layer_bound_is_above_the_true_operator_norm(name, size):
    layer = LAYERS[name]().eval()
    if name == "aoc3_s2" and size % 2:
        size += 1
    shape = (4, size, 8 if name == "linear" else size)
    x = torch.rand(2, *shape)
    upper = lipschitz_bound(layer, shape)
    lower = lipschitz_lower_bound(layer, x, n_iter=60, n_random=2)
    assert lower <= upper
    assert lipschitz_bound(layer) >= lower  # the size-independent bound is an upper bound too


@pytest.mark.parametrize("name", ["conv3_zeros", "conv3_stride2", "conv_t2", "aoc3", "aoc_t2", "linear"])
def test_fourier_bound_is_tight(name):
    layer = LAYERS[name]().eval()
    shape = (4, 16, 8 if name == "linear" else 16)
    upper = lipschitz_bound(layer, shape)
    lower = lipschitz_lower_bound(layer, torch.rand(1, *shape), n_iter=200, n_random=0)
    assert upper <= 1.15 * lower


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(2, 2, 5, padding=2, padding_mode="replicate"),
        nn.Hardshrink(),
        nn.BatchNorm2d(2, track_running_stats=False),
        nn.InstanceNorm2d(2),
    ],
)
def test_unsafe_or_unknown_layers_are_refused(layer):
    with pytest.raises(LipschitzBoundError):
        lipschitz_bound(nn.Sequential(layer), (2, 8, 8))


def test_unknown_operations_are_listed():
    class Square(nn.Module):
        def forward(self, x):
            return x * x + torch.sin(x)

    with pytest.raises(LipschitzBoundError, match="mul|sin"):
        lipschitz_bound(Square(), (1, 4, 4))

    class HandNorm(nn.Module):  # normalisation by a stored tensor: 1 / min |std|, read from the buffer
        def __init__(self):
            super().__init__()
            self.register_buffer("std", torch.tensor([0.2, 0.5]).view(1, 2, 1, 1))

        def forward(self, x):
            return x / self.std

    assert lipschitz_bound(HandNorm(), (2, 4, 4)) == pytest.approx(5.0, rel=1e-5)

    class ByZero(nn.Module):
        def forward(self, x):
            return x / 0.0

    with pytest.raises(LipschitzBoundError, match="truediv"):
        lipschitz_bound(ByZero(), (1, 4, 4))


def test_graph_rules_sum_concat_and_scale():
    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 1, bias=False)
            self.b = nn.Conv2d(1, 1, 1, bias=False)
            self.a.weight.data.fill_(3.0)
            self.b.weight.data.fill_(4.0)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1) * 0.5 + self.a(x)

    # concat: sqrt(9 + 16) = 5, times 0.5, plus 3 * sqrt(2): a(x) is broadcast to both channels, which
    # repeats it twice (the former 2.5 + 3 was below the true constant sqrt(4.5**2 + 5**2) = 6.73)
    net = Graph()
    bound = lipschitz_bound(net, (1, 4, 4))
    assert bound == pytest.approx(2.5 + 3.0 * math.sqrt(2.0), rel=1e-5)
    assert bound >= _dense_norm(net.double(), (1, 4, 4))


@pytest.mark.parametrize(
    "forward",
    [
        lambda x: x + x[..., :1, :1],
        lambda x: x - x[:, :, :1],
        lambda x: torch.maximum(x, x[..., :1]),
        lambda x: x * 2.0 + x[:, :, 1:2, 1:2],
    ],
    ids=["corner", "row", "maximum", "scaled"],
)
def test_broadcast_operands_are_counted_with_their_repetitions(forward):
    class Net(nn.Module):
        def forward(self, x):
            return forward(x)

    net = Net()
    exact = _dense_norm(net, (1, 4, 5))
    assert lipschitz_bound(net, (1, 4, 5)) >= exact * (1 - 1e-9)
    with pytest.raises(LipschitzBoundError, match="input_shape"):
        lipschitz_bound(nn.Sequential(nn.Conv2d(1, 1, 1), net))  # size-dependent: refused without a size


def test_normalisation_is_counted_and_a_model_assumed_1_lipschitz_is_caught():
    net = LipUNet(3, in_channels=3, widths=[(8, 1), (16, 1)], stem=8, std=[0.25, 0.25, 0.25]).eval()
    upper = lipschitz_bound(net, (3, 16, 16))
    assert upper == pytest.approx(4.0, rel=1e-3)  # 1 / min(std), everything else orthogonal
    lower = lipschitz_lower_bound(net, torch.rand(2, 3, 16, 16))
    assert 1.0 < lower <= upper  # assuming L = 1 (the reference code's mistake) would be unsound


@pytest.mark.parametrize("arch", ["LipNet", "LipUNet"])
@pytest.mark.parametrize("parametrization", ["aoc", "spectral"])
def test_models_are_1_lipschitz_by_construction_and_export_is_identical(arch, parametrization):
    cls = LipNet if arch == "LipNet" else LipUNet
    kw = dict(rates=(2,)) if arch == "LipNet" else dict(stem=8)
    net = cls(5, widths=[(8, 1), (16, 1)], parametrization=parametrization, **kw).eval()
    x = torch.rand(2, 3, 16, 16)
    exported = export_plain(net)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-5, rtol=1e-5)
    upper = lipschitz_bound(exported, (3, 16, 16))
    assert upper <= 1.0 + 1e-3
    assert lipschitz_lower_bound(exported, x) <= upper


def test_plain_twin_has_a_computed_not_assumed_bound():
    twin = LipUNet(5, widths=[(8, 1), (16, 1)], stem=8, parametrization="plain").eval()
    upper = lipschitz_bound(twin, (3, 16, 16))
    assert math.isfinite(upper) and upper >= lipschitz_lower_bound(twin, torch.rand(1, 3, 16, 16))


def test_functional_padding_and_indexing_that_repeat_pixels_are_refused():
    import torch.nn.functional as F

    class Pad(nn.Module):
        def __init__(self, mode):
            super().__init__()
            self.mode = mode

        def forward(self, x):
            return F.pad(x, (1, 1, 1, 1), mode=self.mode)

    assert lipschitz_bound(Pad("constant"), (1, 4, 4)) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(LipschitzBoundError, match="reflect"):
        lipschitz_bound(Pad("reflect"), (1, 4, 4))

    class Slice(nn.Module):
        def forward(self, x):
            return x[:, :, 1:, :2]

    class Repeat(nn.Module):
        def forward(self, x):
            return x[:, [0, 0]]

    assert lipschitz_bound(Slice(), (2, 4, 4)) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(LipschitzBoundError, match="indexing"):
        lipschitz_bound(Repeat(), (2, 4, 4))


def _dense_norm(module, shape):
    x = torch.zeros(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: module(v).flatten(), x).reshape(-1, x.numel())
    return float(torch.linalg.matrix_norm(jac, 2))


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 1)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("divisor_override", [None, 1, 5])
def test_every_avg_pool_variant_is_bounded_tightly_and_soundly(
    kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    shape = (1, 7, 6)
    exact = _dense_norm(pool, shape)
    sized = lipschitz_bound(pool, shape)
    assert exact <= sized <= exact * (1 + 1e-5)  # exact separable norm, up to the float slack
    assert lipschitz_bound(pool) >= exact * (1 - 1e-9)  # the size-independent bound is sound too


@pytest.mark.parametrize("base", [nn.Identity, nn.ReLU, nn.Dropout, nn.PixelShuffle, nn.BatchNorm2d])
def test_subclasses_of_registered_layers_that_add_behaviour_are_unknown(base):
    sub = type("Scaled" + base.__name__, (base,), {"forward": lambda self, x: 10 * base.forward(self, x)})
    args = {nn.PixelShuffle: (1,), nn.BatchNorm2d: (1,)}.get(base, ())
    with pytest.raises(LipschitzBoundError, match="overrides forward"):
        lipschitz_bound(nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), sub(*args)), (1, 4, 4))


def test_a_subclass_that_only_changes_construction_keeps_its_parents_bound():
    class Wide(nn.Conv2d):
        def __init__(self):
            super().__init__(1, 1, 1, bias=False)

    net = Wide()
    with torch.no_grad():
        net.weight.fill_(3.0)
    assert lipschitz_bound(net, (1, 4, 4)) == pytest.approx(3.0, rel=1e-5)


def test_a_model_with_a_hook_on_a_container_is_refused():
    body = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    body.register_forward_hook(lambda m, i, o: 10 * o)
    with pytest.raises(LipschitzBoundError, match="hooks"):
        lipschitz_bound(nn.Sequential(body), (1, 4, 4))


@pytest.mark.parametrize("out", ["dict", "tuple"])
def test_structured_outputs_are_refused_naming_their_type(out):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 1, bias=False)

        def forward(self, x):
            y = self.c(x)
            return {"out": y} if out == "dict" else (y, y)

    with pytest.raises(LipschitzBoundError, match=out):
        lipschitz_bound(Net(), (1, 4, 4))


def test_refusals_name_the_path_in_the_users_model_and_both_ways_out():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Sequential(nn.Threshold(0.1, 0.0)))
    with pytest.raises(LipschitzBoundError) as info:
        lipschitz_bound(net, (1, 4, 4))
    msg = str(info.value)
    assert "1.0 (Threshold" in msg and "lipschitz=" in msg and "register_layer_bound" in msg
