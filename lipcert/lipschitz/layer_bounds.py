"""The registry of layers lipcert can bound, each with its guaranteed Lipschitz factor."""

from __future__ import annotations

import math
from collections.abc import Callable

from deel import torchlip
from orthogonium.layers.custom_activations import MaxMin as OrthoMaxMin
from orthogonium.layers.normalization import BatchCentering2D, LayerCentering2D
from torch import nn

from ..errors import LipschitzBoundError
from .operator_norms import (
    conv2d_bound,
    conv_transpose2d_bound,
    dense_weight,
    linear_bound,
    max_abs,
    receptive_field_bound,
)

BoundFn = Callable[[nn.Module, "tuple[int, int] | None"], float]


def _one(module, hw) -> float:
    return 1.0


def _batchnorm(module: nn.BatchNorm2d, hw) -> float:
    if module.running_var is None:
        raise LipschitzBoundError("BatchNorm without running statistics has no fixed eval-mode bound.")
    scale = (module.running_var + module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight.detach()
    return max_abs(scale)


def _leaky(module: nn.LeakyReLU, hw) -> float:
    return max(1.0, abs(module.negative_slope))


def _pool_avg(module: nn.AvgPool2d, hw) -> float:
    k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
    s = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
    count = math.ceil(k[0] / s[0]) * math.ceil(k[1] / s[1])
    return math.sqrt(count / (k[0] * k[1]))


def _pool_max(module: nn.MaxPool2d, hw) -> float:
    k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
    s = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
    d = module.dilation if isinstance(module.dilation, tuple) else (module.dilation,) * 2
    return math.sqrt(math.ceil(((k[0] - 1) * d[0] + 1) / s[0]) * math.ceil(((k[1] - 1) * d[1] + 1) / s[1]))


def _upsample(module: nn.Upsample, hw) -> float:
    scale = module.scale_factor
    scales = scale if isinstance(scale, tuple) else (scale, scale)
    if module.mode != "nearest" or scale is None or any(float(s) != int(s) for s in scales):
        raise LipschitzBoundError("Only nearest up-sampling with an integer scale_factor can be bounded.")
    return math.sqrt(math.prod(int(s) for s in scales))


def _group_sort(module, hw) -> float:
    return 1.0  # a permutation within groups: 1-Lipschitz


LAYER_BOUNDS: dict[type, BoundFn] = {
    nn.Conv2d: lambda m, hw: conv2d_bound(m, hw),
    nn.ConvTranspose2d: lambda m, hw: conv_transpose2d_bound(m, hw),
    nn.Linear: lambda m, hw: linear_bound(m.weight),
    nn.BatchNorm2d: _batchnorm,
    nn.ReLU: _one,
    nn.LeakyReLU: _leaky,
    nn.Identity: _one,
    nn.Dropout: _one,  # identity in eval mode
    nn.Dropout2d: _one,
    nn.PixelShuffle: _one,  # permutations of coordinates
    nn.PixelUnshuffle: _one,
    nn.AvgPool2d: _pool_avg,
    nn.MaxPool2d: _pool_max,
    nn.Upsample: _upsample,
    OrthoMaxMin: _one,
    torchlip.MaxMin: _one,
    torchlip.GroupSort: _group_sort,
    torchlip.GroupSort2: _group_sort,
    torchlip.FullSort: _group_sort,
    torchlip.InvertibleDownSampling: _one,
    torchlip.InvertibleUpSampling: _one,
    BatchCentering2D: _one,  # eval: subtracts a constant
    LayerCentering2D: _one,  # subtracts the per-channel spatial mean: an orthogonal projection
    torchlip.BatchCentering: _one,
    torchlip.LayerCentering: _one,
}


def register_layer_bound(layer_type: type, fn: BoundFn) -> None:
    """Teach lipcert a guaranteed bound for a custom layer type: ``fn(module, in_hw) -> float``.

    Example:
        >>> import torch
        >>> class Half(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x / 2
        >>> register_layer_bound(Half, lambda m, hw: 0.5)
    """
    LAYER_BOUNDS[layer_type] = fn


def _pad_conv(module: torchlip.PadConv2d, hw) -> float:
    if module.old_padding_mode.lower() == "symmetric":
        # symmetric padding repeats no pixel more often than the kernel size: receptive-field bound only
        weight = dense_weight(module.weight, module.groups)
        return receptive_field_bound(weight, module.stride, module.dilation)
    return conv2d_bound(module, hw)


LAYER_BOUNDS[torchlip.PadConv2d] = _pad_conv
_STANDARD_FORWARD = {nn.Conv2d: nn.Conv2d.forward, nn.ConvTranspose2d: nn.ConvTranspose2d.forward}


def layer_bound(module: nn.Module, hw) -> float | None:
    """The registered bound of a module (most specific type first), or None when unknown.

    A subclass of Conv2d / ConvTranspose2d that overrides ``forward`` (other than the registered
    PadConv2d) is unknown: its forward may pad or scale in ways the conv bound does not see.
    """
    for cls in type(module).__mro__:
        if cls in LAYER_BOUNDS:
            if cls in _STANDARD_FORWARD and type(module).forward is not _STANDARD_FORWARD[cls]:
                return None
            return LAYER_BOUNDS[cls](module, hw)
    return None
