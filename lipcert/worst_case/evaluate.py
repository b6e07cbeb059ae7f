"""Logits and labels in, the worst-case evaluation of a registered metric out (validated, per image)."""

from __future__ import annotations

import numpy as np
import torch

from ..core.checks import check_logits, check_target
from ..core.errors import LipcertError
from .costs import top2
from .iou import build_iou_problem, iou_per_image, mean_over_classes
from .miou_split import split_miou
from .registry import metric_spec
from .unit import UnitEvaluation, budgets_of, build_unit_problem, unit_counts


def _inputs(logits, target, metric, ignore_index, check_range=True):
    """Validated (logits tensor, target int64 numpy or None)."""
    spec = metric_spec(metric)
    t = check_logits(logits, finite=False)
    if target is None and spec.needs_target:
        raise LipcertError(f"Metric {metric!r} needs `target` labels of shape (B, H, W).")
    tgt = None if target is None else check_target(target, t, ignore_index, check_range).numpy()
    return t, tgt


def _prepare(logits, target, metric, ignore_index):
    """Validate and return (logits tensor, target numpy or None, pred, margin)."""
    t, tgt = _inputs(logits, target, metric, ignore_index)
    pred, margin = top2(t)
    return t, tgt, pred, margin


def _unit_arrays(logits, target, metric, ignore_index):
    """Validated (float32/64 logits (B, K, N), int64 target (B, N) or None, (B, H, W)) for the kernels."""
    t, tgt = _inputs(logits, target, metric, ignore_index, check_range=False)  # the kernels check the range
    b, k, h, w = t.shape
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # float16 / bfloat16 -> float32 is exact
    z = np.ascontiguousarray(t.numpy().reshape(b, k, h * w))
    flat_t = None if tgt is None else np.ascontiguousarray(tgt.reshape(b, -1))
    return z, flat_t, (b, h, w)


def unit_problem(logits, target, metric, lipschitz, ignore_index):
    """(problem with every candidate, per-pixel radius (B, H, W)) of a unit-value metric (Q2)."""
    z, flat_t, shape = _unit_arrays(logits, target, metric, ignore_index)
    problem, radius = build_unit_problem(metric, z, flat_t, lipschitz, ignore_index)
    return problem, radius.reshape(shape)


def _iou_problem(t, tgt, pred, margin, lipschitz, ignore_index, budgets):
    b, k = t.shape[:2]
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # float16 / bfloat16 -> float32 is exact
    z = t.reshape(b, k, -1).numpy()
    return build_iou_problem(
        z, pred.reshape(b, -1), margin.reshape(b, -1), tgt.reshape(b, -1), lipschitz, ignore_index, budgets
    )


def evaluate_iou(logits, target, eps, metric, lipschitz, ignore_index, per_image=True):
    """(problem, worst, naive, clean, margin, extras) per image: (B, E, K) for iou, (B, E) for miou.

    With ``per_image=False`` only the problem (sorted costs) is built; the values are None. For miou the
    extras hold ``mean_of_classes`` (B, E) and ``split_solved`` (B, E).
    """
    t, tgt, pred, margin = _prepare(logits, target, metric, ignore_index)
    budgets = budgets_of(eps)
    problem = _iou_problem(t, tgt, pred, margin, lipschitz, ignore_index, budgets)
    if not per_image:
        return problem, None, None, None, margin, {}
    worst, naive, clean = iou_per_image(problem)
    extras = {}
    if metric == "miou":
        split, solved = split_miou(problem, worst)
        extras = {"mean_of_classes": mean_over_classes(worst), "split_solved": solved}
        worst, naive, clean = split, mean_over_classes(naive), mean_over_classes(clean)
    return problem, worst, naive, clean, margin, extras


def evaluate_unit(logits, target, eps, metric, lipschitz, ignore_index) -> tuple[UnitEvaluation, tuple]:
    """(the unit-value evaluation with radius (B, N), the image shape (B, H, W))."""
    z, flat_t, shape = _unit_arrays(logits, target, metric, ignore_index)
    return unit_counts(metric, z, flat_t, lipschitz, ignore_index, eps), shape
