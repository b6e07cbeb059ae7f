"""Bounds of functions and tensor methods met in a traced graph (the functional forms of layers).

Each entry maps an fx ``call_function`` / ``call_method`` node to the Lipschitz factor of its (single)
image-dependent argument, or to a refusal reason. Shapes and constants come from one zero-input run of
the graph (``facts``). See docs/models.md for the table and why each factor is sound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import fx

from .activations import GELU, MISH, SELU, SILU, elu_constant, leaky_constant, resize_bound
from .layer_bounds import avg_pool_bound, separable_avg_pool_bound

_CONSTANT = {
    F.gelu: GELU, "gelu": GELU,
    F.silu: SILU, "silu": SILU,
    F.mish: MISH, "mish": MISH,
    F.selu: SELU, torch.selu: SELU, "selu": SELU,
    F.celu: 1.0, torch.celu: 1.0,
    F.softplus: 1.0,
    torch.sigmoid: 0.25, F.sigmoid: 0.25, "sigmoid": 0.25,
    torch.tanh: 1.0, F.tanh: 1.0, "tanh": 1.0,
    F.hardtanh: 1.0, "hardtanh": 1.0,
    F.relu6: 1.0,
    F.hardsigmoid: 1.0 / 6.0,
    F.hardswish: 1.5,
    F.logsigmoid: 1.0,
    F.softsign: 1.0,
    F.tanhshrink: 1.0,
    F.softshrink: 1.0,
    torch.abs: 1.0, "abs": 1.0,
    torch.clamp: 1.0, torch.clip: 1.0, "clamp": 1.0, "clip": 1.0, "clamp_min": 1.0, "clamp_max": 1.0,
    torch.flip: 1.0, "flip": 1.0, torch.roll: 1.0, "roll": 1.0, torch.rot90: 1.0,
    torch.fliplr: 1.0, torch.flipud: 1.0,
}  # fmt: skip
_COPIES = {"expand", "repeat", torch.broadcast_to, "broadcast_to", torch.Tensor.expand, torch.Tensor.repeat}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
_REFUSED = {
    F.softmax: "a softmax head: certify the logits instead (remove the head, or wrap the model to return "
    "its logits); a certificate on probabilities is looser and means something else",
    F.log_softmax: "a log-softmax head: certify the logits instead (remove the head, or wrap the model to "
    "return its logits); a certificate on probabilities is looser and means something else",
    torch.softmax: "a softmax head: certify the logits instead",
    torch.log_softmax: "a log-softmax head: certify the logits instead",
    "softmax": "a softmax head: certify the logits instead",
    "log_softmax": "a log-softmax head: certify the logits instead",
    F.layer_norm: "layer normalisation divides by a statistic of its input: not globally Lipschitz",
    F.group_norm: "group normalisation divides by a statistic of its input: not globally Lipschitz",
    F.instance_norm: "instance normalisation divides by a statistic of its input: not globally Lipschitz",
    F.scaled_dot_product_attention: "attention is not globally Lipschitz",
    F.hardshrink: "hardshrink is discontinuous: no Lipschitz constant",
    F.threshold: "threshold is discontinuous: no Lipschitz constant",
}


def _arg(node: fx.Node, index: int, name: str, default, facts=None):
    """An argument by position or keyword; a graph node (e.g. ``x.shape[-2:]``) resolved to its value."""
    value = node.kwargs[name] if name in node.kwargs else (node.args[index] if len(node.args) > index else default)
    if facts is not None:
        if isinstance(value, fx.Node):
            return facts["values"].get(value, value)
        if isinstance(value, (tuple, list)):
            return type(value)(facts["values"].get(v, v) if isinstance(v, fx.Node) else v for v in value)
    return value


def _in_shape(node: fx.Node, facts):
    first = node.args[0] if node.args else None
    if facts is None or not isinstance(first, fx.Node):
        return None
    return facts["shapes"].get(first)


def functional_bound(node: fx.Node, bound: float, facts) -> float | str | None:
    """The bound of a function node, a refusal reason, or None.

    The bound of a function node whose image-dependent argument has ``bound``; a refusal reason; or
    None when the node is none of these functions (the caller's general rules apply).
    """
    target = node.target
    if target in _REFUSED:
        return _REFUSED[target]
    if target in _CONSTANT:
        return bound * _CONSTANT[target]
    if target in (F.elu, "elu"):
        return bound * elu_constant(_arg(node, 1, "alpha", 1.0))
    if target in (F.leaky_relu, "leaky_relu"):
        return bound * leaky_constant(_arg(node, 1, "negative_slope", 0.01))
    if target in _DROPOUT:
        training = _arg(node, 2, "training", True)
        return bound if training is False else "functional dropout called with training=True (active in eval mode)"
    if target in (F.interpolate, "interpolate", F.upsample):
        return _interpolate(node, bound, facts)
    if target in (F.avg_pool2d, F.adaptive_avg_pool2d, F.max_pool2d):
        return _pool(node, bound, facts)
    if target in (torch.mean, "mean", torch.sum, "sum"):
        return _reduction(node, bound, facts)
    if target in _COPIES:
        return _copies(node, bound, facts)
    return None


def _copies(node: fx.Node, bound: float, facts):
    """The bound of ``expand`` / ``repeat`` / ``broadcast_to``: every element copied ``N / n`` times.

    Each of the n input elements appears exactly ``N / n`` times in the N outputs, so
    ``||f(x) - f(y)||^2 = (N / n) ||x - y||^2``: the factor is ``sqrt(N / n)``, exact.
    """
    ratio = _size_ratio(node, facts)
    if ratio is None:
        return "a broadcast is bounded at the size it sees: pass `input_shape`"
    return bound * math.sqrt(1.0 / ratio)


def _size_ratio(node: fx.Node, facts) -> float | None:
    """Elements of the node's first argument over its own (None without shapes from a run at input_shape)."""
    first = node.args[0] if node.args else None
    if facts is None or not isinstance(first, fx.Node) or first not in facts["numels"] or node not in facts["numels"]:
        return None
    return facts["numels"][first] / max(1, facts["numels"][node])


def _interpolate(node: fx.Node, bound: float, facts):
    shape = _in_shape(node, facts)
    if shape is None or len(shape) != 4:
        return "interpolate is bounded at the size it sees: pass `input_shape`"
    size, scale = _arg(node, 1, "size", None, facts), _arg(node, 2, "scale_factor", None, facts)
    mode, align = _arg(node, 3, "mode", "nearest"), _arg(node, 4, "align_corners", None)
    recompute, antialias = _arg(node, 5, "recompute_scale_factor", None), _arg(node, 6, "antialias", False)
    if any(isinstance(v, fx.Node) for v in (size if isinstance(size, (tuple, list)) else (size, scale))):
        return "interpolate with a size computed from the image: pass `input_shape`"
    if mode not in ("nearest", "nearest-exact", "bilinear", "bicubic", "area"):
        return f"interpolate mode={mode!r} on a 4-D input"
    return bound * resize_bound(shape[-2:], size, scale, mode, align, recompute, antialias)


def _pool(node: fx.Node, bound: float, facts):
    shape = _in_shape(node, facts)
    if node.target is F.adaptive_avg_pool2d:
        if shape is None:
            return "adaptive average pooling is bounded at the size it sees: pass `input_shape`"
        out = _arg(node, 1, "output_size", None, facts)
        out = out if isinstance(out, (tuple, list)) else (out, out)
        out = tuple(shape[-2 + i] if out[i] is None else out[i] for i in range(2))
        return bound * resize_bound(shape[-2:], out, None, "area", None)
    k = _arg(node, 1, "kernel_size", None)
    stride = _arg(node, 2, "stride", None) or k
    padding = _arg(node, 3, "padding", 0)
    if node.target is F.max_pool2d:
        dilation = _arg(node, 4, "dilation", 1)
        kk = k if isinstance(k, (tuple, list)) else (k, k)
        ss = stride if isinstance(stride, (tuple, list)) else (stride, stride)
        dd = dilation if isinstance(dilation, (tuple, list)) else (dilation, dilation)
        return bound * math.sqrt(math.prod(math.ceil(((kk[i] - 1) * dd[i] + 1) / ss[i]) for i in range(2)))
    ceil_mode = _arg(node, 4, "ceil_mode", False)
    include = _arg(node, 5, "count_include_pad", True)
    divisor = _arg(node, 6, "divisor_override", None)
    if shape is not None:
        return bound * separable_avg_pool_bound(k, stride, padding, ceil_mode, include, divisor, shape[-2:])
    return bound * avg_pool_bound(k, stride, padding, ceil_mode, include, divisor, None)


def _reduction(node: fx.Node, bound: float, facts):
    """The bound of a mean or sum over dimensions.

    Mean / sum over dimensions: each output averages (sums) n = in / out elements, so its norm is at
    most ``1 / sqrt(n)`` (``sqrt(n)``) of theirs; a broadcast back (centring) is counted where it happens.
    """
    n = _size_ratio(node, facts)
    if n is None:
        return "a reduction is bounded at the size it sees: pass `input_shape`"
    mean = node.target in (torch.mean, "mean")
    return bound * (1.0 / math.sqrt(n) if mean else math.sqrt(n))
