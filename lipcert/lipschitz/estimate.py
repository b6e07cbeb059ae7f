"""Empirical lower bounds on a model's Lipschitz constant, for honesty checks of the upper bound."""

from __future__ import annotations

import torch
from torch import nn

from ..core.checks import check_images, check_positive
from .export import export_plain


def _jacobian_top_direction(model: nn.Module, x: torch.Tensor, n_iter: int, generator) -> torch.Tensor:
    """Power iteration on J^T J at x (autograd), returning a unit input direction."""
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    v = v / v.norm()
    for _ in range(n_iter):
        xi = x.detach().clone().requires_grad_(True)
        y = model(xi)
        u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, xi, u, create_graph=True)  # g = J^T u, linear in u
        (jv,) = torch.autograd.grad(g, u, v)  # J v
        (jtjv,) = torch.autograd.grad(y, xi, jv)  # J^T J v
        norm = jtjv.norm()
        if norm == 0:
            break
        v = jtjv / norm
    return v


def lipschitz_lower_bound(
    model: nn.Module,
    x: torch.Tensor,
    *,
    n_iter: int = 30,
    n_random: int = 8,
    step: float = 1e-3,
    generator: torch.Generator | None = None,
) -> float:
    """A realised lower bound on L: the largest ``||f(a) - f(b)||_2 / ||a - b||_2`` found.

    Candidates: for each image, the top direction of the Jacobian (power iteration on J^T J) and random
    directions, each evaluated as an actual finite-difference ratio with step ``step`` (so the returned
    number is a ratio the model really produced, not an estimate).

    Args:
        model: (B, C, H, W) images in [0,1] -> (B, K, H, W) logits; a frozen (export_plain) float64 copy is used.
        x: float (B, C, H, W) images around which to search.
        n_iter: power-iteration steps per image.
        n_random: random directions per image.
        step: l2 length of the finite difference (input units).
        generator: torch.Generator for reproducibility.

    Returns:
        The lower bound as a float.

    Raises:
        LipcertError: images that are not a finite float (B, C, H, W) tensor, or bad iteration settings.

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(2.0)
        >>> round(lipschitz_lower_bound(net, torch.rand(1, 1, 4, 4), n_iter=3, n_random=1), 4)
        2.0
    """
    x = check_images(x, allow_outside_unit=True)
    check_positive(n_iter, "n_iter", integer=True, allow_zero=True)
    check_positive(n_random, "n_random", integer=True, allow_zero=True)
    check_positive(step, "step")
    # a frozen float64 copy: parametrisations may update state in forward, and float32 rounding would
    # inflate the ratios
    model = export_plain(model).double()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    best = 0.0
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().to(torch.float64)
        dirs = [_jacobian_top_direction(model, xi, n_iter, gen)]
        dirs += [torch.randn(xi.shape, generator=gen, dtype=xi.dtype) for _ in range(n_random)]
        with torch.no_grad():
            base = model(xi)
            for d in dirs:
                d = d / d.norm() * step
                ratio = ((model(xi + d) - base).norm() / d.norm()).item()
                best = max(best, ratio)
    return best
