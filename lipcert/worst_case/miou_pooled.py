"""The budget-split bound on the worst pooled (micro) mIoU of a dataset: a Lagrangian over per-image budgets.

Pooled over a dataset, class k's IoU is ``(sum_i TP_ik - sum_i a_ik) / (sum_i U_ik + sum_i f_ik)`` after
the attacker removes ``a_ik`` true positives and adds ``f_ik`` false positives in image i, each image under
its own perturbation. As in the per-image split (:mod:`.miou_split`), the costs a perturbation of image i
pays add up to at most ``2 eps**2`` over the classes, and each class's share is at most ``eps**2`` (here
relaxed to: its removals and its additions each cost at most ``eps**2``). For prices ``lam_i >= 0`` on
the per-image constraints (weak duality, docs/math.md):

    sum_k IoU_k >= sum_k min_{a, f} [ IoU_k(a, f) + sum_i lam_i cost_ik(a, f) ] - 2 eps**2 sum_i lam_i,

and each class's minimum is solved exactly: for f additions (the f cheapest priced ones over all images)
the best removals are every item priced below ``1 / (U_k + f)``, so the minimum is
``min_f F(f) + sum_j min(1 / (U_k + f), w_j) + (unremovable TPs) / (U_k + f)``. Every price vector gives
a sound bound; the prices are searched (a scalar line search, then projected supergradient steps) and
the best bound found is kept. Float rounding is covered by a proven relative slack on every sum of
non-negative terms. Images are processed in an order fixed by their content, so the bound does not
depend on the order (or the number of processes) in which they were accumulated.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

UNIT_ROUNDOFF = 2.0**-53
TINY = 2.0**-1070  # absolute slack per term: covers subnormal rounding of a cost in budget units
SCALAR_GRID = np.concatenate([[0.0], np.geomspace(1e-6, 1e3, 37)])  # prices (budget units) of the line search
THETAS = (0.35, 0.5, 0.65, 0.8, 0.9)  # shares of a changed TP's cost charged to the class it leaves
GOLDEN_STEPS = 30  # golden-section steps of the line search between grid neighbours
SUBGRADIENT_STEPS = 150
WORK = 10**8  # cost visits per radius the price search may spend (see search_plan)


@dataclass(frozen=True)
class ClassLists:
    """One class's removable true positives and addable false positives, pooled over the images.

    Attributes:
        removal: float64 (n,) TP-removal costs in units of the budget (each cost / eps**2, at most about 1)
            whose running sum in their (image, class) fits the budget.
        removal_image: int64 (n,) their image.
        addition: float64 (m,) FP-addition costs that fit likewise.
        addition_image: int64 (m,) their image.
        tp: pooled clean true positives.
        union: pooled clean union (> 0).
        removal_order: int64 (n,) the removals by ascending cost (stable).
        addition_order: int64 (m,) the additions by ascending cost (stable).
    """

    removal: np.ndarray
    removal_image: np.ndarray
    addition: np.ndarray
    addition_image: np.ndarray
    tp: int
    union: int
    removal_order: np.ndarray = None
    addition_order: np.ndarray = None

    def __post_init__(self) -> None:  # noqa: D105 - the presorted orders, unless given
        for name in ("removal", "addition"):
            if getattr(self, f"{name}_order") is None:
                object.__setattr__(self, f"{name}_order", np.argsort(getattr(self, name), kind="stable"))


def _fitting(costs, prefix, lengths, budget, n_classes, rank):
    """(costs / budget, image rank, class) of the items whose running sum in their group fits the budget.

    Items come in canonical image order (``rank``: each image's position), each group's in cost order.
    """
    group = np.repeat(np.arange(lengths.size), lengths)
    keep = prefix <= budget
    image, cls = rank[group[keep] // n_classes], group[keep] % n_classes
    order = np.argsort(image, kind="stable")
    return costs[keep][order] / budget, image[order], cls[order]


def canonical_rank(tp_lists, fp_lists, n_classes: int) -> np.ndarray:
    """int64 (B,) each image's position when the images are sorted by a digest of their cost lists.

    Identical images get adjacent positions and are interchangeable, so every computation over the
    images in this order is independent of the order they arrived in.

    Args:
        tp_lists: ``(costs, prefix, lengths)`` as in :func:`class_lists`.
        fp_lists: the same for the FP-addition costs.
        n_classes: K.

    Returns:
        int64 (B,) positions.

    Examples:
        >>> a = (np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1, 1]))  # two images, one class
        >>> b = (np.array([2.0, 1.0]), np.array([2.0, 1.0]), np.array([1, 1]))  # the same, swapped
        >>> canonical_rank(a, a, 1).tolist() == canonical_rank(b, b, 1)[::-1].tolist()
        True
    """
    digests = []
    cuts = [np.concatenate([[0], np.cumsum(lists[2])]) for lists in (tp_lists, fp_lists)]
    n_images = np.asarray(tp_lists[2]).size // n_classes
    for i in range(n_images):
        h = hashlib.blake2b(digest_size=16)
        for lists, cut in zip((tp_lists, fp_lists), cuts, strict=True):
            lo, hi = cut[i * n_classes], cut[(i + 1) * n_classes]
            h.update(np.ascontiguousarray(lists[2][i * n_classes : (i + 1) * n_classes], dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(lists[0][lo:hi], dtype=np.float64).tobytes())
        digests.append(h.digest())
    order = sorted(range(n_images), key=digests.__getitem__)
    rank = np.empty(n_images, dtype=np.int64)
    rank[order] = np.arange(n_images)
    return rank


def class_lists(tp_lists, fp_lists, tp, union, n_classes: int, budget: float, rank) -> dict[int, ClassLists]:
    """The pooled lists of every class present in the dataset (pooled union > 0), at one budget.

    Args:
        tp_lists: ``(costs, prefix, lengths)``: the sorted TP-removal costs of every (image, class) group
            ``g = i * K + k`` one after another (float64), their running sums within each group, and the
            int64 (B*K,) group lengths.
        fp_lists: the same for the FP-addition costs.
        tp: int64 (K,) pooled clean true positives of every class.
        union: int64 (K,) pooled clean unions.
        n_classes: K.
        budget: eps**2 with slack (> 0).
        rank: int64 (B,) from :func:`canonical_rank`.

    Returns:
        ``class -> ClassLists`` for the present classes, costs in units of the budget.
    """
    rem, rem_img, rem_cls = _fitting(*tp_lists, budget, n_classes, rank)
    add, add_img, add_cls = _fitting(*fp_lists, budget, n_classes, rank)
    out = {}
    for k in np.flatnonzero(union > 0).tolist():
        r, a = rem_cls == k, add_cls == k
        out[k] = ClassLists(rem[r], rem_img[r], add[a], add_img[a], int(tp[k]), int(union[k]))
    return out


def class_minimum(lists: ClassLists, lam: np.ndarray, theta: float = 0.5) -> tuple[float, np.ndarray]:
    """A lower bound on ``min_{a, f} IoU(a, f) + sum_i lam_i cost_i(a, f)`` for one class, and its spend.

    ``cost_i`` charges each removal ``2 theta`` and each addition ``2 (1 - theta)`` times its cost.

    Args:
        lists: the class's pooled lists.
        lam: float64 (B,) non-negative prices.
        theta: the share in (0, 1) of a changed true positive's cost charged to its old class.

    Returns:
        ``(value, spend)``: the minimum minus a proven rounding slack, and float64 (B,) the charged cost
        each image pays at the minimiser (for the supergradient).

    Examples:
        >>> one = ClassLists(np.array([1.0]), np.array([0]), np.array([0.5]), np.array([0]), 1, 1)
        >>> value, spend = class_minimum(one, np.array([0.1]))  # removing the TP (cost 1, price 0.1) pays
        >>> round(value, 6), spend.tolist()
        (0.1, [1.0])
    """
    w = (2.0 * theta) * lam[lists.removal_image] * lists.removal
    f = (2.0 * (1.0 - theta)) * lam[lists.addition_image] * lists.addition
    uniform = bool(np.all(lam == lam[0])) if lam.size else True
    rem = _cheapest_first(w, w <= 1.0 / lists.union, lists.removal_order, uniform)
    add = _cheapest_first(f, f <= lists.tp / lists.union, lists.addition_order, uniform)  # above: no use
    w_sorted, f_sorted = w[rem], f[add]
    added = np.concatenate([[0.0], np.cumsum(f_sorted)])
    share = 1.0 / (lists.union + np.arange(added.size))  # what one more TP is worth after f additions
    removed = np.concatenate([[0.0], np.cumsum(w_sorted)])
    count = np.searchsorted(w_sorted, share, side="right")
    total = added + share * (lists.tp - count) + removed[count]
    best = int(np.argmin(total))
    spend = np.zeros(lam.size)
    np.add.at(spend, lists.addition_image[add[:best]], (2.0 * (1.0 - theta)) * lists.addition[add[:best]])
    rem = rem[: int(count[best])]
    np.add.at(spend, lists.removal_image[rem], (2.0 * theta) * lists.removal[rem])
    n = w_sorted.size + f_sorted.size
    slack = (n + 16) * 4.0 * UNIT_ROUNDOFF  # relative: every term is >= 0
    return float(total[best]) * (1.0 - slack) - (n + 4) * TINY, spend


def _cheapest_first(weights: np.ndarray, keep: np.ndarray, raw_order: np.ndarray, uniform: bool) -> np.ndarray:
    """Indices of the kept items by ascending weight (equal prices: the presorted order of the raw costs)."""
    if uniform:
        return raw_order[keep[raw_order]]
    idx = np.flatnonzero(keep)
    return idx[np.argsort(weights[idx], kind="stable")]


def dual_bound(per_class: dict[int, ClassLists], lam: np.ndarray, theta: float = 0.5) -> tuple[float, np.ndarray]:
    """The Lagrangian lower bound on the sum of the present classes' worst pooled IoUs, and a supergradient.

    Every image's budget is 1 (costs are in budget units) and a changed pixel's cost is shared between
    the class it leaves (``theta``) and the class it joins (``1 - theta``), so image i's constraint is
    ``sum_k 2 theta A_ik + 2 (1 - theta) F_ik <= 2`` (docs/math.md).

    Args:
        per_class: from :func:`class_lists`.
        lam: float64 (B,) prices >= 0 (IoU per budget).
        theta: the share in (0, 1) charged to the class a true positive leaves.

    Returns:
        ``(bound, supergradient)``: a sound lower bound and float64 (B,) its supergradient in lam.

    Examples:
        >>> one = ClassLists(np.array([1.0]), np.array([0]), np.array([]), np.array([], dtype=np.int64), 1, 1)
        >>> round(dual_bound({0: one, 1: one, 2: one}, np.array([1.0]))[0], 9)  # at most 2 of 3 broken
        1.0
    """
    total, spend = 0.0, np.zeros(lam.size)
    for lists in per_class.values():
        value, used = class_minimum(lists, lam, theta)
        total += value
        spend += used
    paid = 2.0 * math.fsum(lam.tolist()) * (1.0 + 4.0 * UNIT_ROUNDOFF)  # fsum: exactly rounded, any order
    return total - paid, spend - 2.0


def search_plan(n_items: int) -> tuple[tuple[float, ...], int, int]:
    """How much price search a radius gets: ``(thetas, golden steps, supergradient steps)``.

    Every evaluation of the dual visits every kept cost once; the search is sized so that a radius costs
    at most about ``WORK`` cost visits (deterministic, unlike a time limit, so every process computes the
    same bound), never less than one theta's line search. Less search gives a bound that is as sound and
    possibly lower (never below the mean of classes, which the caller keeps).

    Examples:
        >>> search_plan(1000)  # a small dataset: the full search
        ((0.35, 0.5, 0.65, 0.8, 0.9), 30, 150)
        >>> search_plan(10**8)  # a large one: one theta, a short line search
        ((0.65,), 10, 0)
    """
    evals = WORK // max(n_items, 1)
    line = SCALAR_GRID.size + 2 * GOLDEN_STEPS
    if evals >= len(THETAS) * line + SUBGRADIENT_STEPS:
        return THETAS, GOLDEN_STEPS, SUBGRADIENT_STEPS
    if evals >= 2 * line:
        return (0.65, 0.8), GOLDEN_STEPS, int(min(SUBGRADIENT_STEPS, evals - 2 * line))
    return (0.65,), 10, 0


def maximise_dual(per_class: dict[int, ClassLists], n_images: int) -> float:
    """The best Lagrangian bound found: equal prices for every theta, then supergradient steps at the best.

    Args:
        per_class: from :func:`class_lists`.
        n_images: B.

    Returns:
        A sound lower bound on the sum of the present classes' worst pooled IoUs (every price vector and
        theta tried gives one; the largest is returned). The search is sized by :func:`search_plan`.
    """
    n_items = sum(c.removal.size + c.addition.size for c in per_class.values())
    thetas, golden, steps = search_plan(n_items)
    best, scale, theta = max(_line_search(per_class, n_images, t, golden) + (t,) for t in thetas)
    scale = scale or float(SCALAR_GRID[1])
    lam = np.full(n_images, scale)
    for step in range(steps):
        value, grad = dual_bound(per_class, lam, theta)
        best = max(best, value)
        norm = float(np.abs(grad).max())
        if norm == 0.0:
            break
        lam = np.maximum(0.0, lam + 0.5 * scale / np.sqrt(step + 1.0) * grad / norm)
    return best


def _line_search(per_class, n_images: int, theta: float, golden: int) -> tuple[float, float]:
    """Best (value, price) of the dual along equal prices: the grid, then golden sections between neighbours."""
    values = [dual_bound(per_class, np.full(n_images, x), theta)[0] for x in SCALAR_GRID.tolist()]
    j = int(np.argmax(values))
    a, b = float(SCALAR_GRID[max(j - 1, 0)]), float(SCALAR_GRID[min(j + 1, SCALAR_GRID.size - 1)])
    best, arg = values[j], float(SCALAR_GRID[j])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0  # the dual is concave along the ray: golden section converges
    for _ in range(golden):
        x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
        v1, v2 = (dual_bound(per_class, np.full(n_images, x), theta)[0] for x in (x1, x2))
        for v, x in ((v1, x1), (v2, x2)):
            if v > best:
                best, arg = v, x
        a, b = (a, x2) if v1 >= v2 else (x1, b)
    return best, arg


def pooled_split_miou(tp_lists, fp_lists, tp, union, n_classes: int, budgets, mean_of_classes) -> np.ndarray:
    """The pooled mIoU bound at every budget: the Lagrangian split, never below the mean of classes.

    The mean is over the classes the attacker can make defined: those with a pooled union and those
    absent from the dataset that some affordable false positive reaches (their IoU is then 0).

    Args:
        tp_lists: ``(costs, prefix, lengths)`` as in :func:`class_lists`.
        fp_lists: the same for the FP-addition costs.
        tp: int64 (K,) pooled clean true positives.
        union: int64 (K,) pooled clean unions.
        n_classes: K.
        budgets: float64 (E,) eps**2 with slack.
        mean_of_classes: float64 (E,) the mean of the per-class worst pooled IoUs (each class with the
            whole budget; NaN where no class is defined).

    Returns:
        float64 (E,) the bound (NaN where no class is defined).

    Examples:
        >>> lists = (np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([1, 1]))
        >>> none = (np.zeros(0), np.zeros(0), np.array([0, 0]))
        >>> bound = pooled_split_miou(lists, none, np.array([1, 1]), np.array([1, 1]), 2, np.array([1.0]),
        ...                           np.array([0.0]))  # one image, two classes with one TP each
        >>> 0.0 <= float(bound[0]) <= 0.5  # one perturbation can break only one of the two classes
        True
    """
    n_images = int(np.asarray(tp_lists[2]).size // n_classes)
    out = np.array(mean_of_classes, dtype=np.float64, copy=True)
    rank = canonical_rank(tp_lists, fp_lists, n_classes)
    for e, budget in enumerate(np.asarray(budgets, dtype=np.float64).tolist()):
        if np.isnan(out[e]) or budget <= 0.0 or n_images == 0:
            continue
        per_class = class_lists(tp_lists, fp_lists, tp, union, n_classes, budget, rank)
        absent = _reachable_absent(fp_lists, union, n_classes, budget)
        out[e] = max(out[e], maximise_dual(per_class, n_images) / (len(per_class) + absent))
    return out


def _reachable_absent(fp_lists, union, n_classes: int, budget: float) -> int:
    """How many classes absent from the whole dataset an affordable false positive can make defined.

    A class is reachable when the cheapest FP cost of some (image, class) group fits: each group's first.
    """
    _, prefix, lengths = fp_lists
    starts = np.cumsum(lengths) - lengths
    nonempty = lengths > 0
    reachable = np.flatnonzero(nonempty)[prefix[starts[nonempty]] <= budget] % n_classes
    absent = np.asarray(union) == 0
    return int(np.sum(absent & np.isin(np.arange(n_classes), reachable)))
