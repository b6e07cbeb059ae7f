"""The exact greedy of the unit-value certificates, in linear time and without a full sort.

Pass 1 (:func:`_scan_block`) computes margins, flip costs and per-pixel radii, counts the clean and
valid pixels, keeps the attacker's candidates that some budget can flip (cost <= cap, the largest
budget) in a compact list, and adds each of them to a histogram whose bins are equal-width in
``sqrt(cost)`` on [0, cap]. Pass 2 (:func:`_image_flip_counts`) answers every budget from the histogram:
whole bins are taken, cheapest first, while their running sum fits; only the items of the first bin
that does not fit (and of the bin holding the budget, for the per-pixel count) are gathered, sorted and
added one by one. The bin of a cost never decreases with the cost, so every item of an earlier bin costs
at most as much as every item of a later one: the answer is that of sorting every group and searching
its running sums (the numpy twins do exactly that).

:func:`unit_certificate` runs both passes in one parallel region, one image per job (small images);
:func:`unit_candidates` (blocks of pixels in parallel) then :func:`grouped_flip_counts` (images in
parallel) do the same for large images, and :func:`unit_candidates` with ``cap = inf`` feeds the Q2 radii.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS
from .margins import PIXELS_PER_BLOCK, TILE, pair_cost, top2_tile

_ITEMS_PER_BIN = 4  # bins per group = pixels per block / (4 G): a few items per bin


@njit(**NUMBA_FLAGS)
def n_bins(n_pixels, n_groups):
    """Histogram bins per group for images of ``n_pixels`` pixels and ``n_groups`` groups (>= 1)."""
    return max(1, min(n_pixels, PIXELS_PER_BLOCK) // (_ITEMS_PER_BIN * n_groups))


@njit(**NUMBA_FLAGS)
def bin_scale(cap, n_bin):
    """The factor of :func:`bin_of`: ``n_bin**2 / cap`` (0 when cap is 0 or inf: a single bin)."""
    scale = n_bin * n_bin / cap if 0.0 < cap < np.inf else 0.0
    return scale if scale < np.inf else 0.0


@njit(**NUMBA_FLAGS)
def bin_of(cost, scale, n_bin):
    """The histogram bin of a cost.

    Bin of a cost in [0, cap] among ``n_bin`` bins (``scale`` = :func:`bin_scale`), equal-width in
    ``sqrt(cost)``, i.e. in the margin, where pixels spread more evenly than in its square. Non-decreasing
    in the cost (every step is a monotone rounding). Any cost, even NaN or inf, maps into [0, n_bin).
    """
    v = cost * scale
    if v < n_bin * n_bin:  # False for NaN: no float reaches an index outside [0, n_bin)
        return min(n_bin - 1, int(np.sqrt(max(v, 0.0))))
    return n_bin - 1


@njit(**NUMBA_FLAGS)
def _scan_block(
    logits, target, ignore_index, per_class, correct_only, lipschitz, cap, b, start, hi, radius, costs, cell, count,
    total, den, clean,
):  # fmt: skip
    """Pass 1 over pixels ``start:hi`` of image b; returns ``(n_kept, finite, labels_ok)``.

    Writes ``radius[b, start:hi]``, the kept candidates' costs and cells to ``costs[:n_kept]`` /
    ``cell[:n_kept]`` (pixel order), adds them to the histograms ``count`` / ``total`` (G * nb,) and the
    valid / candidate pixels to ``den`` / ``clean`` (G,).
    """
    g_size = den.shape[0]
    nb = count.shape[0] // g_size
    to_bin = bin_scale(cap, nb)
    radius_den = np.sqrt(2.0) * lipschitz
    inv = 1.0 / lipschitz
    best = np.empty(TILE, dtype=logits.dtype)
    second = np.empty(TILE, dtype=logits.dtype)
    arg = np.empty(TILE, dtype=np.int32)
    check = np.empty(TILE, dtype=logits.dtype)
    margin = np.empty(TILE, dtype=np.float64)
    out = 0
    n_valid, n_clean = 0, 0  # G = 1: counted in registers (an array element would chain the stores)
    nonfinite, bad_label = False, False
    for lo in range(start, hi, TILE):
        n = min(TILE, hi - lo)
        top2_tile(logits, b, lo, n, best, second, arg, check)
        for i in range(n):  # branch-free: vectorises
            margin[i] = np.float64(best[i]) - np.float64(second[i])
            radius[b, lo + i] = margin[i] / radius_den
            nonfinite |= check[i] != 0
        for i in range(n):
            t = target[b, lo + i]
            if t == ignore_index:
                continue
            if t < 0 or t >= logits.shape[1]:
                bad_label = True
                continue
            g = t if per_class else 0
            if per_class:
                den[g] += 1
            else:
                n_valid += 1
            if correct_only and arg[i] != t:
                continue
            if per_class:
                clean[g] += 1
            else:
                n_clean += 1
            c = pair_cost(margin[i], inv)
            if c <= cap:
                j = g * nb + bin_of(c, to_bin, nb)
                costs[out] = c
                cell[out] = j
                out += 1
                count[j] += 1
                total[j] += c
    if not per_class:
        den[0] += n_valid
        clean[0] += n_clean
    return out, not nonfinite, not bad_label


@njit(parallel=True, **NUMBA_FLAGS)
def unit_candidates(logits, target, ignore_index, per_class, correct_only, lipschitz, cap):
    """Pass 1: pixel radii, flip costs, the candidates costing <= cap, their histograms, clean/valid counts.

    Args:
        logits: float32/float64 (B, K, N) C-contiguous.
        target: int64 (B, N) labels.
        ignore_index: label of ignored pixels.
        per_class: group candidates by ground-truth class (recall / fnr, G = K) instead of one group per
            image (G = 1).
        correct_only: candidates are the correctly classified pixels (else every valid pixel: stability).
        lipschitz: L > 0: a pixel's flip cost is ``margin**2 / (2 L**2)``, its radius ``margin / (sqrt(2) L)``.
        cap: the largest budget that will be asked (inf: keep every candidate; the histograms are then
            one bin per group and unused).

    Returns:
        ``(radius, costs, cell, count, total, clean_num, den, finite, labels_ok)``:
        radius float64 (B, N): margin top1 - top2 over ``sqrt(2) L``;
        costs float64 (B*N,) and cell int32 (B*N,): the candidates of the block of pixels ``lo:hi`` of
        image b come first in ``b*N + lo : b*N + hi`` (pixel order), each with its histogram cell
        ``g * nb + j`` (group g in [0, G), bin j = :func:`bin_of`, ``nb`` = :func:`n_bins`); the rest of
        that range has cell -1; count int32 and total float64 (B * blocks, G * nb): number and sum of the
        costs in each cell of each block;
        clean_num and den float64 (B, G) (candidates, including those above cap; valid pixels); two flags
        (finite logits; every label in [0, K) or ignored).
    """
    b_size, k_size, n_size = logits.shape
    g_size = k_size if per_class else 1
    nb = n_bins(n_size, g_size)
    n_blocks = (n_size + PIXELS_PER_BLOCK - 1) // PIXELS_PER_BLOCK
    radius = np.empty((b_size, n_size), dtype=np.float64)
    costs = np.empty(b_size * n_size, dtype=np.float64)
    cell = np.empty(b_size * n_size, dtype=np.int32)
    count = np.zeros((b_size * n_blocks, g_size * nb), dtype=np.int32)
    total = np.zeros((b_size * n_blocks, g_size * nb), dtype=np.float64)
    part_clean = np.zeros((b_size * n_blocks, g_size), dtype=np.int64)
    part_den = np.zeros((b_size * n_blocks, g_size), dtype=np.int64)
    finite = np.ones(b_size * n_blocks, dtype=np.bool_)
    labels_ok = np.ones(b_size * n_blocks, dtype=np.bool_)
    for job in prange(b_size * n_blocks):
        b = job // n_blocks
        start = (job % n_blocks) * PIXELS_PER_BLOCK
        hi = min(n_size, start + PIXELS_PER_BLOCK)
        lo = b * n_size + start
        kept, finite[job], labels_ok[job] = _scan_block(
            logits, target, ignore_index, per_class, correct_only, lipschitz, cap, b, start, hi, radius,
            costs[lo:], cell[lo:], count[job], total[job], part_den[job], part_clean[job],
        )  # fmt: skip
        cell[lo + kept : b * n_size + hi] = -1
    clean_num = np.zeros((b_size, g_size), dtype=np.float64)
    den = np.zeros((b_size, g_size), dtype=np.float64)
    for job in range(b_size * n_blocks):
        for g in range(g_size):
            clean_num[job // n_blocks, g] += part_clean[job, g]
            den[job // n_blocks, g] += part_den[job, g]
    return radius, costs, cell, count, total, clean_num, den, finite.all(), labels_ok.all()


@njit(parallel=True, **NUMBA_FLAGS)
def unit_certificate(logits, target, ignore_index, per_class, correct_only, lipschitz, eps, slack, complement):
    """Both passes and the metric values in one parallel region, one image per job.

    The same counts as :func:`unit_candidates` with ``cap`` = the largest budget followed by
    :func:`grouped_flip_counts`, without writing the candidates out (they stay in the job's cache). Meant
    for images of at most 4096 pixels (one block), where images are the unit of parallel work; correct
    for any size.

    Args:
        logits: as in :func:`unit_candidates`.
        target: as in :func:`unit_candidates`.
        ignore_index: as in :func:`unit_candidates`.
        per_class: as in :func:`unit_candidates`.
        correct_only: as in :func:`unit_candidates`.
        lipschitz: as in :func:`unit_candidates`.
        eps: float64 (E,) radii >= 0 (l2, [0,1] pixel units); the budgets are ``eps**2 * (1 + slack)``.
        slack: relative slack of every budget comparison (``lipcert.core.config.COST_REL_SLACK``).
        complement: report ``1 - num / den`` (fnr) instead of ``num / den``.

    Returns:
        ``(radius, worst, naive, clean, worst_num, naive_num, clean_num, den, finite, labels_ok)``:
        radius float64 (B, N); values worst and naive float64 (B, E, G), clean (B, G) (NaN where den is
        0); candidates left unflipped by the joint (exact greedy) and the per-pixel attacker,
        float64 (B, E, G); clean candidates and valid pixels float64 (B, G); two flags.
    """
    b_size, k_size, n_size = logits.shape
    g_size = k_size if per_class else 1
    nb = n_bins(n_size, g_size)
    n_eps = eps.shape[0]
    budgets = np.empty(n_eps, dtype=np.float64)
    cap = 0.0
    for e in range(n_eps):
        budgets[e] = eps[e] * eps[e] * (1.0 + slack)
        cap = max(cap, budgets[e])
    order = np.argsort(budgets)
    radius = np.empty((b_size, n_size), dtype=np.float64)
    worst = np.empty((b_size, n_eps, g_size), dtype=np.float64)
    naive = np.empty((b_size, n_eps, g_size), dtype=np.float64)
    clean = np.empty((b_size, g_size), dtype=np.float64)
    worst_num = np.empty((b_size, n_eps, g_size), dtype=np.float64)
    naive_num = np.empty((b_size, n_eps, g_size), dtype=np.float64)
    clean_num = np.zeros((b_size, g_size), dtype=np.float64)
    den = np.zeros((b_size, g_size), dtype=np.float64)
    finite = np.ones(b_size, dtype=np.bool_)
    labels_ok = np.ones(b_size, dtype=np.bool_)
    for b in prange(b_size):
        costs = np.empty(n_size, dtype=np.float64)
        cell = np.empty(n_size, dtype=np.int32)
        count = np.zeros((1, g_size * nb), dtype=np.int32)
        total = np.zeros((1, g_size * nb), dtype=np.float64)
        joint = np.zeros((g_size, n_eps), dtype=np.int64)
        single = np.zeros((g_size, n_eps), dtype=np.int64)
        kept, finite[b], labels_ok[b] = _scan_block(
            logits, target, ignore_index, per_class, correct_only, lipschitz, cap, b, 0, n_size, radius,
            costs, cell, count[0], total[0], den[b], clean_num[b],
        )  # fmt: skip
        _image_flip_counts(costs[:kept], cell[:kept], count, total, budgets, order, cap, joint, single)
        for g in range(g_size):
            clean[b, g] = _value(clean_num[b, g], den[b, g], complement)
            for e in range(n_eps):
                worst_num[b, e, g] = clean_num[b, g] - joint[g, e]
                naive_num[b, e, g] = clean_num[b, g] - single[g, e]
                worst[b, e, g] = _value(worst_num[b, e, g], den[b, g], complement)
                naive[b, e, g] = _value(naive_num[b, e, g], den[b, g], complement)
    return radius, worst, naive, clean, worst_num, naive_num, clean_num, den, finite.all(), labels_ok.all()


@njit(**NUMBA_FLAGS)
def _value(num, den, complement):
    """Num / den (1 - num / den if complement), NaN where den is 0."""
    if den <= 0:
        return np.nan
    return 1.0 - num / den if complement else num / den


@njit(**NUMBA_FLAGS)
def _walk_group(g, cnt, tot, budgets, order, to_bin, nb, joint, plan, spent_before):
    """For group g and every budget: the first bin that does not fit whole, and the bin holding the budget.

    Writes int64 ``plan[:, g, e]``: ``plan[0]`` the first bin that does not fit whole (-1: all fit, then
    ``joint[g, e]`` is written), ``plan[1]`` the count before it, ``plan[2]`` the bin holding the budget,
    ``plan[3]`` the count before that; and float64 ``spent_before[g, e]``, the cost sum before the first.
    """
    b, taken, spent = 0, 0, 0.0  # whole bins [0, b) fit, cheapest first (budgets ascending)
    c, before = 0, 0  # bins [0, c) hold `before` items
    for e in order:
        while b < nb and spent + tot[g * nb + b] <= budgets[e]:
            spent += tot[g * nb + b]
            taken += cnt[g * nb + b]
            b += 1
        if b < nb:
            plan[0, g, e], plan[1, g, e], spent_before[g, e] = g * nb + b, taken, spent
        else:
            plan[0, g, e] = -1
            joint[g, e] = taken
        stop = bin_of(budgets[e], to_bin, nb)
        while c < stop:
            before += cnt[g * nb + c]
            c += 1
        plan[2, g, e], plan[3, g, e] = g * nb + stop, before


@njit(**NUMBA_FLAGS)
def _walk_groups(cnt, tot, budgets, order, to_bin, nb, joint):
    """:func:`_walk_group` for every group: ``(plan, spent_before)``."""
    n_groups, n_eps = joint.shape
    plan = np.zeros((4, n_groups, n_eps), dtype=np.int64)
    spent_before = np.zeros((n_groups, n_eps), dtype=np.float64)
    for g in range(n_groups):
        _walk_group(g, cnt, tot, budgets, order, to_bin, nb, joint, plan, spent_before)
    return plan, spent_before


@njit(**NUMBA_FLAGS)
def _slots(plan, cnt, n_cells):
    """The bins whose items are gathered, each a slot.

    Returns ``(slot of each cell (-1: none), cell of each slot, whether the joint greedy walks it (its
    items are then sorted), slot starts in the items array)``.
    """
    n_groups, n_eps = plan.shape[1], plan.shape[2]
    slot = np.full(n_cells, -1, dtype=np.int32)
    needed = np.empty(2 * n_groups * n_eps, dtype=np.int64)
    walked = np.zeros(2 * n_groups * n_eps, dtype=np.bool_)
    n_slots = 0
    for g in range(n_groups):
        for e in range(n_eps):
            for b in (plan[0, g, e], plan[2, g, e]):
                if b >= 0 and slot[b] < 0:
                    slot[b] = n_slots
                    needed[n_slots] = b
                    n_slots += 1
            if plan[0, g, e] >= 0:
                walked[slot[plan[0, g, e]]] = True
    start = np.zeros(n_slots + 1, dtype=np.int64)
    for k in range(n_slots):
        start[k + 1] = start[k] + cnt[needed[k]]
    return slot, needed[:n_slots], walked[:n_slots], start


@njit(**NUMBA_FLAGS)
def _scatter(costs, cell, slot, items, fill, lo, hi):
    """Copy the entries ``lo:hi`` whose cell has a slot to ``items`` at the running positions ``fill``."""
    for i in range(lo, hi):
        if cell[i] >= 0:
            k = slot[cell[i]]
            if k >= 0:
                items[fill[k]] = costs[i]
                fill[k] += 1


@njit(**NUMBA_FLAGS)
def _count_group(g, items, start, slot, plan, spent_before, budgets, joint, single):
    """``joint[g]`` (the walked bin's sorted items, cheapest first) and ``single[g]`` (items that fit alone)."""
    for e in range(joint.shape[1]):
        budget = budgets[e]
        b = plan[0, g, e]
        if b >= 0:
            k, acc = plan[1, g, e], spent_before[g, e]
            for v in items[start[slot[b]] : start[slot[b] + 1]]:
                acc += v
                if acc > budget:
                    break
                k += 1
            joint[g, e] = k
        k = plan[3, g, e]
        b = plan[2, g, e]
        for v in items[start[slot[b]] : start[slot[b] + 1]]:  # sorted or not: count those that fit
            if v <= budget:
                k += 1
        single[g, e] = k


@njit(**NUMBA_FLAGS)
def _image_flip_counts(costs, cell, count, total, budgets, order, cap, joint, single):
    """Pass 2 for one image, serially: ``joint[g, e]`` and ``single[g, e]`` from its blocks' histograms.

    ``costs`` / ``cell`` are the image's entries, ``count`` / ``total`` its blocks' histograms
    (blocks, G * nb), ``order`` sorts the budgets ascending (all <= cap). Per (group, budget) the first
    bin that does not fit whole and the bin holding the budget are found from the merged histogram; the
    items of those bins are gathered bin by bin; only the bins the joint greedy walks are sorted (few: its
    cumulative sums pass the cheap bins quickly), the budget bins' items are counted unsorted.
    """
    n_groups, n_eps = joint.shape
    nb = count.shape[1] // n_groups
    to_bin = bin_scale(cap, nb)
    cnt = count[0].astype(np.int64)
    tot = total[0].copy()
    for blk in range(1, count.shape[0]):  # bins are aligned across blocks: merge them
        for j in range(n_groups * nb):
            cnt[j] += count[blk, j]
            tot[j] += total[blk, j]
    plan, spent_before = _walk_groups(cnt, tot, budgets, order, to_bin, nb, joint)
    slot, needed, walked, start = _slots(plan, cnt, n_groups * nb)
    items = np.empty(start[-1], dtype=np.float64)
    _scatter(costs, cell, slot, items, start[:-1].copy(), 0, costs.shape[0])
    for k in range(needed.shape[0]):
        if walked[k]:
            items[start[k] : start[k + 1]] = np.sort(items[start[k] : start[k + 1]])
    for g in range(n_groups):
        _count_group(g, items, start, slot, plan, spent_before, budgets, joint, single)


@njit(parallel=True, **NUMBA_FLAGS)
def _image_flip_counts_parallel(costs, cell, count, total, budgets, order, cap, joint, single):
    """:func:`_image_flip_counts` with its work split over threads (for one large image at a time).

    The histograms merge cell by cell and the groups count in parallel, the blocks of pixels are
    scattered in contiguous chunks (each chunk's items of a bin go after the earlier chunks' ones, so the
    gathered items are in the same order as the serial pass), and the walked bins sort in parallel.
    """
    n_groups, n_eps = joint.shape
    n_blocks, n_cells = count.shape
    nb = n_cells // n_groups
    to_bin = bin_scale(cap, nb)
    cnt = np.zeros(n_cells, dtype=np.int64)
    tot = np.zeros(n_cells, dtype=np.float64)
    for j in prange(n_cells):
        for blk in range(n_blocks):
            cnt[j] += count[blk, j]
            tot[j] += total[blk, j]
    plan, spent_before = _walk_groups(cnt, tot, budgets, order, to_bin, nb, joint)  # cheap: serial
    slot, needed, walked, start = _slots(plan, cnt, n_cells)
    n_slots = needed.shape[0]
    n_chunks = min(n_blocks, _CHUNKS)
    bounds = np.empty(n_chunks + 1, dtype=np.int64)  # chunk c: blocks [bounds[c], bounds[c+1])
    for c in range(n_chunks + 1):
        bounds[c] = c * n_blocks // n_chunks
    fill = np.empty((n_chunks, n_slots), dtype=np.int64)
    for k in prange(n_slots):
        at = start[k]
        for c in range(n_chunks):
            fill[c, k] = at
            for blk in range(bounds[c], bounds[c + 1]):
                at += count[blk, needed[k]]
    items = np.empty(start[-1], dtype=np.float64)
    n_size = costs.shape[0]
    for c in prange(n_chunks):
        lo = bounds[c] * PIXELS_PER_BLOCK
        _scatter(costs, cell, slot, items, fill[c], lo, min(n_size, bounds[c + 1] * PIXELS_PER_BLOCK))
    for k in prange(n_slots):
        if walked[k]:
            items[start[k] : start[k + 1]] = np.sort(items[start[k] : start[k + 1]])
    for g in prange(n_groups):
        _count_group(g, items, start, slot, plan, spent_before, budgets, joint, single)


_CHUNKS = 16  # contiguous chunks of blocks scattered in parallel by the within-image pass 2


@njit(**NUMBA_FLAGS)
def _image_views(costs, cell, count, total, n_images, b):
    """Image b's slices of the pass-1 arrays (entries and block histograms)."""
    n_size = costs.shape[0] // n_images
    n_blocks = count.shape[0] // n_images
    rows = slice(b * n_blocks, (b + 1) * n_blocks)
    return costs[b * n_size : (b + 1) * n_size], cell[b * n_size : (b + 1) * n_size], count[rows], total[rows]


@njit(parallel=True, **NUMBA_FLAGS)
def _flip_counts(costs, cell, count, total, n_images, groups_per_image, budgets, cap, split):
    """Pass 2: the images in parallel, each one serially, or (``split``) one after the other, each split."""
    joint = np.zeros((n_images, groups_per_image, budgets.shape[0]), dtype=np.int64)
    single = np.zeros_like(joint)
    order = np.argsort(budgets)
    if split:
        for b in range(n_images):
            c, cl, cnt, tot = _image_views(costs, cell, count, total, n_images, b)
            _image_flip_counts_parallel(c, cl, cnt, tot, budgets, order, cap, joint[b], single[b])
    else:
        for b in prange(n_images):
            c, cl, cnt, tot = _image_views(costs, cell, count, total, n_images, b)
            _image_flip_counts(c, cl, cnt, tot, budgets, order, cap, joint[b], single[b])
    return joint, single


def grouped_flip_counts(costs, cell, count, total, n_images, groups_per_image, budgets, cap):
    """Pass 2: per image, group and budget, the greedy (exact) number of flips and of single flips.

    Args:
        costs: from :func:`unit_candidates` (same ``cap``).
        cell: from :func:`unit_candidates` (same ``cap``).
        count: from :func:`unit_candidates` (same ``cap``).
        total: from :func:`unit_candidates` (same ``cap``).
        n_images: B.
        groups_per_image: G.
        budgets: float64 (E,) in [0, cap], any order.
        cap: as in pass 1.

    Returns:
        ``(joint, single)``: int64 (B, G, E): the largest k whose k cheapest costs of group g sum to
        <= budget, and the number of its candidates whose own cost is <= budget. With at least as many
        images as threads, or one group per image, the images run in parallel; fewer (large) images with
        several groups (per-class metrics) are each split over the threads. Both give the same counts.

    Examples:
        >>> costs, cell = np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0], dtype=np.int32)
        >>> count, total = np.array([[3]], dtype=np.int32), np.array([[6.0]])
        >>> [c.tolist() for c in grouped_flip_counts(costs, cell, count, total, 1, 1, np.array([3.5]), 6.0)]
        [[[[2]]], [[[3]]]]
    """
    split = n_images < numba.get_num_threads() and groups_per_image > 1
    return _flip_counts(costs, cell, count, total, n_images, groups_per_image, budgets, cap, split)
