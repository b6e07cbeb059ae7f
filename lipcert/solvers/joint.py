"""Exact joint worst-case mIoU of one (small) image with OR-Tools CP-SAT.

Every pixel may be reassigned to any class k at its lower-bound cost ``(z_pred - z_k)**2 / (2 L**2)``;
the total must fit ``eps**2``. Costs are scaled to integers and rounded down (and the capacity rounded
down from the scaled budget), so every truly affordable reassignment stays affordable: the solver can
only favour the attacker. The objective ``mean over defined classes of I_k / U_k`` is handled exactly:

- classes present in the ground truth are always defined; an absent class is defined (with IoU 0) iff it
  gains a pixel, so the number of absent classes made defined, m, is enumerated and the mean is
  ``S / (n_present + m)``;
- each ratio ``I_k / U_k`` becomes an integer ``R_k = floor(S I_k / U_k)`` (``S = RATIO_SCALE``), stated
  exactly by the product constraint ``R_k U_k >= S I_k - U_k + 1`` (CP-SAT multiplies integer variables
  exactly); minimising ``sum R_k`` minimises ``S sum I_k / U_k`` rounded down per class, so the proven
  bound divided by S is a lower bound of the worst sum of IoUs, within ``n_classes / S`` of it. The status
  is ``"exact"`` when a truly affordable reassignment reaches the proven bound (within 1e-9), else
  ``"bound"``. (An earlier formulation linearised each ratio over the possible values of its union, one
  Boolean per value: its LP relaxation was weak and 16x16 images at eps 0.3 hit the time limit.)

On a time limit the answer is CP-SAT's proven objective bound (status ``"time_limit"``), never the
attacker's best solution. The answer is never below the sound mean-of-per-class bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.config import JOINT_EXACT_GAP, SOLVER_COST_RESOLUTION
from ..core.errors import SolverError
from ..kernels import pair_costs

RATIO_SCALE = 10**10  # S: each IoU as floor(S I / U); the mean is within 1 / S of exact (< 1e-9)


@dataclass(frozen=True)
class JointResult:
    """A joint-mIoU answer: the proven bound, its status, and the best attack value found."""

    value: float  # proven lower bound on the worst mIoU (exact when status == "exact")
    status: str  # "exact" | "bound" | "time_limit"
    attack_value: float  # mIoU of the best reassignment found (an upper bound on the worst case)


def joint_miou_min(
    z: np.ndarray,
    target: np.ndarray,
    valid: np.ndarray,
    budget: float,
    time_limit: float,
    inv: float = 1.0,
    attack_budget: float | None = None,
    sum_lower=None,
) -> JointResult:
    """Proven lower bound (exact when ``status == "exact"``) on the worst mIoU of one image.

    Args:
        z: float64 (K, N) logits.
        target: int (N,) labels (any value where not valid).
        valid: bool (N,) pixels that count.
        budget: eps**2 (already inflated for float safety).
        time_limit: seconds per solve.
        inv: ``1 / L``: reassigning pixel p to class k costs ``((z_pred - z_k) * inv)**2 / 2``.
        attack_budget: the budget a reassignment must truly fit to count as an attack (default: budget),
            e.g. eps**2 without the slack, so that the attack value is never below the true worst case.
        sum_lower: optional proven lower bounds on the sum of the ground-truth classes' IoUs of every
            truly affordable reassignment, indexed by the number m of other classes left defined (None
            entries: no bound); each becomes the cut ``objective >= S bound - n_present`` of the m-model
            (the objective rounds each IoU down by less than 1 / S). A cut removes no truly affordable
            reassignment, so the optimum stays a lower bound of the true worst case.
    """
    from ortools.sat.python import cp_model

    k, n = z.shape
    pred = z.argmax(0)
    cost = pair_costs(np.ascontiguousarray(z[pred, np.arange(n)][None, :] - z), inv)  # (K, N)
    attack_budget = budget if attack_budget is None else attack_budget
    c_int, cap = _integer_costs(cost, budget)
    allowed = (c_int <= cap) | (np.arange(k)[:, None] == pred[None, :])
    gt = np.bincount(target[valid], minlength=k)
    present = [c for c in range(k) if gt[c] > 0]
    absent = [c for c in range(k) if gt[c] == 0]
    ranges = {}
    for c in range(k):  # possible union sizes: G_c + (false positives it can hold)
        fp_max = int((allowed[c] & valid & (target != c)).sum())
        ranges[c] = (gt[c], gt[c] + fp_max)
    best_bound, best_attack, status = math.inf, math.inf, "exact"
    for m in range(len(absent) + 1):
        cut = sum_lower[m] if sum_lower is not None and m < len(sum_lower) else None
        model, x, big = _model_with_m_defined(m, allowed, c_int, cap, gt, valid, target, ranges, cut)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = time_limit
        solver.parameters.num_workers = 1
        st = solver.Solve(model)
        denom = len(present) + m
        if st == cp_model.INFEASIBLE:
            continue  # this many absent classes cannot be made defined
        if denom == 0:
            continue
        if st == cp_model.UNKNOWN:  # time limit before any solution: only the proven bound is known
            raw = solver.BestObjectiveBound()
            best_bound = min(best_bound, max(raw, 0.0) / big / denom if math.isfinite(raw) else 0.0)
            status = "time_limit"
            continue
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            raise SolverError(f"CP-SAT returned {solver.StatusName(st)} for the joint mIoU problem.")
        bound = solver.BestObjectiveBound() / big / denom
        assignment = np.array([next(c for c in range(k) if allowed[c, p] and solver.Value(x[c, p])) for p in range(n)])
        feasible = cost[assignment, np.arange(n)].sum() <= attack_budget  # with the float (unrounded) costs
        attack = _miou(assignment, target, valid, k) if feasible else math.inf
        if st != cp_model.OPTIMAL:
            status = "time_limit"
        best_bound, best_attack = min(best_bound, bound), min(best_attack, attack)
    if status != "time_limit":
        # exact when a truly affordable reassignment reaches the proven bound (up to 1e-9 in mIoU units:
        # coefficients may have been rounded down when the common multiple of the unions is too large)
        status = "exact" if best_attack - best_bound <= JOINT_EXACT_GAP else "bound"
    if math.isinf(best_bound):
        return JointResult(float("nan"), status, float("nan"))
    return JointResult(best_bound, status, best_attack if math.isfinite(best_attack) else float("nan"))


def _integer_costs(cost: np.ndarray, budget: float) -> tuple[np.ndarray, int]:
    """Costs in units of budget / SOLVER_COST_RESOLUTION rounded down, and the capacity (sound: see config)."""
    if budget <= 0:  # eps = 0: only exact ties are free
        return np.where(cost == 0, 0, 1).astype(np.int64), 0
    scale = SOLVER_COST_RESOLUTION / budget
    # costs above the capacity are unaffordable whatever their size: clip before the integer cast
    return np.floor(np.minimum(cost * scale, SOLVER_COST_RESOLUTION + 1.0)).astype(np.int64), SOLVER_COST_RESOLUTION


def _model_with_m_defined(m, allowed, c_int, cap, gt, valid, target, ranges, cut=None):
    """The CP-SAT model of the joint mIoU with exactly ``m`` absent classes made defined.

    Returns:
        (model, x, big): x[c, p] is "pixel p is labelled c"; the objective is the sum over the present
        classes of ``floor(big * IoU)`` (``big = RATIO_SCALE``): divided by big, a proven lower bound.
    """
    from ortools.sat.python import cp_model

    k, n = allowed.shape
    present = [c for c in range(k) if gt[c] > 0]
    absent = [c for c in range(k) if gt[c] == 0]
    model = cp_model.CpModel()
    x = {(c, p): model.NewBoolVar("") for p in range(n) for c in range(k) if allowed[c, p]}
    for p in range(n):
        model.AddExactlyOne([x[c, p] for c in range(k) if allowed[c, p]])
    model.Add(sum(int(c_int[c, p]) * v for (c, p), v in x.items() if c_int[c, p] > 0) <= cap)
    union = {
        c: gt[c] + sum(x[c, p] for p in range(n) if allowed[c, p] and valid[p] and target[p] != c) for c in range(k)
    }
    defined = []
    for c in absent:
        d = model.NewBoolVar("")
        model.Add(union[c] >= 1).OnlyEnforceIf(d)
        model.Add(union[c] == 0).OnlyEnforceIf(d.Not())
        defined.append(d)
    model.Add(sum(defined) == m)
    terms = []
    for c in present:
        inter = model.NewIntVar(0, int(gt[c]), "")
        model.Add(inter == sum(x[c, p] for p in range(n) if allowed[c, p] and valid[p] and target[p] == c))
        lo, hi = ranges[c]
        u = model.NewIntVar(int(lo), int(hi), "")
        model.Add(u == union[c])
        r = model.NewIntVar(0, RATIO_SCALE, "")  # floor(S * inter / union): union >= gt >= 1
        product = model.NewIntVar(0, RATIO_SCALE * int(hi), "")
        model.AddMultiplicationEquality(product, [r, u])
        model.Add(product >= RATIO_SCALE * inter - u + 1)
        terms.append(r)
    objective = sum(terms)
    if cut is not None and math.isfinite(cut):  # objective >= S * (sum of IoUs) - n_present
        model.Add(objective >= int(math.floor(RATIO_SCALE * cut * (1.0 - 1e-9))) - len(present))
    model.Minimize(objective)
    return model, x, RATIO_SCALE


def _miou(labels, target, valid, k) -> float:
    vals = []
    for c in range(k):
        inter = ((labels == c) & (target == c) & valid).sum()
        union = (((labels == c) | (target == c)) & valid).sum()
        if union:
            vals.append(inter / union)
    return float(np.mean(vals)) if vals else float("nan")
