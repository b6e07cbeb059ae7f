"""The torchmetrics states of lipcert's accumulators, read back as numpy."""

from __future__ import annotations

import numpy as np
import torch


def cat_state_values(state) -> np.ndarray:
    """A ``"cat"`` state as one float64 array: a list of tensors before synchronisation, one tensor after.

    Args:
        state: the state attribute of a torchmetrics Metric registered with ``dist_reduce_fx="cat"``.

    Returns:
        float64 (n,) values in the order they were added (rank order after synchronisation).

    Examples:
        >>> cat_state_values([torch.tensor([1.0]), torch.tensor([2.0, 3.0])]).tolist()
        [1.0, 2.0, 3.0]
    """
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().numpy().astype(np.float64).reshape(-1)
    if not state:
        return np.zeros(0)
    return torch.cat([s.detach().cpu().reshape(-1) for s in state]).numpy().astype(np.float64)
