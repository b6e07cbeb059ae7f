"""The joint worst-case mIoU of small images or regions (see :mod:`lipcert.solvers.joint`)."""

from __future__ import annotations

import numpy as np

from ..core.certificate import Certificate, Status
from ..core.checks import check_eps, check_ignore_index, check_lipschitz, check_logits, check_positive, check_target
from ..core.errors import LipcertError
from ..solvers.joint import joint_miou_min
from .costs import top2
from .iou import build_iou_problem, iou_per_image, mean_over_classes
from .miou_split import present_sum_lowers, split_miou
from .registry import build_certificate
from .unit import budgets_of


def joint_miou(
    logits,
    target,
    eps,
    *,
    lipschitz: float,
    ignore_index: int | None = 255,
    time_limit: float = 30.0,
    max_pixels: int = 1024,
) -> Certificate:
    """Exact worst-case mIoU of each (small) image under a joint attack, with CP-SAT.

    Args:
        logits: (B, K, H, W) float logits of small images or regions (H * W <= ``max_pixels``).
        target: int (B, H, W) labels.
        eps: radius or radii (l2, [0,1] pixel units).
        lipschitz: L (required).
        ignore_index: label excluded from every count, or None.
        time_limit: seconds per CP-SAT solve; on time-out the proven bound is returned.
        max_pixels: the largest H * W accepted (the exact solver is for small images).

    Returns:
        :class:`Certificate` (``metric="miou_joint"``) with ``worst`` (B, E) proven lower bounds (exact
        when ``status == "exact"``), ``extras["attack"]`` (B, E) the mIoU of the best reassignment found
        (so ``worst <= true worst <= attack``), ``extras["status"]`` codes (0 exact, 1 bound, 2 time limit).

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.5]]]])
        >>> joint_miou(logits, torch.tensor([[[0, 1]]]), [0.0, 1.0], lipschitz=1.0).worst.round(4).tolist()
        [[1.0, 0.25]]
    """
    check_positive(time_limit, "time_limit")
    check_positive(max_pixels, "max_pixels", integer=True)
    ignore_index = check_ignore_index(ignore_index)
    L = check_lipschitz(lipschitz)
    e = check_eps(eps)
    t = check_logits(logits)
    tgt = check_target(target, t, ignore_index).numpy()
    b, k, h, w = t.shape
    if h * w > max_pixels:
        raise LipcertError(f"joint_miou is for small images or regions: {h * w} pixels > max_pixels={max_pixels}.")
    z = t.double().numpy().reshape(b, k, -1)
    budgets = budgets_of(e)
    pred, margin = top2(t)
    problem = build_iou_problem(
        z, pred.reshape(b, -1), margin.reshape(b, -1), tgt.reshape(b, -1), L, ignore_index, budgets
    )
    per_class_worst, _, per_class_clean = iou_per_image(problem)
    split, _ = split_miou(problem, per_class_worst)  # a proven lower bound too: the cuts, and a floor
    worst = np.full((b, len(e)), np.nan)
    attack = np.full((b, len(e)), np.nan)
    codes = np.zeros((b, len(e)), dtype=np.int64)
    for i in range(b):
        flat_t = tgt[i].ravel()
        valid = flat_t != ignore_index if ignore_index is not None else np.ones_like(flat_t, dtype=bool)
        labels = np.where(valid, flat_t, 0)
        for j in range(len(e)):
            cuts = _cuts(problem, per_class_worst, i, j, np.asarray(pred[i]).ravel(), flat_t, valid, k)
            res = joint_miou_min(z[i], labels, valid, budgets[j], time_limit, 1.0 / L, e[j] * e[j], cuts)
            worst[i, j], attack[i, j] = res.value, res.attack_value
            codes[i, j] = {"exact": 0, "bound": 1, "time_limit": 2}[res.status]
    # the split and the mean of per-class worst cases are also proven lower bounds: never return less
    floor = np.fmax(split, mean_over_classes(per_class_worst))
    worst = np.where(np.isnan(worst), worst, np.fmax(worst, floor))
    names = {0: Status.EXACT, 1: Status.BOUND, 2: Status.TIME_LIMIT}
    return build_certificate(
        "miou_joint",
        "none",
        eps=e,
        worst=worst,
        clean=mean_over_classes(per_class_clean),
        naive=None,
        lipschitz=L,
        lipschitz_source="declared",
        higher_is_better=True,
        solver="CP-SAT (exact ratio by union enumeration)",
        status=names[int(codes.max())],
        extras={"attack": attack, "status": codes},
    )


def _cuts(problem, per_class_worst, i, j, pred, target, valid, k) -> list:
    """The split bounds as cuts of the joint solver's m-models (m = other classes left defined).

    The joint solver's m counts every class outside the ground truth that ends up defined; the split
    counts only the absent classes (neither in the ground truth nor predicted) made defined, each paid
    for. With ``n`` classes predicted outside the ground truth (defined for free), m defined classes
    include at least ``m - n`` paid ones, and the split bound is non-decreasing in that count, so
    ``lowers[max(0, m - n)]`` bounds the m-model from below.
    """
    lowers = present_sum_lowers(problem, i, j, per_class_worst)
    in_gt = np.bincount(target[valid], minlength=k) > 0
    predicted = np.bincount(pred[valid], minlength=k) > 0
    free = int((predicted & ~in_gt).sum())
    cuts = []
    for m in range(int((~in_gt).sum()) + 1):
        paid = max(0, m - free)
        cuts.append(lowers[paid] if paid < len(lowers) and np.isfinite(lowers[paid]) else None)
    return cuts
