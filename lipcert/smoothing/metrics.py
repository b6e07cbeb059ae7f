"""Segmentation metrics with abstention (SegCertify outputs), macro and micro named."""

from __future__ import annotations

import numpy as np

from ..metrics.confusion import confusion_matrix, iou_from_confusion


class AbstainMetrics:
    """Accumulate certified pixel accuracy, abstain rate and IoU / mIoU of labels that may abstain.

    Abstentions count as wrong. For IoU the abstain label is an extra prediction column: an abstained
    pixel is a false negative of its true class and no class's false positive (the abstain class's own
    IoU is dropped). ``*_micro`` pools pixels over all images, ``*_macro`` averages per-image values.

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
        self.num_classes, self.abstain, self.ignore_index = num_classes, abstain, ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._cm = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        self._acc, self._abst, self._miou = [], [], []

    def update(self, labels, target) -> None:
        """Add images: labels int (B, H, W) (``abstain`` allowed), target int (B, H, W)."""
        labels, target = np.asarray(labels), np.asarray(target)
        if labels.shape != target.shape:
            raise ValueError(f"Expected labels and target of the same shape, got {labels.shape}, {target.shape}.")
        pred = np.where(labels == self.abstain, self.num_classes, labels)
        for p, t in zip(pred, target, strict=True):
            cm = confusion_matrix(p, t, self.num_classes, self.ignore_index, self.num_classes + 1)
            self._cm += cm
            total = cm.sum()
            self._acc.append(np.trace(cm[:, : self.num_classes]) / total if total else np.nan)
            self._abst.append(cm[:, -1].sum() / total if total else np.nan)
            iou = iou_from_confusion(cm)
            self._miou.append(np.nanmean(iou) if np.any(~np.isnan(iou)) else np.nan)

    def compute(self) -> dict:
        """Dict of ``certified_pixel_accuracy_{micro,macro}``, ``abstain_rate_{micro,macro}``,
        ``iou_micro`` (K,) pooled, ``miou_micro`` (mean of pooled per-class IoU) and ``miou_macro``."""
        total = self._cm.sum()
        iou = iou_from_confusion(self._cm)
        return {
            "certified_pixel_accuracy_micro": float(np.trace(self._cm[:, : self.num_classes]) / total)
            if total
            else float("nan"),
            "certified_pixel_accuracy_macro": float(np.nanmean(self._acc)) if self._acc else float("nan"),
            "abstain_rate_micro": float(self._cm[:, -1].sum() / total) if total else float("nan"),
            "abstain_rate_macro": float(np.nanmean(self._abst)) if self._abst else float("nan"),
            "iou_micro": iou,
            "miou_micro": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
            "miou_macro": float(np.nanmean(self._miou)) if self._miou else float("nan"),
        }
