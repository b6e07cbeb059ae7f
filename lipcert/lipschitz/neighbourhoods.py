"""Neighbourhoods of the traced graph bounded as one operator, where a product of layer bounds is loose.

A BatchNorm whose input is a convolution's output (one merged convolution), a convolution whose input
is a channel concatenation (part by part), and a convolution reading an activation of a convolution
(through the activation's slope range). Each rule bounds the map from the image to that node's value,
whatever else reads the intermediate values (those keep their own bounds). Proofs: docs/models.md.
"""

from __future__ import annotations

import math

import torch
from torch import fx, nn

from .activations import activation_slopes
from .graph_facts import input_size
from .layer_bounds import batchnorm_scale, conv_batchnorm_bound, merges_with_batchnorm
from .operator_norms import compose_kernels, composed_extent, dense_weight, full_support_bound


def only_feeds_merged_batchnorms(node: fx.Node, mod: nn.Module, modules: dict) -> bool:
    """A Conv2d whose every user is a BatchNorm2d that :func:`conv_batchnorm_bound` merges with it."""
    if not node.users:
        return False
    for user in node.users:
        bn = modules.get(user.target) if user.op == "call_module" else None
        if bn is None or not merges_with_batchnorm(mod, bn) or user.args[:1] != (node,):
            return False
    return True


def _concat_parts(node: fx.Node, facts, bounds: dict) -> list | None:
    """``[(channel slice, bound), ...]`` when a module's input is a channel concatenation, else None.

    (Other users of the concatenation do not matter: the result bounds this module's map from the parts.)
    """
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node) or src.op != "call_function" or src.target not in (torch.cat, torch.concat):
        return None
    dim = src.kwargs.get("dim", src.args[1] if len(src.args) > 1 else 0)
    pieces = src.args[0] if src.args else None
    if facts is None or not isinstance(pieces, (list, tuple)):
        return None
    shapes = [facts["shapes"].get(p) if isinstance(p, fx.Node) else None for p in pieces]
    if any(s is None or len(s) != 4 for s in shapes) or dim not in (1, -3):
        return None
    parts, start = [], 0
    for p, s in zip(pieces, shapes, strict=True):
        parts.append((slice(start, start + s[1]), bounds.get(p, 0.0)))
        start += s[1]
    return parts


def merged_bound(node: fx.Node, mod: nn.Module, modules: dict, sized, facts, bounds, inputs) -> float | None:
    """Tighter bounds of a module call from its neighbours, or None.

    A convolution whose input is a channel concatenation: the sum over the parts. A BatchNorm whose input
    is a convolution's output: the pair as one merged convolution (with the parts of the convolution's
    input). Both bound the map from the image to this node's value, whatever else uses the intermediate
    values (those keep their own bounds).
    """
    if type(mod) is nn.Conv2d:
        parts = _concat_parts(node, facts, bounds)
        return None if parts is None else conv_batchnorm_bound(mod, None, input_size(node, sized), parts)
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node) or src.op != "call_module" or src not in inputs:
        return None
    conv, hw = modules[src.target], input_size(src, sized)
    factor = conv_batchnorm_bound(conv, mod, hw)
    if factor is None:
        return None
    best = factor * inputs[src]  # (when the convolution alone was not bounded, the product here is inf)
    parts = _concat_parts(src, facts, bounds)
    if parts is not None:
        best = min(best, conv_batchnorm_bound(conv, mod, hw, parts))
    return best


# Composed kernels are formed up to 16x16 taps and the size of a 64-channel 11x11 kernel: larger ones (a
# dilation after a stride: 75x75 in an ASPP on a strided backbone) cost too much and keep the product.
_COMPOSITE_TAPS = 256
_COMPOSITE_SIZE = 121 * 64 * 64


