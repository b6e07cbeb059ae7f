"""Exact worst-case IoU per image and class, its frontier, and the mIoU lower bound.

For class k in one image (valid pixels only): removing a true positive (GT k, predicted k) costs its
flip cost ``(z_k - max_{j != k} z_j)**2 / (2 L**2)``; adding a false positive on a pixel of another
ground-truth class that is not predicted k costs ``(z_pred - z_k)**2 / (2 L**2)``. After removing a and
adding b, ``IoU = (TP - a) / (G + FP + b)`` (a removed TP becomes a false negative: the union is
unchanged). The two lists are sorted; for every a the largest affordable b is taken (two pointers).
Exact for the relaxed attacker. The class is undefined (NaN) when its union stays 0: absent from ground
truth and prediction, and no false positive affordable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import iou_costs, iou_hulls, iou_worst


@dataclass(frozen=True)
class _IoUProblem:
    n_images: int
    n_classes: int
    tp_offsets: np.ndarray  # CSR over groups g = b * K + k
    tp_costs: np.ndarray
    tp_prefix: np.ndarray
    fp_offsets: np.ndarray
    fp_costs: np.ndarray
    fp_prefix: np.ndarray
    tp0: np.ndarray  # int64 (B*K,)
    union0: np.ndarray  # int64 (B*K,)
    tp_single: np.ndarray  # int64 (B*K, E) TP costs <= each budget on their own (the per-pixel view)
    fp_single: np.ndarray  # int64 (B*K, E) FP costs <= each budget on their own
    budgets: np.ndarray  # float64 (E,) the budgets the problem answers (its lists stop at their maximum)


def build_iou_problem(logits, pred, margin, target, lipschitz, ignore_index, budgets) -> _IoUProblem:
    """The sorted TP-removal and FP-addition costs of every (image, class).

    The cheapest TP-removal and FP-addition costs of every (image, class), for these budgets
    (:func:`lipcert.kernels.iou_costs`).

    Args:
        logits: float32/float64 (B, K, N) logits.
        pred: int64 (B, N) first argmax.
        margin: float64 (B, N) top1 - top2.
        target: int64 (B, N) labels in [0, K) or ``ignore_index`` (validated by the caller).
        lipschitz: L > 0.
        ignore_index: label of ignored pixels, or None.
        budgets: float64 (E,) squared radii (with slack) the problem must answer: the sorted lists stop
            where their running sum exceeds the largest one (no answer for these budgets changes).
    """
    b_size, k_size, _ = logits.shape
    ignore = -1 if ignore_index is None else int(ignore_index)
    inv = 1.0 / lipschitz
    budgets = np.ascontiguousarray(budgets, dtype=np.float64)
    arrays = (np.ascontiguousarray(a) for a in (logits, pred, margin, target))
    return _IoUProblem(b_size, k_size, *iou_costs(*arrays, ignore, inv, budgets), budgets)


def iou_per_image(problem: _IoUProblem):
    """Worst IoU (B, E, K), naive per-pixel IoU bound (B, E, K) and clean IoU (B, K) at the problem's budgets."""
    b, k = problem.n_images, problem.n_classes
    worst, _, _ = iou_worst(
        problem.tp_offsets,
        problem.tp_prefix,
        problem.fp_offsets,
        problem.fp_prefix,
        problem.tp0,
        problem.union0,
        problem.budgets,
    )
    # naive: every pixel whose own cost fits the budget may change (union of per-pixel certificates)
    a, bb = problem.tp_single, problem.fp_single
    den = problem.union0[:, None] + bb
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = np.where(den > 0, (problem.tp0[:, None] - a) / np.where(den > 0, den, 1), np.nan)
        clean = np.where(problem.union0 > 0, problem.tp0 / np.where(problem.union0 > 0, problem.union0, 1), np.nan)
    shape = lambda x: x.reshape(b, k, -1).transpose(0, 2, 1)  # noqa: E731
    return shape(worst), shape(naive), clean.reshape(b, k)


