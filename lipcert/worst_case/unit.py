"""Exact certificates for unit-value metrics: pixel accuracy, stability, recall and FNR.

Every pixel the attacker flips counts once, so the attacker's best use of a budget ``eps**2`` is to flip
the cheapest candidates first: greedy on sorted costs is exact for this 0/1 knapsack with unit values.
One sort and one running sum answer every radius (``searchsorted``) and every level (Q2 look-up).

=================  =========================================  ==========================
metric             candidates the attacker flips (cost c_p)   value per image / class
=================  =========================================  ==========================
pixel_accuracy     correct valid pixels                       (correct - k) / valid
stability          every valid pixel                          (valid - k) / valid
recall (per cls)   true positives of class c                  (TP_c - k_c) / G_c
fnr (per cls)      true positives of class c                  1 - recall
=================  =========================================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..core.aggregate import micro_ratio
from ..core.checks import raise_not_finite
from ..core.config import COST_REL_SLACK, EPS_RANGE, LEVEL_COUNT_TOLERANCE
from ..core.errors import LipcertError
from ..kernels import (
    PIXELS_PER_BLOCK,
    grouped_flip_counts,
    grouped_sorted_prefix,
    segment_value_at,
    unit_candidates,
    unit_certificate,
)
from .registry import REGISTRY, UNIT_METRICS

PER_CLASS_UNIT = tuple(m for m in UNIT_METRICS if REGISTRY[m].per_class)


@dataclass(frozen=True)
class _UnitProblem:
    """Candidate costs and groups of every (image, group) plus the clean numerators and denominators."""

    n_images: int
    n_groups: int
    cap: float  # candidates costing more are left out: budgets up to cap only
    costs: np.ndarray  # float64 (B*N,) flip costs of the candidates costing <= cap (compact per block)
    cell: np.ndarray  # int32 (B*N,) histogram cell g * bins + j of each of those candidates, -1 elsewhere
    count: np.ndarray  # int32 (B * blocks, G * bins) histograms of those costs (lipcert.kernels.greedy)
    total: np.ndarray  # float64, same shape: sums of the costs per bin
    clean_num: np.ndarray  # float64 (B, G)
    den: np.ndarray  # float64 (B, G)
    complement: bool  # value reported as 1 - num/den (fnr)


def budgets_of(eps: np.ndarray) -> np.ndarray:
    """The cost budgets ``eps**2`` of the radii, widened by the relative slack ``COST_REL_SLACK``."""
    return eps * eps * (1.0 + COST_REL_SLACK)


def _kernel_inputs(metric, logits, target, ignore_index):
    """(target array, ignore label, per_class, correct_only) as the kernels take them."""
    no_labels = target is None
    ignore = -1 if (ignore_index is None or no_labels) else int(ignore_index)
    tgt = np.zeros(logits.shape[::2], dtype=np.int64) if no_labels else target
    return tgt, ignore, metric in PER_CLASS_UNIT, metric != "stability"


def _check_flags(finite, labels_ok, tgt, ignore, k, ignore_index, logits) -> None:
    if not finite:
        raise_not_finite(logits)
    if not labels_ok:
        bad = np.unique(tgt[(tgt != ignore) & ((tgt < 0) | (tgt >= k))])[:5].tolist()
        raise LipcertError(f"Expected labels in [0, {k}) or ignore_index={ignore_index}, but found {bad}.")


def build_unit_problem(metric, logits, target, lipschitz, ignore_index, cap=np.inf):
    """Collect the attacker's candidates and their flip costs ``m**2 / (2 L**2)`` in one pass.

    Args:
        metric: one of ``UNIT_METRICS``.
        logits: float32/float64 (B, K, N) C-contiguous logits.
        target: int64 (B, N) labels, or None (stability only: every pixel counts).
        lipschitz: L > 0.
        ignore_index: label excluded from every count (or None).
        cap: candidates costing more than ``cap`` are left out (they still count as clean): the largest
            budget when only budgets up to it are asked (Q1), inf for Q2 radii.

    Returns:
        ``(problem, radius)`` with the per-pixel radius float64 (B, N) = margin / (sqrt(2) L).

    Raises:
        LipcertError: non-finite logits, labels outside [0, K) other than ``ignore_index``.
    """
    b, k, _ = logits.shape
    tgt, ignore, per_class, correct_only = _kernel_inputs(metric, logits, target, ignore_index)
    radius, costs, cell, count, total, clean_num, den, finite, labels_ok = unit_candidates(
        logits, tgt, ignore, per_class, correct_only, lipschitz, cap
    )
    _check_flags(finite, labels_ok, tgt, ignore, k, ignore_index, logits)
    n_groups = k if per_class else 1
    problem = _UnitProblem(b, n_groups, cap, costs, cell, count, total, clean_num, den, metric == "fnr")
    return problem, radius


class UnitEvaluation(NamedTuple):
    """Q1 of a unit-value metric for every image, radius and group (G = 1, or K for recall / fnr)."""

    worst: np.ndarray  # float64 (B, E, G) values under the joint (exact) attacker, NaN where den is 0
    naive: np.ndarray  # float64 (B, E, G) values under the per-pixel certificate
    clean: np.ndarray  # float64 (B, G) clean values
    worst_num: np.ndarray  # float64 (B, E, G) candidates left unflipped by the joint attacker
    naive_num: np.ndarray  # float64 (B, E, G) candidates whose own radius exceeds eps
    clean_num: np.ndarray  # float64 (B, G) candidates
    den: np.ndarray  # float64 (B, G) valid pixels (of the class, for recall / fnr)
    radius: np.ndarray  # float64 (B, N) per-pixel certified radius margin / (sqrt(2) L)


def unit_counts(metric, logits, target, lipschitz, ignore_index, eps: np.ndarray) -> UnitEvaluation:
    """Q1 for every radius: worst-case values and numerators under the joint (exact) and per-pixel view.

    Joint: the attacker flips the largest k whose cheapest-k cost sum is ``<= eps**2`` (the linear-time
    greedy of :mod:`lipcert.kernels.greedy`). Naive: a candidate stays only if its own cost exceeds
    ``eps**2``. Images of at most 4096 pixels run everything in one parallel region, one image per job
    (:func:`lipcert.kernels.unit_certificate`); larger images split into blocks of pixels first.

    Args:
        metric: as in :func:`build_unit_problem`.
        logits: as in :func:`build_unit_problem`.
        target: as in :func:`build_unit_problem`.
        lipschitz: as in :func:`build_unit_problem`.
        ignore_index: as in :func:`build_unit_problem`.
        eps: float64 (E,) radii >= 0.

    Raises:
        LipcertError: non-finite logits, labels outside [0, K) other than ``ignore_index``.
    """
    b, k, n = logits.shape
    complement = metric == "fnr"
    if n <= PIXELS_PER_BLOCK:
        tgt, ignore, per_class, correct_only = _kernel_inputs(metric, logits, target, ignore_index)
        out = unit_certificate(logits, tgt, ignore, per_class, correct_only, lipschitz, eps, COST_REL_SLACK, complement)
        _check_flags(out[-2], out[-1], tgt, ignore, k, ignore_index, logits)
        radius, worst, naive, clean, worst_num, naive_num, clean_num, den = out[:-2]
        return UnitEvaluation(worst, naive, clean, worst_num, naive_num, clean_num, den, radius)
    budgets = budgets_of(eps)
    p, radius = build_unit_problem(metric, logits, target, lipschitz, ignore_index, float(budgets.max()))
    flips, single = grouped_flip_counts(p.costs, p.cell, p.count, p.total, b, p.n_groups, budgets, p.cap)
    clean_num, den = p.clean_num, p.den
    worst_num = (clean_num[:, :, None] - flips).transpose(0, 2, 1)
    naive_num = (clean_num[:, :, None] - single).transpose(0, 2, 1)
    worst, naive = (unit_values(x, den[:, None, :], complement) for x in (worst_num, naive_num))
    clean = unit_values(clean_num, den, complement)
    return UnitEvaluation(worst, naive, clean, worst_num, naive_num, clean_num, den, radius)


def unit_radius(problem: _UnitProblem, levels: np.ndarray, drop: bool) -> np.ndarray:
    """Q2: the smallest eps at which the metric can reach each level (exact under the cost model).

    Args:
        problem: from :func:`build_unit_problem` with ``cap=inf`` (every candidate kept).
        levels: float64 (Lv,) target values of the metric (``drop=False``) or drops from the clean value
            (``drop=True``). For fnr a level means "fnr >= level"; for the others "value <= level".
        drop: interpret ``levels`` as drops (rises for fnr) from the clean value.

    Returns:
        float64 (B, Lv, G): radii in l2 [0,1] pixel units; 0 where the clean value already meets the
        level (and for radii below ``EPS_RANGE[0]``, outside the exactly certified range), inf where no
        budget reaches it, NaN where the metric is undefined (no denominator).
    """
    den = problem.den[:, None, :]
    clean = problem.clean_num[:, None, :]
    lev = levels[None, :, None]
    if drop:
        need_real = lev * den
    else:
        value_level = 1.0 - lev if problem.complement else lev
        need_real = clean - value_level * den
    # Rounding `need` down can only make the radius smaller: the safe side.
    need = np.ceil(need_real - LEVEL_COUNT_TOLERANCE * np.maximum(den, 1.0)).astype(np.int64)
    b, g = problem.n_images, problem.n_groups
    if problem.cap != np.inf:
        raise LipcertError("Q2 radii need every candidate: build the problem with cap=inf.")
    need_g = need.transpose(0, 2, 1).reshape(b * g, -1)
    image = np.repeat(np.arange(b), problem.cell.shape[0] // b)
    group = problem.cell // (problem.count.shape[1] // g)  # cell = group * bins per group + bin
    flat = np.where(problem.cell >= 0, image * g + group, -1)
    offsets, _, prefix = grouped_sorted_prefix(problem.costs, flat, b * g)  # Q2 needs every sum
    sums = segment_value_at(offsets, prefix, np.ascontiguousarray(need_g))
    radius = np.sqrt(sums / (1.0 + COST_REL_SLACK)).reshape(b, g, -1).transpose(0, 2, 1)
    # below EPS_MIN costs may have been rounded up from underflow: such radii are reported as 0 (sound)
    radius = np.where(radius < EPS_RANGE[0], 0.0, radius)
    return np.where(den > 0, radius, np.nan)


def unit_values(num: np.ndarray, den: np.ndarray, complement: bool) -> np.ndarray:
    """Num / den (or 1 - num / den), NaN where den == 0."""
    value = micro_ratio(num, den)
    return 1.0 - value if complement else value
