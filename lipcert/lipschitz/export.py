"""Export parametrised convolutions (orthogonium, deel-torchlip) to plain torch layers.

Orthogonal and spectral parametrisations recompute (and in eval mode, cache) their weights on every
access; some also update power-iteration state during a forward pass. For certification and fast
inference lipcert freezes the weights that run into plain ``nn.Conv2d`` / ``nn.ConvTranspose2d`` /
``nn.Linear`` layers, and computes the Lipschitz bound on that frozen copy.
"""

from __future__ import annotations

import copy

import torch
from deel import torchlip
from torch import nn

from ..core.errors import LipschitzBoundError
from ..core.model_state import eval_mode
from .layer_bounds import adds_behaviour


def _plain_conv(m: nn.Conv2d) -> nn.Conv2d:
    padding, mode = m.padding, m.padding_mode
    out = nn.Conv2d(
        m.in_channels, m.out_channels, m.kernel_size, m.stride, padding, m.dilation, m.groups, m.bias is not None, mode
    )
    return out


def _plain_conv_t(m: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.output_padding,
        m.groups,
        m.bias is not None,
        m.dilation,
        m.padding_mode,
    )


_PLAIN = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _needs_export(m: nn.Module) -> bool:
    """Convert a layer to its plain twin only when that computes the same function from the same weight.

    That holds for the plain torch layers (parametrised or not) and for subclasses that add no behaviour
    beyond how their weight is produced (orthogonium's AOC and deel-torchlip's spectral / Frobenius layers:
    constructors, weight properties, parametrisations), and for deel-torchlip's PadConv2d unless its
    padding is symmetric (then its forward pads itself). Any other subclass, e.g. one with its own
    ``forward``, is kept as it is, so the frozen copy still computes the caller's function (and
    :func:`lipcert.lipschitz_bound` refuses it as unknown).
    """
    if not isinstance(m, _PLAIN):
        return False
    if type(m) in _PLAIN:
        return torch.nn.utils.parametrize.is_parametrized(m)
    if isinstance(m, torchlip.PadConv2d):
        return m.old_padding_mode.lower() != "symmetric" and adds_behaviour(m, torchlip.PadConv2d) is None
    base = next(c for c in type(m).__mro__ if c in _PLAIN)
    return adds_behaviour(m, base) is None


def _detached_deepcopy(model: nn.Module) -> nn.Module:
    """Deepcopy that detaches tensors kept as plain attributes with autograd history.

    Parametrisations (e.g. power-iteration vectors) may store non-leaf tensors during a training forward;
    ``copy.deepcopy`` refuses those.
    """
    memo: dict = {}
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def export_plain(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every parametrised conv / linear layer frozen to a plain one.

    The weights copied are the eval-mode weights the model uses (refresh training-mode caches, e.g. with
    one training-mode forward pass after the last optimiser step, before exporting). Outputs match the
    parametrised model in eval mode up to float rounding.

    Args:
        model: any torch module.

    Returns:
        A new module (the input is not modified), in eval mode.

    Examples:
        >>> import torch
        >>> from orthogonium.layers.conv.AOC import AdaptiveOrthoConv2d
        >>> conv = AdaptiveOrthoConv2d(4, 4, 3, padding=1, padding_mode="zeros", bias=False).eval()
        >>> type(export_plain(conv)).__name__
        'Conv2d'
    """
    if not isinstance(model, nn.Module):
        raise LipschitzBoundError(f"Expected `model` to be a torch.nn.Module, but got {type(model).__name__}.")
    with eval_mode(model), torch.no_grad():
        weights = {
            name: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
            for name, m in model.named_modules()
            if _needs_export(m)
        }
        out = _detached_deepcopy(model)
    out.eval()
    for name, (w, b) in weights.items():
        m = out.get_submodule(name)
        if isinstance(m, nn.ConvTranspose2d):
            new = _plain_conv_t(m)
        elif isinstance(m, nn.Conv2d):
            new = _plain_conv(m)
        else:
            new = nn.Linear(m.in_features, m.out_features, m.bias is not None)
        with torch.no_grad():
            new.weight.copy_(w)
            if b is not None:
                new.bias.copy_(b)
        new.eval()
        if name == "":
            return new
        parent_name, _, attr = name.rpartition(".")
        setattr(out.get_submodule(parent_name) if parent_name else out, attr, new)
    return out
