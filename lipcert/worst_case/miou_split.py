"""The budget-split bound on the worst mIoU of one image: the classes share the attacker's budget.

Under a perturbation of norm eps, every changed pixel (j -> k) lowers the IoU of at most two classes: j
(a true positive lost, if j was its ground truth) and k (a false positive added, if k is not). Charging
the pixel's actual cost to each class it hurts gives class budgets ``b_k <= eps**2`` with
``sum_k b_k <= 2 eps**2``, and class k's IoU is at least its worst IoU ``f_k(b_k)`` with budget b_k
(the exact per-class solver uses lower-bound costs). Hence (docs/math.md)

    worst mIoU >= min { mean_k f_k(b_k) : 0 <= b_k <= eps**2, sum_k b_k <= 2 eps**2 },

never below the mean of per-class worst cases (every ``b_k = eps**2``). Each ``f_k`` is a
non-increasing step function whose steps start at sums ``T_a + F_j`` of the sorted TP-removal and
FP-addition prefix sums, so an optimal split puts every ``b_k`` at a step start: the minimum is a
multiple-choice knapsack over those steps, solved by dynamic programming on ``CELLS`` cells of the
shared budget, once with every step cost rounded down to its cell (a lower bound on the minimum: every
true choice stays affordable; this is the certificate) and once rounded up (an upper bound: every choice
kept is truly affordable); when both agree the split minimum is exact, and the caller reports which. A
class with more than ``MAX_PAIRS`` choices has its steps taken on a grid in the attacker's favour (sound,
reported as not exact). Absent classes are handled exactly too (see :func:`split_miou`).
"""

from __future__ import annotations

import numpy as np

from ..kernels import iou_worst

MAX_PAIRS = 200_000  # (a, j) choices of one class in one image before its steps are taken on a grid
CELLS = 4096  # cells of the shared budget in the split dynamic programme


def class_steps(tp_prefix: np.ndarray, fp_prefix: np.ndarray, tp0: int, union0: int, budget: float):
    """The step function of one class's worst IoU on ``[0, budget]``.

    Args:
        tp_prefix: float64 running sums of the class's sorted TP-removal costs.
        fp_prefix: float64 running sums of its sorted FP-addition costs.
        tp0: clean true positives.
        union0: clean union (> 0: the class is in the ground truth).
        budget: the largest budget (eps**2 with slack).

    Returns:
        ``(t, v)`` float64 (S,): step starts ascending (``t[0] = 0``) and the worst IoU from each on (strictly
        decreasing), or None when there are more than ``MAX_PAIRS`` choices.

    Examples:
        >>> t, v = class_steps(np.array([1.0, 3.0]), np.array([0.5]), 2, 2, 2.0)
        >>> t.tolist(), [round(float(x), 4) for x in v]
        ([0.0, 0.5, 1.0, 1.5], [1.0, 0.6667, 0.5, 0.3333])
    """
    tp = np.concatenate([[0.0], tp_prefix[tp_prefix <= budget]])
    fp = np.concatenate([[0.0], fp_prefix[fp_prefix <= budget]])
    if tp.size * fp.size > MAX_PAIRS:
        return None
    cost = tp[:, None] + fp[None, :]
    value = (tp0 - np.arange(tp.size))[:, None] / (union0 + np.arange(fp.size))[None, :]
    keep = cost <= budget
    return _running_min_steps(cost[keep], value[keep])


def _running_min_steps(cost: np.ndarray, value: np.ndarray):
    """Points where the running minimum of ``value`` (by ascending cost) strictly drops."""
    order = np.lexsort((value, cost))
    cost, value = cost[order], value[order]
    run = np.minimum.accumulate(value)
    keep = np.ones(run.size, dtype=bool)
    keep[1:] = run[1:] < run[:-1]
    return cost[keep], run[keep]


