"""Run a caller's model without changing its state: one context manager for the whole package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` and all its submodules in eval mode, and restore each one's own mode afterwards.

    Every submodule's flag is restored (not only the root's), so a model with, say, frozen BatchNorm
    layers in eval mode inside a training-mode network comes back exactly as it was, even on an error.

    Args:
        model: any torch module.

    Yields:
        The same module, in eval mode.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Dropout()).train()
        >>> _ = net[1].eval()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training, net[0].training, net[1].training
        (True, True, False)
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
