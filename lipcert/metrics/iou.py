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

from ..kernels import grouped_sorted_prefix, iou_frontier, iou_worst, segment_count_leq


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


def _concat_csr(parts):
    offsets, costs, prefix, shift = [np.zeros(1, dtype=np.int64)], [], [], 0
    for off, val, pre in parts:
        offsets.append(off[1:] + shift)
        costs.append(val)
        prefix.append(pre)
        shift += len(val)
    return np.concatenate(offsets), np.concatenate(costs), np.concatenate(prefix)


def build_iou_problem(
    logits64: np.ndarray, pred, margin, target, lipschitz, ignore_index, cap: float = np.inf
) -> _IoUProblem:
    """Sorted TP-removal and FP-addition costs of every (image, class).

    Args:
        logits64: float64 (B, K, N) logits; pred int64 (B, N); margin float64 (B, N); target int64 (B, N).
        cap: the largest budget that will be asked: costs above it can never be spent and are not kept
            (no answer changes for budgets <= cap; only the counts tp0 / union0 use every pixel).
    """
    b_size, k_size, _ = logits64.shape
    scale = 1.0 / (2.0 * lipschitz * lipschitz)
    tp_parts, fp_parts, tp0, union0 = [], [], [], []
    classes = np.arange(k_size)[:, None]
    for i in range(b_size):
        valid = target[i] != ignore_index if ignore_index is not None else np.ones_like(target[i], dtype=bool)
        t, p = target[i], pred[i]
        tp_mask = valid & (t == p)
        tp_parts.append(
            grouped_sorted_prefix(
                np.ascontiguousarray(margin[i] ** 2 * scale), np.where(tp_mask, t, -1).astype(np.int64), k_size, cap
            )
        )
        z = logits64[i]
        top = np.take_along_axis(z, p[None, :], 0)
        fp_cost = (top - z) ** 2 * scale  # (K, N): cost of making each pixel predict k
        fp_mask = valid[None, :] & (t[None, :] != classes) & (p[None, :] != classes)
        group = np.where(fp_mask, classes, -1).astype(np.int64)
        fp_parts.append(grouped_sorted_prefix(np.ascontiguousarray(fp_cost.ravel()), group.ravel(), k_size, cap))
        gt = np.bincount(t[valid], minlength=k_size)
        tp = np.bincount(t[tp_mask], minlength=k_size)
        fp0 = np.bincount(p[valid & (t != p)], minlength=k_size)
        tp0.append(tp)
        union0.append(gt + fp0)
    tpo, tpc, tpp = _concat_csr(tp_parts)
    fpo, fpc, fpp = _concat_csr(fp_parts)
    return _IoUProblem(
        b_size,
        k_size,
        tpo,
        tpc,
        tpp,
        fpo,
        fpc,
        fpp,
        np.concatenate(tp0).astype(np.int64),
        np.concatenate(union0).astype(np.int64),
    )


def iou_per_image(problem: _IoUProblem, budgets: np.ndarray):
    """Worst IoU (B, E, K), naive per-pixel IoU bound (B, E, K) and clean IoU (B, K)."""
    b, k = problem.n_images, problem.n_classes
    worst, _, _ = iou_worst(
        problem.tp_offsets,
        problem.tp_prefix,
        problem.fp_offsets,
        problem.fp_prefix,
        problem.tp0,
        problem.union0,
        budgets,
    )
    # naive: every pixel whose own cost fits the budget may change (union of per-pixel certificates)
    a = segment_count_leq(problem.tp_offsets, problem.tp_costs, budgets)
    bb = segment_count_leq(problem.fp_offsets, problem.fp_costs, budgets)
    den = problem.union0[:, None] + bb
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = np.where(den > 0, (problem.tp0[:, None] - a) / np.where(den > 0, den, 1), np.nan)
        clean = np.where(problem.union0 > 0, problem.tp0 / np.where(problem.union0 > 0, problem.union0, 1), np.nan)
    shape = lambda x: x.reshape(b, k, -1).transpose(0, 2, 1)  # noqa: E731
    return shape(worst), shape(naive), clean.reshape(b, k)


def mean_over_classes(values: np.ndarray) -> np.ndarray:
    """nanmean over the last (class) axis; NaN where every class is undefined.

    As an mIoU certificate this is sound: each class keeps at least its own worst IoU under any single
    perturbation, classes with ground truth are always counted, and the only classes an attack can drop
    from the mean (ground-truth-absent classes, whose IoU is then 0) can only raise it.
    """
    count = np.sum(~np.isnan(values), axis=-1)
    total = np.nansum(values, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def upper_hull(points: np.ndarray) -> np.ndarray:
    """Points (a, b) (a increasing, b non-increasing) that maximise ``a + r b`` for some r >= 0."""
    hull: list[tuple[int, int]] = []
    for a, b in points.tolist():
        while hull and hull[-1][1] <= b:  # dominated: not more a, not less b
            hull.pop()
        while len(hull) >= 2:
            (a1, b1), (a2, b2) = hull[-2], hull[-1]
            if (a2 - a1) * (b - b1) - (b2 - b1) * (a - a1) >= 0:  # middle point not strictly above the chord
                hull.pop()
            else:
                break
        hull.append((a, b))
    return np.asarray(hull, dtype=np.int64).reshape(-1, 2)


def iou_frontiers(problem: _IoUProblem, budgets: np.ndarray):
    """Per (eps, class): flat numerators N, denominators D and image segment lengths of every image's hull.

    Returns:
        dict ``(e, k) -> (N int64 (m,), D int64 (m,), lengths int64 (B,))``.
    """
    out = {}
    b_size, k_size = problem.n_images, problem.n_classes
    for e, budget in enumerate(budgets):
        for k in range(k_size):
            nums, dens, lens = [], [], []
            for i in range(b_size):
                g = i * k_size + k
                tp = problem.tp_prefix[problem.tp_offsets[g] : problem.tp_offsets[g + 1]]
                fp = problem.fp_prefix[problem.fp_offsets[g] : problem.fp_offsets[g + 1]]
                hull = upper_hull(iou_frontier(tp, fp, budget))
                nums.append(problem.tp0[g] - hull[:, 0])
                dens.append(problem.union0[g] + hull[:, 1])
                lens.append(len(hull))
            out[(e, k)] = (np.concatenate(nums), np.concatenate(dens), np.asarray(lens, dtype=np.int64))
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
