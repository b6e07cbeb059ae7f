"""BatchCentering with the statistics of the global batch under DistributedDataParallel (like SyncBatchNorm).

deel-torchlip's BatchCentering centres each process's batch with that process's own mean (only its
running statistics are all-reduced), so a DDP run would train another function than one process on the
same global batch. Inside :func:`synchronized_centering` every centering layer in training mode subtracts
the mean over the whole global batch instead, computed with a differentiable all-reduce, and keeps its
running statistics exactly as one process would (one global batch mean per step).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from deel import torchlip
from torch import nn
from torch.distributed.nn.functional import all_reduce


def _global_centering(layer: torchlip.BatchCentering, original):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if not layer.training:
            return original(x)
        if layer._first:  # noqa: SLF001 - deel-torchlip's own first-batch reset, kept
            layer.reset_states()
            layer._first = False  # noqa: SLF001
        dims = (0, *range(2, x.dim()))
        count = torch.tensor([float(x.numel() // x.size(1))], dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = all_reduce(x.sum(dim=dims)) / count  # gradients flow back to every process's pixels
        with torch.no_grad():
            layer.running_sum_bmean += mean.detach()
            layer.running_num_batches += 1
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = x - mean.view(shape)
        return out if layer.bias is None else out + layer.bias.view(shape)

    return forward


@contextlib.contextmanager
def synchronized_centering(model: nn.Module):
    """Within the block, every BatchCentering of ``model`` centres with the global batch mean.

    Args:
        model: the model trained under DistributedDataParallel (a process group must be initialised).

    Yields:
        The model; the layers' own forward methods are restored on exit.
    """
    layers = [m for m in model.modules() if isinstance(m, torchlip.BatchCentering)]
    for layer in layers:
        layer.forward = _global_centering(layer, layer.forward)
    try:
        yield model
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again
