"""The exact greedy of the unit-value certificates, in linear time and without a full sort.

Pass 1 (:func:`_scan_block`) computes margins, flip costs and per-pixel radii, counts the clean and
valid pixels, keeps the attacker's candidates that some budget can flip (cost <= cap, the largest
budget) in a compact list, and adds each of them to a histogram whose bins are equal-width in
``sqrt(cost)`` on [0, cap] (:mod:`.bins`). Pass 2 (:mod:`.flip_counts`) answers every budget from the
histogram:
whole bins are taken, cheapest first, while their running sum fits; only the items of the first bin
that does not fit (and of the bin holding the budget, for the per-pixel count) are gathered, sorted and
added one by one. The bin of a cost never decreases with the cost, so every item of an earlier bin costs
at most as much as every item of a later one: the answer is that of sorting every group and searching
its running sums (the numpy twins do exactly that).

:func:`unit_certificate` runs both passes in one parallel region, one image per job (small images);
:func:`unit_candidates` (blocks of pixels in parallel) then
:func:`~lipcert.kernels.flip_counts.grouped_flip_counts` (images in parallel, or one large image split
over the threads) do the same for large images, and :func:`unit_candidates` with ``cap = inf`` feeds the Q2 radii.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..core.config import NUMBA_FLAGS
from .bins import bin_of, bin_scale, n_bins
from .flip_counts import image_flip_counts
from .margins import PIXELS_PER_BLOCK, TILE, pair_cost, top2_tile


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
        image_flip_counts(costs[:kept], cell[:kept], count, total, budgets, order, cap, joint, single)
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
