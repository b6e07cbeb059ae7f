"""Neighbourhoods of the traced graph bounded as one operator, where a product of layer bounds is loose.

A BatchNorm whose input is a convolution's output (one merged convolution) and a convolution whose input
is a channel concatenation (part by part). Each rule bounds the map from the image to that node's value,
whatever else reads the intermediate values (those keep their own bounds). Proofs: docs/models.md.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from .graph_facts import input_size
from .layer_bounds import conv_batchnorm_bound, merges_with_batchnorm


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