def mean_over_classes(values: np.ndarray) -> np.ndarray:
    """Nanmean over the last (class) axis; NaN where every class is undefined.

    As an mIoU certificate this is sound: each class keeps at least its own worst IoU under any single
    perturbation, classes with ground truth are always counted, and the only classes an attack can drop
    from the mean (ground-truth-absent classes, whose IoU is then 0) can only raise it.
    """
    count = np.sum(~np.isnan(values), axis=-1)
    total = np.nansum(values, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def iou_frontiers(problem: _IoUProblem):
    """Per (eps, class): flat numerators N, denominators D and image segment lengths of every image's hull.

    The upper hull of an image's frontier holds every point a ratio minimiser can use
    (:func:`lipcert.kernels.iou_hulls`, all images, classes and radii in one parallel call).

    Returns:
        dict ``(e, k) -> (N int64 (m,), D int64 (m,), lengths int64 (B,))``.
    """
    p, b_size, k_size, n_eps = problem, problem.n_images, problem.n_classes, len(problem.budgets)
    points, sizes = iou_hulls(p.tp_offsets, p.tp_prefix, p.fp_offsets, p.fp_prefix, p.budgets, b_size, k_size)
    sizes = sizes.reshape(n_eps, k_size, b_size)
    item_group = np.broadcast_to(np.arange(b_size) * k_size + np.arange(k_size)[:, None], sizes.shape)
    group = np.repeat(item_group.ravel(), sizes.ravel())  # the (image, class) of every hull row
    nums, dens = p.tp0[group] - points[:, 0], p.union0[group] + points[:, 1]
    bounds = np.concatenate([[0], np.cumsum(sizes.sum(2))]).reshape(-1)  # rows of each (e, k), in order
    out = {}
    for e in range(n_eps):
        for k in range(k_size):
            lo, hi = bounds[e * k_size + k], bounds[e * k_size + k + 1]
            out[(e, k)] = (nums[lo:hi], dens[lo:hi], sizes[e, k])
    return out


def _segment_argmin(score: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Index of the first minimum of ``score`` within each segment."""
    if score.dtype == object:  # exact Python integers
        vals = score.tolist()
        pairs = zip(starts.tolist(), lengths.tolist(), strict=True)
        return np.asarray([s + min(range(n), key=lambda j, s=s: vals[s + j]) for s, n in pairs], dtype=np.int64)
    seg_id = np.repeat(np.arange(len(lengths)), lengths)
    order = np.lexsort((np.arange(len(score)), score, seg_id))  # by segment, then score, then index
    return order[starts]


def dinkelbach_min_ratio(num: np.ndarray, den: np.ndarray, lengths: np.ndarray) -> tuple[float, np.ndarray]:
    """Exact ``min sum_i N_i / sum_i D_i`` choosing one point per segment (image), in integer arithmetic.

    Dinkelbach: with the current ratio P/Q, every image picks the point minimising ``Q N - P D``; the new
    ratio is strictly smaller until that minimum is 0, which proves optimality. Scores are int64 (exact)
    while ``max(P, Q) * max(N, D) < 2**62``, Python integers beyond.

    Returns:
        (ratio, choice): the optimum (NaN when every denominator is 0) and the chosen index per image.
    """
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    if len(num) == 0:
        return float("nan"), starts
    choice = _segment_argmin(-den, starts, lengths)  # each image's largest denominator
    p, q = int(num[choice].sum()), int(den[choice].sum())
    if q == 0:
        return float("nan"), choice
    big = int(max(num.max(initial=0), den.max(initial=0)))
    while True:
        if max(p, q) * max(big, 1) < 2**62:
            score = q * num - p * den
        else:
            score = np.asarray([q * int(n) - p * int(d) for n, d in zip(num, den, strict=True)], dtype=object)
        new = _segment_argmin(score, starts, lengths)
        if sum(score[new].tolist()) >= 0:  # the current ratio is optimal
            return p / q, choice
        choice = new
        p, q = int(num[choice].sum()), int(den[choice].sum())
