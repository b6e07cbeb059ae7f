"""The exact operator norm of a model's Jacobian at a point, from the dense Jacobian (tiny inputs only)."""

from __future__ import annotations

import copy

import torch


def jacobian_norm(model, shape, at=None) -> float:
    """Largest singular value of d model(x) / dx at ``at`` (default 0), on a float64 copy of the model."""
    model = copy.deepcopy(model).double().eval()
    x = torch.zeros(1, *shape, dtype=torch.float64) if at is None else at.double()
    jac = torch.autograd.functional.jacobian(lambda v: model(v).flatten(), x).reshape(-1, x.numel())
    return float(torch.linalg.matrix_norm(jac, 2))
