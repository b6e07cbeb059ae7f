"""Segmentation metrics with abstention (SegCertify outputs), macro and micro named."""

from __future__ import annotations

import numpy as np

from ..core.checks import check_ignore_index, check_positive
from ..core.errors import LipcertError
from ..worst_case.confusion import confusion_matrix, iou_from_confusion
from ..worst_case.smoothed import abstain_counts, worst_case_miou


class AbstainMetrics:
    """Accumulate certified pixel accuracy, abstain rate and IoU / mIoU of labels that may abstain.

    Abstentions count as wrong. Two mIoU values, under explicit names:

    - ``certified_map_miou_*``: the mIoU of the certified map at the clean input, an abstained pixel being
      a false negative of its true class and no class's false positive (optimistic: not a worst case);
    - ``worst_case_miou_*``: the minimum over every assignment of the abstained pixels to classes (the
      guarantee covers non-abstained pixels only), exact (:mod:`lipcert.worst_case.smoothed`).

    ``*_micro`` pools pixels over all images, ``*_macro`` averages per-image values.

    Args:
        num_classes: K; abstain: the abstain label; ignore_index: label excluded from every count.

    Examples:
        >>> import numpy as np
        >>> m = AbstainMetrics(2)
        >>> m.update(np.array([[[0, -1], [1, 1]]]), np.array([[[0, 0], [1, 0]]]))
        >>> out = m.compute()
        >>> out["certified_pixel_accuracy_micro"], out["abstain_rate_micro"]
        (0.5, 0.25)
    """

    def __init__(self, num_classes: int, abstain: int = -1, ignore_index: int | None = 255) -> None:
        check_positive(num_classes, "num_classes", integer=True)
        if isinstance(abstain, bool) or not isinstance(abstain, (int, np.integer)) or 0 <= abstain < num_classes:
            raise LipcertError(f"Expected `abstain` to be a label outside [0, {num_classes}), got {abstain!r}.")
        self.num_classes, self.abstain = int(num_classes), int(abstain)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._cm = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        self._acc, self._abst, self._miou, self._worst = [], [], [], []
        k = self.num_classes
        self._inter, self._union, self._by_class = (np.zeros(k, dtype=np.int64) for _ in range(3))
        self._n_abstained = 0

    def update(self, labels, target) -> None:
        """Add images: labels int (B, H, W) (``abstain`` allowed), target int (B, H, W)."""
        labels, target = np.asarray(labels), np.asarray(target)
        if labels.shape != target.shape or labels.ndim != 3:
            raise LipcertError(
                f"Expected labels and target of the same shape (B, H, W), but got {labels.shape} and {target.shape}."
            )
        if labels.dtype.kind not in "iu" or target.dtype.kind not in "iu":
            raise LipcertError(f"Expected integer labels and target, but got {labels.dtype} and {target.dtype}.")
        k = self.num_classes
        bad_l = (labels != self.abstain) & ((labels < 0) | (labels >= k))
        bad_t = ((target < 0) | (target >= k)) if self.ignore_index is None else (target != self.ignore_index) & (
            (target < 0) | (target >= k)
        )
        if bad_l.any() or bad_t.any():
            found = np.unique(np.concatenate([labels[bad_l], target[bad_t]]))[:5].tolist()
            raise LipcertError(
                f"Expected labels in [0, {k}) or abstain={self.abstain} and targets in [0, {k}) or "
                f"ignore_index={self.ignore_index}, but found {found}."
            )
        pred = np.where(labels == self.abstain, self.num_classes, labels)
        for p, t in zip(pred, target, strict=True):
            cm = confusion_matrix(p, t, self.num_classes, self.ignore_index, self.num_classes + 1)
            self._cm += cm
            total = cm.sum()
            self._acc.append(np.trace(cm[:, : self.num_classes]) / total if total else np.nan)
            self._abst.append(cm[:, -1].sum() / total if total else np.nan)
            iou = iou_from_confusion(cm)
            self._miou.append(np.nanmean(iou) if np.any(~np.isnan(iou)) else np.nan)
            inter, union, by_class, n_abst = abstain_counts(p, t, self.num_classes, self.num_classes, self.ignore_index)
            self._worst.append(worst_case_miou(inter, union, by_class, n_abst))
            self._inter += inter
            self._union += union
            self._by_class += by_class
            self._n_abstained += n_abst

    def compute(self) -> dict:
        """Dict of ``certified_pixel_accuracy_{micro,macro}``, ``abstain_rate_{micro,macro}``,
        ``certified_map_iou_micro`` (K,) pooled, ``certified_map_miou_{micro,macro}`` and
        ``worst_case_miou_{micro,macro}`` (abstained pixels adversarial; micro pools per-class counts)."""
        total = self._cm.sum()
        iou = iou_from_confusion(self._cm)
        return {
            "certified_pixel_accuracy_micro": float(np.trace(self._cm[:, : self.num_classes]) / total)
            if total
            else float("nan"),
            "certified_pixel_accuracy_macro": float(np.nanmean(self._acc)) if self._acc else float("nan"),
            "abstain_rate_micro": float(self._cm[:, -1].sum() / total) if total else float("nan"),
            "abstain_rate_macro": float(np.nanmean(self._abst)) if self._abst else float("nan"),
            "certified_map_iou_micro": iou,
            "certified_map_miou_micro": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
            "certified_map_miou_macro": float(np.nanmean(self._miou)) if self._miou else float("nan"),
            "worst_case_miou_micro": worst_case_miou(self._inter, self._union, self._by_class, self._n_abstained),
            "worst_case_miou_macro": float(np.nanmean(self._worst)) if self._worst else float("nan"),
        }
