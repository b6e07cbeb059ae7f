"""Empirical lower bounds on a model's Lipschitz constant, for honesty checks of the upper bound."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.checks import check_images, check_positive
from ..core.errors import LipcertError
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


def _pair_ascent(model: nn.Module, x: torch.Tensor, steps: int, box, generator) -> float:
    """Adam on ``||f(a) - f(b)|| / ||a - b||`` over both points, from ``a = x``, ``b = x + 0.1 noise``.

    Returns the largest ratio evaluated (each one computed by the model at the two points it names).
    For a piecewise-linear network the Jacobian is constant on each linear region, so its norm has no
    gradient in x; the ratio of a pair does, and moves both points to where the model stretches most.
    """
    a = x.clone()
    b = x + 0.1 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if box is not None:
        a, b = a.clamp(*box), b.clamp(*box)
    a.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=0.02)
    best = 0.0
    for _ in range(steps):
        gap = (a - b).norm()
        if not bool(gap > 0):
            break
        ratio = (model(a) - model(b)).norm() / gap
        if not bool(torch.isfinite(ratio)):
            break
        best = max(best, ratio.item())
        opt.zero_grad()
        (-ratio).backward()
        opt.step()
        if box is not None:
            with torch.no_grad():
                a.clamp_(*box)
                b.clamp_(*box)
    return best


def _check_box(box) -> tuple[float, float] | None:
    if box is None:
        return None
    ok = isinstance(box, (tuple, list)) and len(box) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    if not ok or not box[0] < box[1]:
        raise LipcertError(f"Expected `box` to be None or (low, high) finite numbers with low < high, but got {box!r}.")
    return float(box[0]), float(box[1])


def lipschitz_lower_bound(
    model: nn.Module,
    x: torch.Tensor,
    *,
    n_iter: int = 30,
    n_random: int = 8,
    step: float = 1e-3,
    ascent_steps: int = 50,
    box: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """A realised lower bound on L: the largest ``||f(a) - f(b)||_2 / ||a - b||_2`` found.

    Candidates: for each image, the top direction of the Jacobian (power iteration on J^T J) and random
    directions, each evaluated as an actual finite-difference ratio with step ``step``; then a pair
    search: gradient ascent (Adam) on the ratio over both points, starting at the image and a noisy copy
    of it. Every candidate is a ratio the model really produced at two inputs, not an estimate.

    The search is over the whole input space by default, which bounds the global constant that
    :func:`lipcert.lipschitz_bound` bounds; ``box=(0.0, 1.0)`` keeps both points of the pair search
    among images (a lower bound of the constant on the image domain).

    Args:
        model: (B, C, H, W) images in [0,1] -> (B, K, H, W) logits; a frozen (export_plain) float64 copy is used.
        x: float (B, C, H, W) images around which to search.
        n_iter: power-iteration steps per image.
        n_random: random directions per image.
        step: l2 length of the finite difference (input units).
        ascent_steps: steps of the pair search per image (0: none).
        box: ``(low, high)`` bounds for every pixel of the pair search, or None (anywhere).
        generator: torch.Generator for reproducibility.

    Returns:
        The lower bound as a float.

    Raises:
        LipcertError: images that are not a finite float (B, C, H, W) tensor, bad iteration settings, or
            a model that does not return one tensor.

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
    check_positive(ascent_steps, "ascent_steps", integer=True, allow_zero=True)
    box = _check_box(box)
    # a frozen float64 copy: parametrisations may update state in forward, and float32 rounding would
    # inflate the ratios
    model = export_plain(model).double()
    for p in model.parameters():
        p.requires_grad_(False)  # (the copy's): the pair search differentiates in the inputs only
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    best = 0.0
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().to(torch.float64)
        with torch.no_grad():
            base = model(xi)
        if not torch.is_tensor(base):
            raise LipcertError(
                f"The model returns a {type(base).__name__}, not one logit tensor (B, K, H, W): wrap it so that "
                "it returns the logits (e.g. `lambda x: model(x)['out']` in an nn.Module)."
            )
        dirs = [_jacobian_top_direction(model, xi, n_iter, gen)]
        dirs += [torch.randn(xi.shape, generator=gen, dtype=xi.dtype) for _ in range(n_random)]
        with torch.no_grad():
            for d in dirs:
                d = d / d.norm() * step
                ratio = ((model(xi + d) - base).norm() / d.norm()).item()
                best = max(best, ratio)
        if ascent_steps:
            best = max(best, _pair_ascent(model, xi, ascent_steps, box, gen))
    return best
