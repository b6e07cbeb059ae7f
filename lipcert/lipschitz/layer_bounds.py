"""The registry of layers lipcert can bound, each with its guaranteed Lipschitz factor."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from deel import torchlip
from orthogonium.layers.custom_activations import MaxMin as OrthoMaxMin
from orthogonium.layers.normalization import BatchCentering2D, LayerCentering2D
from torch import nn

from ..core.errors import LipcertError, LipschitzBoundError
from .activations import CONSTANT_MODULES, elu_constant, prelu_constant, resize_bound
from .operator_norms import (
    axis_matrix,
    conv2d_bound,
    conv_transpose2d_bound,
    dense_weight,
    linear_bound,
    max_abs,
    receptive_field_bound,
    spectral_norm_upper,
)

BoundFn = Callable[[nn.Module, "tuple[int, int] | None"], float]


def _one(module, hw) -> float:
    return 1.0


def batchnorm_scale(module: nn.BatchNorm2d) -> torch.Tensor:
    """Per-channel factor (C,) float64 of an eval-mode BatchNorm2d: ``weight / sqrt(running_var + eps)``."""
    if module.running_var is None:
        raise LipschitzBoundError("BatchNorm without running statistics has no fixed eval-mode bound.")
    scale = (module.running_var.detach().to(torch.float64) + module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight.detach().to(torch.float64)
    return scale


def _batchnorm(module: nn.BatchNorm2d, hw) -> float:
    return max_abs(batchnorm_scale(module))


def merges_with_batchnorm(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn(conv(x))`` is bounded as one merged convolution by :func:`conv_batchnorm_bound`."""
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and not bn.training
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )


def conv_batchnorm_bound(conv: nn.Module, bn: nn.Module | None, hw, parts=None) -> float | None:
    """Bound of ``bn(conv(x))`` as one convolution (BatchNorm's scale merged into the kernels), or None.

    Only for the exact built-in types (a subclass may compute something else), and an eval-mode
    BatchNorm2d with running statistics (or ``bn=None``: the convolution alone): then
    ``bn(conv(x)) = conv'(x) + const`` exactly, and the merged operator's norm is at most the product of
    the two (usually well below it). ``parts``: ``[(channel slice, L_i), ...]`` when the input is a
    channel concatenation of parts with Lipschitz bounds ``L_i``: then ``conv'(x) = sum_i conv'_i(x_i)`` and
    the bound is ``sum_i ||conv'_i|| L_i`` (``parts=None``: a factor for the whole input).
    """
    if type(conv) is not nn.Conv2d or (bn is not None and not merges_with_batchnorm(conv, bn)):
        return None
    scale = None if bn is None else batchnorm_scale(bn)
    if parts is None:
        return conv2d_bound(conv, hw, out_scale=scale)
    return sum(conv2d_bound(conv, hw, out_scale=scale, in_channels=sl) * lip for sl, lip in parts if lip > 0)


def _leaky(module: nn.LeakyReLU, hw) -> float:
    return max(1.0, abs(module.negative_slope))


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def avg_pool_bound(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, hw) -> float:
    """Bound of 2-D average pooling: ``sqrt(count * k_h * k_w) / d_min`` (docs/models.md).

    Each output is a window sum over at most ``k_h * k_w`` pixels divided by d >= d_min, and every
    pixel lies in at most ``count = ceil(k_h / s_h) * ceil(k_w / s_w)`` windows, so by Cauchy-Schwarz
    ``||y||**2 <= sum_w |window|/d**2 * ||x_w||**2 <= count * k_h * k_w / d_min**2 * ||x||**2``.
    d_min: the override when given; else the smallest divisor torch uses: ``k_h * k_w`` when padding
    counts and windows never leave the padded input (no ceil_mode), else the fewest valid pixels of a
    window (at least ``min(k - p, size)`` per axis without ceil_mode, 1 with it).
    """
    k, s = _pair(kernel_size), _pair(stride if stride not in (None, ()) else kernel_size)
    p = _pair(padding)
    count = math.ceil(k[0] / s[0]) * math.ceil(k[1] / s[1])
    if divisor_override:
        d_min = float(divisor_override)
    elif count_include_pad and not ceil_mode:
        d_min = float(k[0] * k[1])
    elif ceil_mode or hw is None:
        d_min = 1.0 if (ceil_mode or any(p)) else float(k[0] * k[1])
    else:
        d_min = float(math.prod(max(1, min(k[i] - p[i], hw[i])) if p[i] else k[i] for i in range(2)))
    return math.sqrt(count * k[0] * k[1]) / d_min


