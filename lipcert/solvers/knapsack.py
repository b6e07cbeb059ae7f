"""0/1 knapsack with OR-Tools CP-SAT: exact, or a proven bound on time-out (never an attacker's guess)."""

from __future__ import annotations

import math

import numpy as np

from ..core.config import SOLVER_COST_RESOLUTION, SOLVER_VALUE_RESOLUTION
from ..core.errors import SolverError


def knapsack_max(costs: np.ndarray, values: np.ndarray, budget: float, time_limit: float) -> tuple[float, str]:
    """Largest total value of items whose costs fit the budget (0/1 knapsack), with CP-SAT.

    Costs are scaled to integers and rounded down, the capacity rounded down from the scaled budget: every
    truly affordable set stays affordable, so the answer is never below the true optimum. Non-integral
    values are scaled and rounded up for the same reason.

    Args:
        costs: float64 (n,) > 0.
        values: float64 (n,) > 0.
        budget: > 0.
        time_limit: seconds.

    Returns:
        ``(value, status)``: an upper bound on the optimum and ``"exact"`` (it is the optimum),
        ``"bound"`` (rounding may have helped the attacker) or ``"time_limit"`` (CP-SAT's proven bound).
    """
    from ortools.sat.python import cp_model

    scale = SOLVER_COST_RESOLUTION / budget
    # costs above the capacity are unaffordable whatever their size: clip before the integer cast
    c_int = np.floor(np.minimum(costs * scale, SOLVER_COST_RESOLUTION + 1.0)).astype(np.int64)
    cap = SOLVER_COST_RESOLUTION
    # "exact" needs the objective itself in exact integers: values that ARE integers (no tolerance)
    integral = bool(np.all(values == np.round(values))) and values.max() < 2**40
    v_scale = 1.0 if integral else SOLVER_VALUE_RESOLUTION / values.max()
    v_int = np.ceil(values * v_scale - 1e-12 * (not integral)).astype(np.int64)
    model = cp_model.CpModel()
    x = [model.NewBoolVar(f"x{i}") for i in range(len(costs))]
    model.Add(sum(int(c) * xi for c, xi in zip(c_int, x, strict=True)) <= cap)
    model.Maximize(sum(int(v) * xi for v, xi in zip(v_int, x, strict=True)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1
    status = solver.Solve(model)
    if status == cp_model.OPTIMAL:
        chosen = np.array([solver.Value(xi) for xi in x], dtype=bool)
        truly_feasible = costs[chosen].sum() <= budget
        exact = integral and truly_feasible
        return solver.ObjectiveValue() / v_scale, "exact" if exact else "bound"
    trivial = float(v_int.sum())  # every item taken: always an upper bound on the damage
    if status == cp_model.FEASIBLE:  # time limit with a solution: CP-SAT's proven objective bound
        bound = solver.BestObjectiveBound()
        bound = min(bound, trivial) if math.isfinite(bound) else trivial
        return bound / v_scale, "time_limit"
    if status == cp_model.UNKNOWN:  # time limit before any solution: CP-SAT reports no valid bound (0)
        return trivial / v_scale, "time_limit"
    raise SolverError(f"CP-SAT returned status {solver.StatusName(status)} on a knapsack with a feasible empty set.")
