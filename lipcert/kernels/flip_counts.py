"""Pass 2 of the unit-value greedy: flip counts for every budget from pass 1's candidates and histograms.

Per (group, budget) the first histogram bin that does not fit whole and the bin holding the budget are
found from the merged histogram; only the items of those bins are gathered, bin by bin; the bins the joint
greedy walks are sorted, the budget bins' items are counted unsorted (see :mod:`lipcert.kernels.greedy`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS
from .bins import bin_of, bin_scale
from .margins import PIXELS_PER_BLOCK


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
def image_flip_counts(costs, cell, count, total, budgets, order, cap, joint, single):
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
    """:func:`image_flip_counts` with its work split over threads (for one large image at a time).

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
            image_flip_counts(c, cl, cnt, tot, budgets, order, cap, joint[b], single[b])
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
