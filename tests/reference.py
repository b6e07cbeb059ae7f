"""numpy twins of the numba kernels: same signatures, same numbers, used by the tests."""

from __future__ import annotations

import numpy as np

from lipcert.kernels.greedy import bin_of, bin_scale, n_bins
from lipcert.kernels.margins import PIXELS_PER_BLOCK


def grouped_sorted_prefix(costs, group, n_groups, cap=np.inf):
    """numpy twin of :func:`lipcert.kernels.prefix.grouped_sorted_prefix`."""
    keep = (group >= 0) & (costs <= cap)
    order = np.lexsort((costs[keep], group[keep]))
    values = costs[keep][order]
    groups = group[keep][order]
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(groups, minlength=n_groups))
    prefix = np.empty_like(values)
    for g in range(n_groups):
        lo, hi = offsets[g], offsets[g + 1]
        acc = 0.0
        for j in range(lo, hi):  # sequential float64 accumulation, cheapest first, as the kernel
            acc += values[j]
            prefix[j] = acc
    return offsets, values, prefix


def segment_count_leq(offsets, values, thresholds):
    """Count, per segment, the sorted values ``<= t`` for every threshold: int64 (G, E)."""
    out = np.zeros((len(offsets) - 1, len(thresholds)), dtype=np.int64)
    for g in range(len(offsets) - 1):
        out[g] = np.searchsorted(values[offsets[g] : offsets[g + 1]], thresholds, side="right")
    return out


def segment_value_at(offsets, values, counts):
    """numpy twin of :func:`lipcert.kernels.prefix.segment_value_at`."""
    out = np.empty(counts.shape, dtype=np.float64)
    for g in range(len(offsets) - 1):
        seg = values[offsets[g] : offsets[g + 1]]
        for j, k in enumerate(counts[g]):
            out[g, j] = 0.0 if k <= 0 else (np.inf if k > len(seg) else seg[k - 1])
    return out


def top2_margin(logits):
    """numpy twin of :func:`lipcert.kernels.margins.top2_margin`."""
    x = logits.astype(np.float64)
    pred = x.argmax(1)
    top = np.sort(x, axis=1)
    margin = top[:, -1] - top[:, -2]
    return pred.astype(np.int64), margin, bool(np.isfinite(x).all())


def iou_worst(tp_offsets, tp_prefix, fp_offsets, fp_prefix, tp0, union0, budgets):
    """numpy twin of :func:`lipcert.kernels.iou.iou_worst` (searchsorted for every a)."""
    n_groups, n_eps = len(tp0), len(budgets)
    worst = np.full((n_groups, n_eps), np.nan)
    best_a = np.zeros((n_groups, n_eps), dtype=np.int64)
    best_b = np.zeros((n_groups, n_eps), dtype=np.int64)
    for g in range(n_groups):
        tp = tp_prefix[tp_offsets[g] : tp_offsets[g + 1]]
        fp = fp_prefix[fp_offsets[g] : fp_offsets[g + 1]]
        for e, budget in enumerate(budgets):
            a = np.arange(np.searchsorted(tp, budget, side="right") + 1)
            spent = np.concatenate([[0.0], tp])[a]
            b = np.searchsorted(fp, budget - spent, side="right")
            den = union0[g] + b
            ok = den > 0
            if ok.any():
                vals = np.where(ok, (tp0[g] - a) / np.where(ok, den, 1), np.inf)
                j = int(np.argmin(vals))
                worst[g, e], best_a[g, e], best_b[g, e] = vals[j], a[j], b[j]
    return worst, best_a, best_b


def iou_frontier(tp_prefix, fp_prefix, budget):
    """Every (a, b(a)) choice of one (image, class) at one budget: int64 (A + 1, 2) rows (a, b)."""
    a = np.arange(np.searchsorted(tp_prefix, budget, side="right") + 1)
    spent = np.concatenate([[0.0], tp_prefix])[a]
    b = np.searchsorted(fp_prefix, budget - spent, side="right")
    return np.stack([a, b], 1).astype(np.int64)