def split_minimum(steps: list, total: float) -> tuple[float, float]:
    """Bounds on ``min sum_k v_k(j_k)`` over one step per class with ``sum_k t_k(j_k) <= total``.

    Args:
        steps: per class ``(t, v)`` from :func:`class_steps` (each with ``t[0] = 0``).
        total: the shared budget (2 eps**2 with slack).

    Returns:
        ``(lower, upper)``: lower <= the minimum <= upper (equal when the cell rounding changed nothing).

    Examples:
        >>> a = (np.array([0.0, 1.0]), np.array([1.0, 0.0]))
        >>> split_minimum([a, a, a], 2.0)  # two of the three classes can be broken
        (1.0, 1.0)
    """
    lower, upper = _split_tables(steps, total)
    return float(lower[CELLS]), float(upper[CELLS])


def _split_tables(steps: list, total: float):
    width = total / CELLS
    return _cell_dp(steps, width, np.floor), _cell_dp(steps, width, np.ceil)


def _cell_dp(steps: list, width: float, rounding) -> np.ndarray:
    """Least mean-of-classes value for every budget in cells (a knapsack DP).

    ``dp[c]`` = least sum of one value per class whose step costs, in cells (``rounding(t / width)``),
    add up to at most c; float64 (CELLS + 1,), non-increasing.
    """
    dp = np.zeros(CELLS + 1)
    for t, v in steps:
        cells = np.zeros(t.size, dtype=np.int64) if width <= 0 else rounding(t / width).astype(np.int64)
        new = np.full(CELLS + 1, np.inf)
        for c, value in zip(cells.tolist(), v.tolist(), strict=True):
            if c <= CELLS:
                np.minimum(new[c:], dp[: CELLS + 1 - c] + value, out=new[c:])
        dp = new
    return dp


