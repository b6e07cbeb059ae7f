"""numpy references of the numba kernels, written from the math (no kernel internals), compared on answers."""

from __future__ import annotations

import numpy as np


def grouped_sorted_prefix(costs, group, n_groups, cap=np.inf):
    """numpy reference of :func:`lipcert.kernels.prefix.grouped_sorted_prefix`."""
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
    """numpy reference of :func:`lipcert.kernels.prefix.segment_value_at`."""
    out = np.empty(counts.shape, dtype=np.float64)
    for g in range(len(offsets) - 1):
        seg = values[offsets[g] : offsets[g + 1]]
        for j, k in enumerate(counts[g]):
            out[g, j] = 0.0 if k <= 0 else (np.inf if k > len(seg) else seg[k - 1])
    return out


def top2_margin(logits):
    """numpy reference of :func:`lipcert.kernels.margins.top2_margin`."""
    x = logits.astype(np.float64)
    pred = x.argmax(1)
    top = np.sort(x, axis=1)
    margin = top[:, -1] - top[:, -2]
    return pred.astype(np.int64), margin, bool(np.isfinite(x).all())


def iou_worst(tp_offsets, tp_prefix, fp_offsets, fp_prefix, tp0, union0, budgets):
    """numpy reference of :func:`lipcert.kernels.iou.iou_worst` (searchsorted for every a)."""
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


def unit_answers(logits, target, ignore_index, per_class, correct_only, lipschitz, budgets):
    """What the unit-value greedy must answer, from the math alone (one full sort per group).

    The candidates of group g (one group per image, or one per ground-truth class) are its valid pixels
    (correctly classified ones when ``correct_only``); each costs ``(margin / L)**2 / 2``. Under a budget
    the joint attacker flips the cheapest ones while their running sum fits; the per-pixel view counts
    those whose own cost fits.

    Returns:
        dict: radius (B, N), joint / single flips (B, G, E), clean (B, G) candidates, den (B, G) valid
        pixels, finite, labels_ok.
    """
    pred, margin, finite = top2_margin(logits)
    b_size, k, n = logits.shape
    g_size = k if per_class else 1
    in_range = (target >= 0) & (target < k)
    valid = (target != ignore_index) & in_range
    cand = valid & (pred == target) if correct_only else valid
    cost = pair_cost(margin, 1.0 / lipschitz)
    joint = np.zeros((b_size, g_size, len(budgets)), dtype=np.int64)
    single = np.zeros_like(joint)
    clean = np.zeros((b_size, g_size))
    den = np.zeros((b_size, g_size))
    for i in range(b_size):
        for g in range(g_size):
            member = (target[i] == g) if per_class else np.ones(n, dtype=bool)
            c = np.sort(cost[i][cand[i] & member])
            clean[i, g], den[i, g] = len(c), np.sum(valid[i] & member)
            joint[i, g] = np.searchsorted(np.cumsum(c), budgets, side="right")
            single[i, g] = np.searchsorted(c, budgets, side="right")
    labels_ok = bool(np.all((target == ignore_index) | in_range))
    return {
        "radius": margin / (np.sqrt(2.0) * lipschitz),
        "joint": joint,
        "single": single,
        "clean": clean,
        "den": den,
        "finite": finite,
        "labels_ok": labels_ok,
    }


def dantzig_bound(costs, values, budgets):
    """numpy reference of :func:`lipcert.kernels.knapsack.dantzig_bound`."""
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


def unit_certificate(logits, target, ignore_index, per_class, correct_only, lipschitz, eps, slack, complement):
    """What :func:`lipcert.kernels.greedy.unit_certificate` must answer, from :func:`unit_answers`."""
    budgets = eps * eps * (1.0 + slack)
    ans = unit_answers(logits, target, ignore_index, per_class, correct_only, lipschitz, budgets)
    clean_num, den = ans["clean"], ans["den"]
    worst_num = (clean_num[:, :, None] - ans["joint"]).transpose(0, 2, 1).astype(float)
    naive_num = (clean_num[:, :, None] - ans["single"]).transpose(0, 2, 1).astype(float)

    def value(num, d):
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(d > 0, num / np.where(d > 0, d, 1.0), np.nan)
        return 1.0 - v if complement else v

    worst, naive = value(worst_num, den[:, None, :]), value(naive_num, den[:, None, :])
    radius, finite, labels_ok = ans["radius"], ans["finite"], ans["labels_ok"]
    return radius, worst, naive, value(clean_num, den), worst_num, naive_num, clean_num, den, finite, labels_ok


def pair_cost(diff, inv):
    """numpy reference of :func:`lipcert.kernels.margins.pair_cost` (elementwise)."""
    r = diff * inv
    c = 0.5 * (r * r)
    return np.where((c == 0.0) & (diff > 0.0), 5e-324, c)


def iou_costs(logits, pred, margin, target, ignore_index, inv, budgets):
    """numpy reference of :func:`lipcert.kernels.iou_costs.iou_costs` (a (K, N) cost array per image, full sorts)."""
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