def separable_avg_pool_bound(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, hw):
    """Exact operator norm of 2-D average pooling on an (H, W) input (times 1 + 1e-9).

    torch divides every window by a product of a row factor and a column factor (or by the override),
    so the map is ``c * A_h (x) A_w``, whose norm is ``c * ||A_h|| * ||A_w||``; the 1-D matrices come
    from torch itself applied to basis vectors (:func:`axis_matrix`).
    """
    k, p = _pair(kernel_size), _pair(padding)
    s = _pair(stride if stride not in (None, ()) else kernel_size)
    norms = []
    for axis in (0, 1):
        ks = (k[0], 1) if axis == 0 else (1, k[1])
        ss = (s[0], 1) if axis == 0 else (1, s[1])
        ps = (p[0], 0) if axis == 0 else (0, p[1])

        def apply(x, ks=ks, ss=ss, ps=ps):
            return torch.nn.functional.avg_pool2d(
                x, ks, ss, ps, ceil_mode, count_include_pad, 1 if divisor_override else None
            )

        norms.append(spectral_norm_upper(axis_matrix(apply, hw[axis], 2 + axis)))
    scale = 1.0 / float(divisor_override) if divisor_override else 1.0
    return norms[0] * norms[1] * scale


def _pool_avg(module: nn.AvgPool2d, hw) -> float:
    m = module
    args = (m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
    if hw is not None:
        return separable_avg_pool_bound(*args, hw)
    return avg_pool_bound(*args, hw)


def _pool_max(module: nn.MaxPool2d, hw) -> float:
    k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
    s = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
    d = module.dilation if isinstance(module.dilation, tuple) else (module.dilation,) * 2
    return math.sqrt(math.ceil(((k[0] - 1) * d[0] + 1) / s[0]) * math.ceil(((k[1] - 1) * d[1] + 1) / s[1]))


def _upsample(module: nn.Upsample, hw) -> float:
    scale = module.scale_factor
    if hw is not None:  # the exact separable norm at the size it sees
        align = True if isinstance(module, nn.UpsamplingBilinear2d) else module.align_corners
        return resize_bound(hw, module.size, scale, module.mode, align, getattr(module, "recompute_scale_factor", None))
    scales = scale if isinstance(scale, tuple) else (scale, scale)
    if module.mode != "nearest" or scale is None or any(float(s) != int(s) for s in scales):
        raise LipschitzBoundError(
            f"Upsample(mode={module.mode!r}, scale_factor={scale}, size={module.size}) is bounded at the size it "
            "sees: pass `input_shape` to lipschitz_bound (without it only nearest up-sampling by an integer "
            "scale has a size-independent bound), or declare L with `lipschitz=`."
        )
    return math.sqrt(math.prod(int(s) for s in scales))


def _adaptive_avg(module: nn.AdaptiveAvgPool2d, hw) -> float:
    if hw is None:
        raise LipschitzBoundError("AdaptiveAvgPool2d is bounded at the size it sees: pass `input_shape`.")
    out = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
    out = tuple(hw[i] if out[i] is None else out[i] for i in range(2))
    return resize_bound(hw, out, None, "area", None)


def _l2_pool(module: nn.LPPool2d, hw) -> float:
    """The bound of LPPool2d (p = 2 only).

    LPPool2d with p = 2: the l2 norm of each window (1-Lipschitz in it); windows overlap at most
    ``ceil(k_h / s_h) ceil(k_w / s_w)`` times. Other p are no norm in torch (odd powers keep signs).
    """
    if float(module.norm_type) != 2.0:
        raise LipschitzBoundError(f"LPPool2d with norm_type={module.norm_type}: only p = 2 is bounded (a norm).")
    k = _pair(module.kernel_size)
    s = _pair(module.stride if module.stride is not None else module.kernel_size)
    scale = float(module.get_scaling()) if hasattr(module, "get_scaling") else 1.0  # ScaledL2NormPool2d's k_coef_lip
    return math.sqrt(math.ceil(k[0] / s[0]) * math.ceil(k[1] / s[1])) * abs(scale)


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
    nn.ChannelShuffle: _one,
    nn.Flatten: _one,  # reshapes
    nn.Unflatten: _one,
    nn.ZeroPad2d: _one,  # adds zeros (a constant value only shifts: still 1)
    nn.ConstantPad2d: _one,
    nn.AvgPool2d: _pool_avg,
    nn.MaxPool2d: _pool_max,
    nn.Upsample: _upsample,
    nn.UpsamplingNearest2d: _upsample,
    nn.UpsamplingBilinear2d: _upsample,
    nn.AdaptiveAvgPool2d: _adaptive_avg,
    nn.LPPool2d: _l2_pool,
    torchlip.ScaledL2NormPool2d: _l2_pool,
    nn.ELU: lambda m, hw: elu_constant(m.alpha),
    nn.PReLU: lambda m, hw: prelu_constant(m),
    nn.AlphaDropout: _one,
    nn.Dropout1d: _one,
    nn.Dropout3d: _one,
    nn.FeatureAlphaDropout: _one,
    **{cls: (lambda m, hw, c=c: c) for cls, c in CONSTANT_MODULES.items()},
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


def register_layer_bound(layer_type: type, fn: BoundFn, *, override: bool = False) -> None:
    """Teach lipcert a guaranteed bound for a custom layer type: ``fn(module, in_hw) -> float``.

    The registration is global (see :func:`layer_bounds` for a scoped one, or ``lipschitz_bound(...,
    bounds=...)`` for one call). It cannot replace a built-in bound or refusal, nor an earlier
    registration, unless ``override=True`` says so explicitly: a certificate is only as sound as the
    bound you register.

    Args:
        layer_type: the module class (its subclasses that add behaviour stay unknown).
        fn: ``fn(module, in_hw)``: a guaranteed l2 Lipschitz bound of the module, ``in_hw`` its input
            (H, W) or None.
        override: replace an existing (built-in or earlier) entry or refusal.

    Raises:
        LipcertError: ``layer_type`` is not a module class, ``fn`` not callable, or an existing entry
            would be replaced without ``override=True``.

    Examples:
        >>> import torch
        >>> class Half(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x / 2
        >>> register_layer_bound(Half, lambda m, hw: 0.5)
        >>> unregister_layer_bound(Half)
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)) or not callable(fn):
        raise LipcertError("register_layer_bound takes an nn.Module subclass and a callable fn(module, in_hw).")
    taken = layer_type in LAYER_BOUNDS or layer_type in REFUSED_LAYERS
    if taken and not override:
        kind = "a built-in refusal" if layer_type in REFUSED_LAYERS else "a registered bound"
        raise LipcertError(
            f"{layer_type.__name__} already has {kind}; pass override=True to replace it (the certificate then "
            "rests on your bound)."
        )
    LAYER_BOUNDS[layer_type] = fn
    REFUSED_LAYERS.pop(layer_type, None)


def unregister_layer_bound(layer_type: type) -> None:
    """Remove a bound registered with :func:`register_layer_bound` (built-in bounds stay).

    Raises:
        LipcertError: for a built-in layer type or one that is not registered.
    """
    if layer_type in _BUILTIN:
        raise LipcertError(f"{layer_type.__name__} has a built-in bound, which cannot be unregistered.")
    if layer_type not in LAYER_BOUNDS:
        raise LipcertError(f"{getattr(layer_type, '__name__', layer_type)} has no registered bound.")
    del LAYER_BOUNDS[layer_type]
    if layer_type in _BUILTIN_REFUSED:
        REFUSED_LAYERS[layer_type] = _BUILTIN_REFUSED[layer_type]


@contextmanager
def layer_bounds(mapping: dict) -> Iterator[None]:
    """Register bounds for the duration of a ``with`` block only (same rules as register_layer_bound).

    Examples:
        >>> import torch
        >>> class Half(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x / 2
        >>> with layer_bounds({Half: lambda m, hw: 0.5}):
        ...     Half in LAYER_BOUNDS
        True
        >>> Half in LAYER_BOUNDS
        False
    """
    added = []
    try:
        for layer_type, fn in mapping.items():
            register_layer_bound(layer_type, fn)
            added.append(layer_type)
        yield
    finally:
        for layer_type in added:
            unregister_layer_bound(layer_type)


def _pad_conv(module: torchlip.PadConv2d, hw) -> float:
    if module.old_padding_mode.lower() == "symmetric":
        # symmetric padding repeats no pixel more often than the kernel size: receptive-field bound only
        weight = dense_weight(module.weight, module.groups)
        return receptive_field_bound(weight, module.stride, module.dilation)
    return conv2d_bound(module, hw)


LAYER_BOUNDS[torchlip.PadConv2d] = _pad_conv

# methods a subclass may define without changing what its registered parent computes: construction,
# copying and export helpers (the bound functions read the module's attributes and weights at run time,
# through the same properties the forward uses)
_INERT_METHODS = frozenset(
    {"__init__", "__getstate__", "__setstate__", "__deepcopy__", "__reduce__", "extra_repr", "vanilla_export"}
)


def adds_behaviour(module: nn.Module, registered: type) -> str | None:
    """Why ``module`` may compute something else than its registered ancestor class (None: it cannot).

    A class between ``type(module)`` and ``registered`` that defines any method other than the inert
    ones (``forward``, ``_conv_forward``, ...) is unknown, whatever it inherits from; so is a module with
    forward hooks.
    """
    for cls in type(module).__mro__:
        if cls is registered:
            break
        for name, value in vars(cls).items():
            if name not in _INERT_METHODS and (callable(value) or isinstance(value, (staticmethod, classmethod))):
                return f"{cls.__name__} overrides {name}"
    if module._forward_hooks or module._forward_pre_hooks:
        return "it has forward hooks"
    return None


REFUSED_LAYERS: dict[type, str] = {
    nn.Softmax: "a softmax head: certify the logits instead (remove the head); a certificate on probabilities "
    "is looser and means something else",
    nn.LogSoftmax: "a log-softmax head: certify the logits instead (remove the head)",
    nn.Softmax2d: "a softmax head: certify the logits instead (remove the head)",
    nn.LayerNorm: "divides by a statistic of its input: not globally Lipschitz",
    nn.GroupNorm: "divides by a statistic of its input: not globally Lipschitz",
    nn.InstanceNorm1d: "divides by a statistic of its input: not globally Lipschitz",
    nn.InstanceNorm2d: "divides by a statistic of its input: not globally Lipschitz",
    nn.InstanceNorm3d: "divides by a statistic of its input: not globally Lipschitz",
    nn.LocalResponseNorm: "divides by a statistic of its input: not globally Lipschitz",
    nn.MultiheadAttention: "attention is not globally Lipschitz",
    nn.Hardshrink: "discontinuous: no Lipschitz constant",
    nn.Threshold: "discontinuous: no Lipschitz constant",
}
_BUILTIN = frozenset(LAYER_BOUNDS)
_BUILTIN_REFUSED = dict(REFUSED_LAYERS)


def layer_bound(module: nn.Module, hw) -> float | None:
    """The registered bound of a module (most specific registered type first), or None when unknown.

    A subclass of a registered type is bounded as that type only when it adds no behaviour
    (:func:`adds_behaviour`): an overridden ``forward`` may pad or scale in ways the bound does not see.
    """
    for cls in type(module).__mro__:
        if cls in LAYER_BOUNDS:
            if adds_behaviour(module, cls) is not None:
                return None
            return LAYER_BOUNDS[cls](module, hw)
    return None