def split_miou(problem, per_class_worst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image split bound on the worst mIoU at every budget of an IoU problem.

    Present classes (in the ground truth or predicted) share the budget ``2 eps**2`` (each at most
    ``eps**2``); a class absent from both becomes defined, with IoU 0, only when it gains a false
    positive, whose cost (at least its cheapest FP cost) is charged to it. So for m absent classes made
    defined (the m cheapest are the attacker's best choice) the present classes share ``2 eps**2`` minus
    those m costs, and the bound is the minimum over m of ``split minimum / (n_present + m)``.

    Args:
        problem: a ``build_iou_problem`` result (sorted costs of every (image, class)).
        per_class_worst: float64 (B, E, K) exact per-class worst IoU at the full budget (NaN: undefined).

    Returns:
        ``(bound, exact_split)``: float64 (B, E) (NaN where no class is defined) and bool (B, E), True
        where the split minimum is exact (not only a lower bound of it).
    """
    b_size = problem.n_images
    n_eps = problem.budgets.shape[0]
    bound = np.full((b_size, n_eps), np.nan)
    exact = np.ones((b_size, n_eps), dtype=bool)
    for i in range(b_size):
        for e in range(n_eps):
            if np.isnan(per_class_worst[i, e]).all():
                continue
            steps, absent, ok = _image_steps(problem, i, e, per_class_worst)
            bound[i, e], agree = _best_over_absent(steps, absent, float(problem.budgets[e]))
            exact[i, e] = ok and agree
    return bound, exact


def _image_steps(problem, i: int, e: int, per_class_worst: np.ndarray):
    """Step functions of the present classes, sorted cheapest-FP costs of the absent ones, and exactness."""
    k_size, budget = problem.n_classes, float(problem.budgets[e])
    defined = ~np.isnan(per_class_worst[i, e])
    groups = range(i * k_size, (i + 1) * k_size)
    present = [g for g in groups if problem.union0[g] > 0]
    absent = sorted(_cheapest_fp(problem, g) for g in groups if problem.union0[g] == 0 and defined[g % k_size])
    steps, exact = [], True
    for g in present:
        st = _steps_of(problem, g, budget)
        if st is None:
            exact = False
            st = _grid_steps(problem, g, budget)
        steps.append(st)
    return steps, absent, exact


def present_sum_lowers(problem, i: int, e: int, per_class_worst: np.ndarray) -> list[float]:
    """Lower bounds on the sum of the present classes' IoUs, by the number of absent classes made defined.

    The split argument of :func:`split_miou` for image i at budget e: with m absent classes made defined
    (each charged at least its cheapest false-positive cost, the m cheapest at best), the present classes
    (in the ground truth or predicted) share what is left of ``2 eps**2``, so the sum of their IoUs is at
    least the split minimum at that budget. Entry m of the result (m = 0 .. number of absent classes) is
    that bound, ``inf`` when the m cheapest absent classes alone cost more than ``2 eps**2``. Used as
    cuts by the exact joint solver.

    Args:
        problem: a ``build_iou_problem`` result.
        i: the image.
        e: the budget's index in ``problem.budgets``.
        per_class_worst: float64 (B, E, K) as in :func:`split_miou`.

    Returns:
        A list of floats, non-decreasing in m.
    """
    steps, absent, _ = _image_steps(problem, i, e, per_class_worst)
    total = 2.0 * float(problem.budgets[e])
    lower, _ = _split_tables(steps, total)
    return _by_absent(lower, absent, total)


def _best_over_absent(steps: list, absent_costs: list, budget: float) -> tuple[float, bool]:
    """Min over m of (split minimum with ``2 budget - sum of the m cheapest absent costs``) / (n + m)."""
    total = 2.0 * budget
    lower, upper = _split_tables(steps, total)
    lo = [v / (len(steps) + m) for m, v in enumerate(_by_absent(lower, absent_costs, total))]
    hi = [v / (len(steps) + m) for m, v in enumerate(_by_absent(upper, absent_costs, total))]
    return float(min(lo)), bool(min(hi) - min(lo) <= 1e-12)


def _by_absent(table: np.ndarray, absent_costs: list, total: float) -> list[float]:
    """``table`` at the budget left after the m cheapest absent costs, for every m (inf when negative)."""
    width = total / CELLS
    out, spent = [], 0.0
    for m in range(len(absent_costs) + 1):
        spent += absent_costs[m - 1] if m else 0.0
        left = total - spent
        if left < 0:
            out.append(float("inf"))
            continue
        out.append(float(table[CELLS if width <= 0 else min(CELLS, int(np.floor(left / width)))]))
    return out


def _cheapest_fp(problem, g: int) -> float:
    return float(problem.fp_prefix[problem.fp_offsets[g]])


def _grid_steps(problem, g: int, budget: float):
    """Steps of one class's worst IoU on a grid, in the attacker's favour.

    Steps of one class on a grid in the attacker's favour: from ``t_i = i budget / M`` on, the worst
    IoU at ``t_{i+1}`` (the exact two-list sweep), so no true budget is charged more than it costs.
    """
    grid = budget * np.arange(GRID_STEPS + 1) / GRID_STEPS
    tp_off = np.array([0, problem.tp_offsets[g + 1] - problem.tp_offsets[g]], dtype=np.int64)
    fp_off = np.array([0, problem.fp_offsets[g + 1] - problem.fp_offsets[g]], dtype=np.int64)
    tp = problem.tp_prefix[problem.tp_offsets[g] : problem.tp_offsets[g + 1]]
    fp = problem.fp_prefix[problem.fp_offsets[g] : problem.fp_offsets[g + 1]]
    worst, _, _ = iou_worst(tp_off, tp, fp_off, fp, problem.tp0[g : g + 1], problem.union0[g : g + 1], grid[1:])
    return _running_min_steps(grid[:-1], np.minimum.accumulate(worst[0]))


GRID_STEPS = 64


def _steps_of(problem, g: int, budget: float):
    tp = problem.tp_prefix[problem.tp_offsets[g] : problem.tp_offsets[g + 1]]
    fp = problem.fp_prefix[problem.fp_offsets[g] : problem.fp_offsets[g + 1]]
    return class_steps(tp, fp, int(problem.tp0[g]), int(problem.union0[g]), float(budget))
