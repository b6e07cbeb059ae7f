"""Guaranteed Lipschitz constants of activations (``sup |phi'|``, each rounded up) and of resizing.

An elementwise map with a derivative bounded by c is c-Lipschitz in l2 (coordinate by coordinate, by
the mean value theorem). Piecewise-smooth ones (ReLU6, Hardtanh, Hardswish, Softshrink, abs, clamp) are
continuous with bounded one-sided derivatives, which is enough. Discontinuous ones (Hardshrink,
Threshold) have no constant and stay unknown. The constants are checked against dense numerical
derivatives in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from .operator_norms import axis_matrix, spectral_norm_upper

# sup of the derivative: GELU (erf) Phi(sqrt 2) + sqrt(2) phi(sqrt 2) = 1.12890...; its tanh approximation
# peaks at 1.12899...; SiLU x sigma(x): 1.09984...; Mish: 1.08850...; SELU: scale * alpha = 1.75810...
GELU = 1.1291
SILU = 1.0999
MISH = 1.0887
SELU = 1.0507009873554805 * 1.6732632423543772 * (1 + 1e-12)


def elu_constant(alpha: float) -> float:
    """ELU: slope 1 for x > 0, ``alpha e^x`` below: ``max(1, |alpha|)``."""
    return max(1.0, abs(float(alpha)))


def leaky_constant(slope: float) -> float:
    """LeakyReLU: ``max(1, |slope|)``."""
    return max(1.0, abs(float(slope)))


def prelu_constant(module: nn.PReLU) -> float:
    """PReLU: ``max(1, max |a|)`` over its learned slopes."""
    return max(1.0, float(module.weight.detach().abs().max()))


CONSTANT_MODULES: dict[type, float] = {
    nn.GELU: GELU,
    nn.SiLU: SILU,
    nn.Mish: MISH,
    nn.SELU: SELU,
    nn.CELU: 1.0,  # derivative exp(x / alpha) <= 1 below 0
    # derivative sigmoid(beta x) <= 1, slope 1 past the threshold (torch switches to x there: a step of
    # log(1 + e^-threshold) / beta, 2e-9 for the default 20, far below float32 resolution at that value)
    nn.Softplus: 1.0,
    nn.Sigmoid: 0.25,
    nn.Tanh: 1.0,
    nn.Hardtanh: 1.0,
    nn.ReLU6: 1.0,
    nn.Hardsigmoid: 1.0 / 6.0,
    nn.Hardswish: 1.5,  # (2x + 3) / 6 on (-3, 3)
    nn.LogSigmoid: 1.0,
    nn.Softsign: 1.0,
    nn.Tanhshrink: 1.0,
    nn.Softshrink: 1.0,
}


def _leaky_range(slope: float) -> tuple[float, float]:
    return (min(float(slope), 1.0), max(float(slope), 1.0))


# Slope ranges ``[lo, hi]``: every difference quotient ``(phi(u) - phi(w)) / (u - w)`` lies in it (mean value
# theorem; one-sided derivatives for the piecewise ones). GELU and SiLU are ``x s(x)`` with ``s(x) + s(-x) = 1``,
# so ``phi'(x) + phi'(-x) = 1`` and their least slope is ``1 - sup phi'`` (the tanh form of GELU too).
MODULE_SLOPES: dict[type, Callable[[nn.Module], tuple[float, float]]] = {
    nn.ReLU: lambda m: (0.0, 1.0),
    nn.ReLU6: lambda m: (0.0, 1.0),
    nn.Hardtanh: lambda m: (0.0, 1.0),
    nn.Tanh: lambda m: (0.0, 1.0),
    nn.Sigmoid: lambda m: (0.0, 0.25),
    nn.GELU: lambda m: (1.0 - GELU, GELU),
    nn.SiLU: lambda m: (1.0 - SILU, SILU),
    nn.LeakyReLU: lambda m: _leaky_range(m.negative_slope),
    nn.ELU: lambda m: (min(0.0, float(m.alpha)), max(1.0, float(m.alpha))),
    nn.PReLU: lambda m: (min(1.0, float(m.weight.detach().min())), max(1.0, float(m.weight.detach().max()))),
}
FUNCTION_SLOPES: dict = {
    F.relu: (0.0, 1.0), torch.relu: (0.0, 1.0), "relu": (0.0, 1.0),
    F.relu6: (0.0, 1.0), F.hardtanh: (0.0, 1.0), "hardtanh": (0.0, 1.0),
    torch.tanh: (0.0, 1.0), F.tanh: (0.0, 1.0), "tanh": (0.0, 1.0),
    torch.sigmoid: (0.0, 0.25), F.sigmoid: (0.0, 0.25), "sigmoid": (0.0, 0.25),
    F.gelu: (1.0 - GELU, GELU), "gelu": (1.0 - GELU, GELU),
    F.silu: (1.0 - SILU, SILU), "silu": (1.0 - SILU, SILU),
}  # fmt: skip


def activation_slopes(node: fx.Node, modules: dict) -> tuple[float, float] | None:
    """The slope range of an elementwise activation node of one tensor, or None if it is not one.

    Modules of the exact built-in types (a subclass may compute something else), the functions above,
    and ``F.leaky_relu`` with a literal slope. Extra tensor arguments (e.g. an ``out=``) rule it out.

    Args:
        node: a node of a traced graph.
        modules: ``dict(root.named_modules())`` of the traced root.

    Returns:
        ``(lo, hi)``: every difference quotient of the activation lies in it; or None.

    Examples:
        >>> from torch import fx, nn
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.LeakyReLU(0.1)))
        >>> [activation_slopes(n, dict(gm.named_modules())) for n in gm.graph.nodes]
        [None, (0.1, 1.0), None]
    """
    if node.op == "call_module":
        mod = modules.get(node.target)
        rule = MODULE_SLOPES.get(type(mod))
        return None if rule is None or len(node.args) != 1 or node.kwargs else rule(mod)
    if node.op not in ("call_function", "call_method"):
        return None
    if node.target in (F.leaky_relu, "leaky_relu"):
        slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
        ok = isinstance(slope, (int, float)) and not isinstance(slope, bool) and math.isfinite(slope)
        return _leaky_range(slope) if ok else None
    extra = [a for a in list(node.args[1:]) + list(node.kwargs.values()) if isinstance(a, fx.Node)]
    return None if extra else FUNCTION_SLOPES.get(node.target)


def resize_bound(hw, size, scale_factor, mode, align_corners, recompute_scale_factor=None, antialias=False) -> float:
    """Exact operator norm (times 1 + 1e-9) of a 2-D resize of an (H, W) input, per channel.

    Every torch mode (nearest, nearest-exact, bilinear, bicubic, area; align_corners either way; any size
    or scale; antialias) acts on rows and columns separately: the map is ``A_h (x) A_w``, whose norm is
    ``||A_h|| ||A_w||``; each 1-D matrix comes from ``F.interpolate`` itself on basis vectors.
    """
    scales = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    sizes = size if isinstance(size, (tuple, list)) else (size, size)
    norms = []
    for axis in (0, 1):

        def apply(x, axis=axis):
            kw = dict(mode=mode, antialias=antialias)
            if mode in ("linear", "bilinear", "bicubic", "trilinear"):
                kw["align_corners"] = align_corners
            if size is not None:
                kw["size"] = (sizes[0], 1) if axis == 0 else (1, sizes[1])
            else:
                kw["scale_factor"] = (float(scales[0]), 1.0) if axis == 0 else (1.0, float(scales[1]))
                kw["recompute_scale_factor"] = recompute_scale_factor
            return F.interpolate(x, **kw)

        norms.append(spectral_norm_upper(axis_matrix(apply, hw[axis], 2 + axis)))
    return norms[0] * norms[1]


__all__ = [
    "CONSTANT_MODULES",
    "GELU",
    "MISH",
    "SELU",
    "SILU",
    "FUNCTION_SLOPES",
    "MODULE_SLOPES",
    "activation_slopes",
    "elu_constant",
    "leaky_constant",
    "prelu_constant",
    "resize_bound",
]