def _conv_unit(node, modules: dict):
    """The ``(kernel, (stride, dilation), convolution node)`` of a zero-padded convolution call.

    A Conv2d call, or a BatchNorm2d call merging with one (its scales folded into the float64 kernel);
    None for anything else.
    """
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return None
    mod, scale, conv_node = modules[node.target], None, node
    if type(mod) is nn.BatchNorm2d:
        conv_node = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if not isinstance(conv_node, fx.Node) or conv_node.op != "call_module":
            return None
        if not merges_with_batchnorm(modules[conv_node.target], mod):
            return None
        mod, scale = modules[conv_node.target], batchnorm_scale(mod)
    if type(mod) is not nn.Conv2d or mod.padding_mode != "zeros" or len(conv_node.args) != 1 or conv_node.kwargs:
        return None
    kernel = dense_weight(mod.weight, mod.groups)
    if scale is not None:
        kernel = kernel * scale.view(-1, 1, 1, 1)
    return kernel, (tuple(mod.stride), tuple(mod.dilation)), conv_node


def across_activation_bound(
    node: fx.Node, modules: dict, sized, bounds: dict, current: float, planes: dict
) -> float | None:
    """Bound of ``v = conv2(phi(conv1(g)))`` through the slope range of phi, or None.

    Each convolution may carry its eval BatchNorm (merged); phi is elementwise with difference quotients
    in ``[lo, hi]``, widened to hold 0 (the zeros outside conv1's output window). With F1, F2 the
    convolutions over the whole plane, ``c = (lo + hi) / 2`` and ``r = (hi - lo) / 2``:
    ``T(v) <= c ||F2 F1|| L(g) + r ||F2|| T(conv1)``, where ``F2 F1`` is one strided convolution
    (:func:`compose_kernels`) and ``T`` bounds the map from the image to a convolution's outputs over
    the whole plane (its window's values among them): ``||F1|| L(g)``, or this rule's value at conv1,
    kept in ``planes``. When conv1 reads a channel concatenation, both terms are also bounded part by
    part (``sum_i ||F1_i|| L_i`` and ``sum_i ||F2 F1_i|| L_i``), the smaller kept. Skipped (None) when it
    cannot beat ``current`` or without input sizes.
    """
    outer = _conv_unit(node, modules)
    act = outer[2].args[0] if outer is not None else None
    slopes = activation_slopes(act, modules) if isinstance(act, fx.Node) else None
    inner = _conv_unit(act.args[0], modules) if slopes is not None and len(act.args) >= 1 else None
    if inner is None or inner[0].shape[0] != outer[0].shape[1]:
        return None
    g, hw = inner[2].args[0], input_size(inner[2], sized)
    lip = bounds.get(g, 0.0) if isinstance(g, fx.Node) else 0.0
    if hw is None or lip == 0.0:
        return None
    lo, hi = min(slopes[0], 0.0), max(slopes[1], 0.0)
    centre, radius = (lo + hi) / 2, (hi - lo) / 2
    (k1, (s1, d1), _), (k2, (s2, d2), _) = inner, outer
    parts = _concat_parts(inner[2], sized, bounds) or []  # conv1 on a concatenation: also part by part
    plane = min(
        planes.get(act.args[0], math.inf),
        full_support_bound(k1, s1, d1, hw) * lip,
        sum(full_support_bound(k1[:, sl], s1, d1, hw) * part for sl, part in parts if part > 0) if parts else math.inf,
    )
    support = tuple((n + d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(hw, k1.shape[2:], s1, d1, strict=True))
    spread = radius * full_support_bound(k2, s2, d2, support, coarse=True) * plane
    extent = composed_extent(k1.shape, (s1, d1), k2.shape, (s2, d2))
    taps = extent[0] * extent[1]
    if spread >= current or taps > _COMPOSITE_TAPS or taps * k1.shape[1] * k2.shape[0] > _COMPOSITE_SIZE:
        return None

    def composed(kernel: torch.Tensor) -> float:
        composite, stride = compose_kernels(kernel, (s1, d1), k2, (s2, d2))
        return full_support_bound(composite, stride, (1, 1), hw, coarse=True)

    through = composed(k1) * lip
    if parts and centre != 0.0:
        through = min(through, sum(composed(k1[:, sl]) * part for sl, part in parts if part > 0))
    planes[node] = spread + centre * through
    return planes[node]