def unit_candidates(logits, target, ignore_index, per_class, correct_only, lipschitz, cap):
    """numpy twin of :func:`lipcert.kernels.greedy.unit_candidates` (candidate slots only are defined)."""
    pred, margin, finite = top2_margin(logits)
    b_size, k, n = logits.shape
    g_size = k if per_class else 1
    in_range = (target >= 0) & (target < k)
    valid = (target != ignore_index) & in_range
    labels_ok = bool(np.all((target == ignore_index) | in_range))
    cand = valid & (pred == target) if correct_only else valid
    cls = np.where(valid, target, 0) if per_class else np.zeros_like(target)
    clean_num = np.stack([np.bincount(cls[i][cand[i]], minlength=g_size) for i in range(b_size)]).astype(float)
    den = np.stack([np.bincount(cls[i][valid[i]], minlength=g_size) for i in range(b_size)]).astype(float)
    cost = pair_cost(margin, 1.0 / lipschitz)
    keep = cand & (cost <= cap)
    nb = n_bins.py_func(n, g_size)
    n_blocks = -(-n // PIXELS_PER_BLOCK)
    costs = np.zeros(b_size * n)
    cell = np.full(b_size * n, -1, dtype=np.int32)
    count = np.zeros((b_size * n_blocks, g_size * nb), dtype=np.int32)
    total = np.zeros((b_size * n_blocks, g_size * nb))
    for b in range(b_size):
        for blk in range(n_blocks):
            lo, hi = blk * PIXELS_PER_BLOCK, min(n, (blk + 1) * PIXELS_PER_BLOCK)
            sel = lo + np.flatnonzero(keep[b, lo:hi])
            c = cost[b, sel]
            to_bin = bin_scale.py_func(cap, nb)
            bins = cls[b, sel] * nb + np.array([bin_of.py_func(x, to_bin, nb) for x in c], dtype=int)
            costs[b * n + lo : b * n + lo + len(sel)] = c
            cell[b * n + lo : b * n + lo + len(sel)] = bins
            np.add.at(count[b * n_blocks + blk], bins, 1)
            np.add.at(total[b * n_blocks + blk], bins, c)  # in pixel order, as the kernel
    return margin / (np.sqrt(2.0) * lipschitz), costs, cell, count, total, clean_num, den, finite, labels_ok


def dantzig_bound(costs, values, budgets):
    """numpy twin of :func:`lipcert.kernels.knapsack.dantzig_bound`."""
    with np.errstate(divide="ignore"):
        ratio = np.where(costs == 0, np.inf, values / np.where(costs == 0, 1.0, costs))
    order = np.argsort(-ratio, kind="mergesort")
    cum_c = np.concatenate([[0.0], np.cumsum(costs[order])])
    cum_v = np.concatenate([[0.0], np.cumsum(values[order])])
    out = []
    for b in budgets:
        k = np.searchsorted(cum_c, b, side="right") - 1
        best = cum_v[k]
        if k < len(costs):
            best += values[order[k]] * (b - cum_c[k]) / costs[order[k]]
        out.append(best)
    return np.asarray(out)


def grouped_flip_counts(costs, cell, count, total, n_images, groups_per_image, budgets, cap):
    """numpy twin of :func:`lipcert.kernels.greedy.grouped_flip_counts` (full sort + running sums)."""
    n = len(costs) // n_images
    image = np.repeat(np.arange(n_images), n)
    group = cell // (count.shape[1] // groups_per_image)
    flat = np.where(cell >= 0, image * groups_per_image + group, -1).astype(np.int64)
    offsets, values, prefix = grouped_sorted_prefix(costs, flat, n_images * groups_per_image, cap)
    shape = (n_images, groups_per_image, len(budgets))
    joint = segment_count_leq(offsets, prefix, budgets).reshape(shape)
    return joint, segment_count_leq(offsets, values, budgets).reshape(shape)


def unit_certificate(logits, target, ignore_index, per_class, correct_only, lipschitz, eps, slack, complement):
    """numpy twin of :func:`lipcert.kernels.greedy.unit_certificate` (the two passes, full sorts)."""
    budgets = eps * eps * (1.0 + slack)
    cap = float(budgets.max())
    radius, costs, cell, count, total, clean_num, den, finite, labels_ok = unit_candidates(
        logits, target, ignore_index, per_class, correct_only, lipschitz, cap
    )
    b, k = logits.shape[:2]
    joint, single = grouped_flip_counts(costs, cell, count, total, b, k if per_class else 1, budgets, cap)
    worst_num = (clean_num[:, :, None] - joint).transpose(0, 2, 1).astype(float)
    naive_num = (clean_num[:, :, None] - single).transpose(0, 2, 1).astype(float)

    def value(num, d):
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(d > 0, num / np.where(d > 0, d, 1.0), np.nan)
        return 1.0 - v if complement else v

    worst, naive = value(worst_num, den[:, None, :]), value(naive_num, den[:, None, :])
    return radius, worst, naive, value(clean_num, den), worst_num, naive_num, clean_num, den, finite, labels_ok


def pair_cost(diff, inv):
    """numpy twin of :func:`lipcert.kernels.margins.pair_cost` (elementwise)."""
    r = diff * inv
    c = 0.5 * (r * r)
    return np.where((c == 0.0) & (diff > 0.0), 5e-324, c)


def iou_costs(logits, pred, margin, target, ignore_index, inv, budgets):
    """numpy twin of :func:`lipcert.kernels.iou_costs.iou_costs` (a (K, N) cost array per image, full sorts)."""
    b_size, k_size, _ = logits.shape
    cap = float(np.max(budgets))
    tp_parts, fp_parts, tp0, union0 = [], [], [], []
    classes = np.arange(k_size)[:, None]
    for i in range(b_size):
        t, p = target[i], pred[i]
        valid = t != ignore_index
        tp_mask = valid & (t == p)
        tp_group = np.where(tp_mask, t, -1).astype(np.int64)
        tp_parts.append(grouped_sorted_prefix(pair_cost(margin[i], inv), tp_group, k_size, cap))
        z = logits[i].astype(np.float64)
        fp_cost = pair_cost(np.take_along_axis(z, p[None, :], 0) - z, inv)  # (K, N)
        fp_mask = valid[None, :] & (t[None, :] != classes) & (p[None, :] != classes)
        fp_group = np.where(fp_mask, classes, -1).astype(np.int64)
        fp_parts.append(grouped_sorted_prefix(fp_cost.ravel(), fp_group.ravel(), k_size, cap))
        tp0.append(np.bincount(t[tp_mask], minlength=k_size))
        union0.append(np.bincount(t[valid], minlength=k_size) + np.bincount(p[valid & (t != p)], minlength=k_size))
    out = []
    for parts in (tp_parts, fp_parts):
        offsets, costs, prefix, single = [0], [], [], []
        for off, val, pre in parts:
            for g in range(k_size):
                seg, seg_pre = val[off[g] : off[g + 1]], pre[off[g] : off[g + 1]]
                keep = seg_pre <= cap  # the cheapest costs whose running sum fits the largest budget
                costs.append(seg[keep])
                prefix.append(seg_pre[keep])
                offsets.append(offsets[-1] + int(keep.sum()))
                single.append(np.searchsorted(seg, budgets, side="right"))
        out.append((np.asarray(offsets, dtype=np.int64), np.concatenate(costs), np.concatenate(prefix), single))
    (tpo, tpc, tpp, tps), (fpo, fpc, fpp, fps) = out
    counts = (np.concatenate(tp0), np.concatenate(union0), np.stack(tps), np.stack(fps))
    return (tpo, tpc, tpp, fpo, fpc, fpp, *(c.astype(np.int64) for c in counts))


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


def iou_hulls(tp_offsets, tp_prefix, fp_offsets, fp_prefix, budgets, n_images, n_classes):
    """numpy twin of :func:`lipcert.kernels.iou.iou_hulls` (frontier, then a Python hull; compact layout)."""
    hulls = []
    for budget in budgets:
        for k in range(n_classes):
            for i in range(n_images):
                g = i * n_classes + k
                tp = tp_prefix[tp_offsets[g] : tp_offsets[g + 1]]
                fp = fp_prefix[fp_offsets[g] : fp_offsets[g + 1]]
                hulls.append(upper_hull(iou_frontier(tp, fp, budget)))
    sizes = np.asarray([len(h) for h in hulls], dtype=np.int64)
    return np.concatenate(hulls).reshape(-1, 2), sizes
