"""Clean (non-certified) segmentation metrics from confusion matrices: pixel accuracy, IoU, mIoU."""

from __future__ import annotations

import numpy as np


def confusion_matrix(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
    n_pred_classes: int | None = None,
) -> np.ndarray:
    """Confusion counts of one or more images.

    Args:
        pred: int (..., H, W) predicted labels in [0, n_pred_classes).
        target: int (..., H, W) labels in [0, num_classes) or ``ignore_index`` (left out).
        num_classes: K (rows).
        ignore_index: label left out of the counts, or None.
        n_pred_classes: columns (default K; K + 1 with an abstain column).

    Returns:
        int64 (K, n_pred_classes): entry (t, p) counts valid pixels of class t predicted as p.
    """
    cols = n_pred_classes or num_classes
    t = np.asarray(target).ravel()
    p = np.asarray(pred).ravel()
    keep = t != ignore_index if ignore_index is not None else np.ones_like(t, dtype=bool)
    return np.bincount(t[keep] * cols + p[keep], minlength=num_classes * cols).reshape(num_classes, cols)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU (K,) from a (K, K') confusion matrix (extra columns, e.g. abstain, count as misses).

    NaN for a class absent from both ground truth and prediction.
    """
    k = cm.shape[0]
    inter = np.diag(cm[:, :k]).astype(np.float64)
    union = cm.sum(1) + cm[:, :k].sum(0) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def pixel_accuracy_from_confusion(cm: np.ndarray) -> float:
    """Correct / valid pixels (extra columns count as wrong); NaN without valid pixels."""
    k = cm.shape[0]
    total = cm.sum()
    return float(np.trace(cm[:, :k]) / total) if total else float("nan")
