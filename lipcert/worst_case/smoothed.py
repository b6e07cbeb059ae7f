"""SegCertify's worst-case mIoU: abstained pixels assigned adversarially (exact).

SegCertify guarantees (with probability 1 - alpha) that every non-abstained pixel keeps its certified
class within the radius; an abstained pixel carries no guarantee, so under attack it may take any class.
The worst case over those assignments:

- giving an abstained pixel its own true class turns it into a true positive, so the attacker gives it
  another class k, which adds a false positive to k: ``IoU_k = I_k / (U_k + x_k)`` with x_k pixels added
  (I_k, U_k of the certified map with abstentions counted as false negatives);
- a class absent from the ground truth and from the certified map becomes defined (IoU 0) when it gains
  a pixel: for m such classes made defined, m pixels go to them;
- assignments x are feasible iff ``sum_k x_k <= |A|`` and ``x_k <= |A| - a_k`` (a_k: abstained pixels
  whose true class is k): by Hall's theorem, a set of two or more classes can take every abstained pixel,
  a single class all but its own; over a dataset the same holds with the totals (a sum of such
  polymatroids), so the pooled value only depends on per-class totals.

``I_k / (U_k + x)`` is convex and decreasing in x, so for each m the greedy that gives every next pixel
to the class losing most is exact (separable convex minimisation over a box and a total), and the worst
mIoU is the minimum over m of ``sum_k IoU_k / (n_defined + m)``.
"""

from __future__ import annotations

import heapq

import numpy as np


def worst_case_miou(inter: np.ndarray, union: np.ndarray, abstained_by_class: np.ndarray, n_abstained: int) -> float:
    """The exact minimum mIoU over adversarial assignments of the abstained pixels.

    Args:
        inter: int (K,) true positives of the certified map (abstentions excluded).
        union: int (K,) ground truth or certified prediction of each class (abstained pixels count in
            their true class only).
        abstained_by_class: int (K,) abstained pixels per true class.
        n_abstained: the number of abstained (valid) pixels.

    Returns:
        The worst mIoU (mean over the classes defined under the attack), NaN when no class is defined.

    Examples:
        >>> worst_case_miou(np.array([1, 1]), np.array([1, 2]), np.array([0, 1]), 1)  # the abstained pixel
        0.5
    """
    inter, union = np.asarray(inter, dtype=np.int64), np.asarray(union, dtype=np.int64)
    caps = n_abstained - np.asarray(abstained_by_class, dtype=np.int64)
    defined = union > 0
    n_absent = int((~defined).sum())
    best = np.inf
    for m in range(min(n_absent, n_abstained) + 1):
        n_def = int(defined.sum()) + m
        if n_def == 0:
            continue
        total = _greedy_sum(inter[defined], union[defined], caps[defined], n_abstained - m)
        best = min(best, total / n_def)
    return float(best) if np.isfinite(best) else float("nan")


def _greedy_sum(inter: np.ndarray, union: np.ndarray, caps: np.ndarray, pixels: int) -> float:
    """Min sum_k I_k / (U_k + x_k) over integers 0 <= x_k <= caps_k, sum x_k <= pixels (greedy, exact)."""
    x = np.zeros(inter.size, dtype=np.int64)
    heap = [(-_gain(inter[k], union[k], 0), k) for k in range(inter.size) if caps[k] > 0 and inter[k] > 0]
    heapq.heapify(heap)
    for _ in range(max(0, pixels)):
        if not heap:
            break
        _, k = heapq.heappop(heap)
        x[k] += 1
        if x[k] < caps[k]:
            heapq.heappush(heap, (-_gain(inter[k], union[k], x[k]), k))
    return float(np.sum(inter / np.maximum(union + x, 1)))


def _gain(i: int, u: int, x: int) -> float:
    return i / (u + x) - i / (u + x + 1)


def abstain_counts(labels: np.ndarray, target: np.ndarray, k: int, abstain: int, ignore_index):
    """Per-class (inter, union, abstained_by_class) and the abstained count of one map (valid pixels).

    Args:
        labels: int (H, W) certified map (``abstain`` where SegCertify abstained).
        target: int (H, W) ground truth.
        k: the number of classes.
        abstain: the abstain label.
        ignore_index: label excluded from every count, or None.

    Returns:
        ``(inter, union, abstained_by_class, n_abstained)``: int64 (K,) three times and an int.
    """
    lab, t = np.asarray(labels).ravel(), np.asarray(target).ravel()
    valid = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    lab, t = lab[valid], t[valid]
    abst = lab == abstain
    pred = np.where(abst, -1, lab)
    inter = np.bincount(t[pred == t], minlength=k)[:k]
    gt = np.bincount(t, minlength=k)[:k]
    pred_only = np.bincount(pred[(pred >= 0) & (pred != t)], minlength=k)[:k]
    by_class = np.bincount(t[abst], minlength=k)[:k]
    return inter, gt + pred_only, by_class, int(abst.sum())
