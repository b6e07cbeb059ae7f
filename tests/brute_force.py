"""Brute-force attackers: enumerate every reassignment of pixels to classes at its lower-bound cost.

Only for tiny images (K ** N assignments). The certificates must EQUAL these optima for exact solvers
and never be above them (on the "better" side) for bounds.
"""

from __future__ import annotations

import itertools

import numpy as np

from lipcert.core.config import COST_REL_SLACK


def assignment_costs(logits: np.ndarray, lipschitz: float) -> tuple[np.ndarray, np.ndarray]:
    """pred (N,) and cost (N, K) of making pixel n predict k, for one image (K, H, W) -> flattened."""
    z = logits.reshape(logits.shape[0], -1).T.astype(np.float64)  # (N, K)
    pred = z.argmax(1)
    top = z.max(1, keepdims=True)
    return pred, (top - z) ** 2 / (2.0 * lipschitz**2)


def affordable_assignments(logits: np.ndarray, eps: float, lipschitz: float):
    """Yield every label assignment (N,) whose total cost fits in eps**2 (same slack as lipcert)."""
    pred, cost = assignment_costs(logits, lipschitz)
    n, k = cost.shape
    budget = eps * eps * (1.0 + COST_REL_SLACK)
    for labels in itertools.product(range(k), repeat=n):
        lab = np.asarray(labels)
        total = 0.0
        for i in np.flatnonzero(lab != pred):
            total += cost[i, lab[i]]
        if total <= budget:
            yield lab


def brute_force(logits: np.ndarray, eps: float, lipschitz: float, value_fn, worst=min) -> float:
    """Worst value of ``value_fn(labels)`` over every affordable assignment (NaNs skipped)."""
    vals = [value_fn(lab) for lab in affordable_assignments(logits, eps, lipschitz)]
    vals = [v for v in vals if not np.isnan(v)]
    return worst(vals) if vals else float("nan")


def pixel_accuracy(labels, target, ignore_index=255):
    valid = target != ignore_index
    return float((labels[valid] == target[valid]).sum() / valid.sum()) if valid.any() else float("nan")


def recall(labels, target, cls, ignore_index=255):
    pos = target == cls
    return float((labels[pos] == cls).sum() / pos.sum()) if pos.any() else float("nan")


def iou(labels, target, cls, ignore_index=255):
    valid = target != ignore_index
    inter = ((labels == cls) & (target == cls) & valid).sum()
    union = (((labels == cls) | (target == cls)) & valid).sum()
    return float(inter / union) if union else float("nan")


def pooled_miou(logits, target, eps, lipschitz):
    """min over one affordable assignment per image of the pooled mIoU (classes with a pooled union)."""
    k = logits.shape[1]
    options = []
    for i in range(logits.shape[0]):
        t = target[i].ravel()
        rows = set()
        for lab in affordable_assignments(logits[i], eps, lipschitz):
            rows.add(tuple(int(((lab == c) & (t == c)).sum()) for c in range(k))
                     + tuple(int(((lab == c) | (t == c)).sum()) for c in range(k)))  # fmt: skip
        options.append(rows)
    best = np.inf
    for combo in itertools.product(*options):
        total = np.sum(np.asarray(combo), axis=0)
        inter, union = total[:k], total[k:]
        defined = union > 0
        best = min(best, float(np.mean(inter[defined] / union[defined])))
    return best


def tiny_dataset(rng, n_images, n_pixels, n_classes):
    """Random (B, K, 1, N) float64 logits with small integer gaps (ties broken) and (B, 1, N) labels."""
    logits = rng.integers(-2, 3, size=(n_images, n_classes, 1, n_pixels)).astype(np.float64)
    logits += rng.uniform(0.0, 0.01, size=logits.shape)  # break ties
    target = rng.integers(0, n_classes, size=(n_images, 1, n_pixels))
    return logits, target
