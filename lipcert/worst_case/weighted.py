"""Weighted objectives: class-weighted pixel accuracy and per-pixel weights or region masks.

The attacker removes correct pixels of weight w_p at cost c_p = m_p**2 / (2 L**2) within eps**2: a 0/1
knapsack. Solved exactly with OR-Tools CP-SAT when small (costs scaled to integers and rounded *down*,
the capacity rounded down from the scaled budget: every truly affordable set stays affordable, so the
answer can only favour the attacker; values rounded *up* for the same reason), or bounded by the
fractional (Dantzig) relaxation, which is an upper bound on the attacker's damage and therefore a sound
certificate. The result says which one was used.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.certificate import Certificate, Status
from ..core.checks import check_eps, check_ignore_index, check_lipschitz, check_logits, check_positive, check_target
from ..core.errors import LipcertError
from ..kernels import dantzig_bound, pair_costs
from ..solvers.knapsack import knapsack_max
from .costs import top2
from .registry import build_certificate
from .unit import budgets_of

METHODS = ("auto", "exact", "dantzig")


def _damage(cc: np.ndarray, vv: np.ndarray, budget: float, exact: bool, time_limit: float):
    """(an upper bound on the weight the attacker flips, status code 0/1/2, solver name) for one budget."""
    frac = float(dantzig_bound(cc, vv, np.array([budget]))[0]) if len(cc) else 0.0
    if exact and len(cc) and budget > 0 and np.any(cc > 0):
        zero = cc == 0
        damage, st = knapsack_max(cc[~zero], vv[~zero], budget, time_limit)
        damage = min(damage + vv[zero].sum(), frac)
        return damage, {"exact": 0, "bound": 1, "time_limit": 2}[st], "CP-SAT knapsack"
    if exact:  # every affordable item costs 0, or none is left
        return (vv.sum() if budget > 0 or len(cc) else 0.0), 0, "CP-SAT knapsack"
    return frac, 1, "Dantzig fractional bound"


def _pixel_weights(weights, target_np, k):
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().double().numpy()
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LipcertError(f"Expected `weights` to be numbers (K or (B, H, W)), but got {weights!r}.") from exc
    if w.ndim == 1:
        if w.shape[0] != k:
            raise LipcertError(f"Expected {k} class weights, but got {w.shape[0]}.")
        return w[np.clip(target_np, 0, k - 1)]
    if w.shape != target_np.shape:
        raise LipcertError(f"Expected per-pixel weights of shape {target_np.shape}, but got {w.shape}.")
    return w


def certify_weighted(
    logits,
    target,
    eps,
    weights,
    *,
    lipschitz: float,
    ignore_index: int | None = 255,
    method: str = "auto",
    max_exact_items: int = 2000,
    time_limit: float = 10.0,
) -> Certificate:
    """Worst weighted pixel accuracy ``sum w correct / sum w`` per image over ``||delta||_2 <= eps``.

    Args:
        logits: (B, K, H, W) float logits.
        target: int (B, H, W) labels.
        eps: radius or radii (l2, [0,1] pixel units).
        weights: class weights (K,) (e.g. pedestrians 10x) or per-pixel weights (B, H, W) >= 0 (a 0/1 mask
            restricts the metric to a region).
        lipschitz: L (required).
        ignore_index: label excluded from every count, or None.
        method: ``"exact"`` (CP-SAT), ``"dantzig"`` (fractional bound, numba) or ``"auto"`` (exact when at
            most ``max_exact_items`` pixels are affordable, else Dantzig).
        max_exact_items: with ``method="auto"``, the most affordable pixels solved exactly.
        time_limit: seconds per CP-SAT solve; on time-out the proven CP-SAT bound (capped by Dantzig) is
            used and the status says ``"time_limit"``.

    Returns:
        :class:`Certificate` with ``worst`` (B, E); ``extras["status"]`` (B, E) codes 0 = exact, 1 = bound
        (Dantzig or rounded values), 2 = time limit; ``status`` is the weakest one; ``solver`` names the
        method(s) used.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]])
        >>> cert = certify_weighted(logits, torch.tensor([[[0, 0]]]), [2.0], torch.tensor([[[1.0, 3.0]]]),
        ...                         lipschitz=1.0, method="exact")
        >>> cert.worst.tolist()
        [[0.25]]
    """
    if method not in METHODS:
        raise LipcertError(f"Expected `method` in {METHODS}, but got {method!r}.")
    check_positive(time_limit, "time_limit")
    check_positive(max_exact_items, "max_exact_items", integer=True, allow_zero=True)
    ignore_index = check_ignore_index(ignore_index)
    L = check_lipschitz(lipschitz)
    e = check_eps(eps)
    t = check_logits(logits, finite=False)
    tgt = check_target(target, t, ignore_index).numpy()
    pred, margin = top2(t)
    b, k = t.shape[:2]
    w = _pixel_weights(weights, tgt, k)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise LipcertError("Expected finite, non-negative weights.")
    valid = tgt != ignore_index if ignore_index is not None else np.ones_like(tgt, dtype=bool)
    costs = pair_costs(margin, 1.0 / L)
    budgets = budgets_of(e)
    worst = np.full((b, len(e)), np.nan)
    status = np.zeros((b, len(e)), dtype=np.int64)
    used = set()
    for i in range(b):
        total = w[i][valid[i]].sum()
        if total <= 0:
            continue
        cand = valid[i] & (pred[i] == tgt[i]) & (w[i] > 0)
        c_i, v_i = costs[i][cand], w[i][cand]
        correct = v_i.sum()
        for j, budget in enumerate(budgets):
            keep = c_i <= budget
            cc, vv = np.ascontiguousarray(c_i[keep]), np.ascontiguousarray(v_i[keep])
            exact = method == "exact" or (method == "auto" and len(cc) <= max_exact_items)
            damage, status[i, j], name = _damage(cc, vv, budget, exact, time_limit)
            used.add(name)
            worst[i, j] = (correct - damage) / total
    names = {0: Status.EXACT, 1: Status.BOUND, 2: Status.TIME_LIMIT}
    return build_certificate(
        "weighted_pixel_accuracy",
        "none",
        eps=e,
        worst=worst,
        clean=np.array(
            [
                (w[i][valid[i] & (pred[i] == tgt[i])].sum() / w[i][valid[i]].sum())
                if w[i][valid[i]].sum() > 0
                else np.nan
                for i in range(b)
            ]
        ),
        naive=None,
        lipschitz=L,
        lipschitz_source="declared",
        higher_is_better=True,
        solver=" + ".join(sorted(used)) or "none",
        status=names[int(status.max())] if status.size else Status.EXACT,
        pixel_radius=margin / (np.sqrt(2.0) * L),
        extras={"status": status},
    )
