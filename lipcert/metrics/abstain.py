"""Segmentation metrics with abstention (SegCertify outputs), macro and micro named."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from ..core.aggregate import macro_mean
from ..core.checks import check_ignore_index, check_positive
from ..core.errors import LipcertError
from ..worst_case.confusion import confusion_matrix, iou_from_confusion
from ..worst_case.smoothed import abstain_counts, worst_case_miou
from .certified import METRIC_KWARGS
from .states import cat_state_values

_PER_IMAGE = ("image_accuracy", "image_abstain", "image_miou", "image_worst_miou")


class AbstainMetrics(Metric):
    """Accumulate certified pixel accuracy, abstain rate and IoU / mIoU of labels that may abstain.

    Abstentions count as wrong. Two mIoU values, under explicit names:

    - ``certified_map_miou_*``: the mIoU of the certified map at the clean input, an abstained pixel being
      a false negative of its true class and no class's false positive (optimistic: not a worst case);
    - ``worst_case_miou_*``: the minimum over every assignment of the abstained pixels to classes (the
      guarantee covers non-abstained pixels only), exact (:mod:`lipcert.worst_case.smoothed`).

    ``*_micro`` pools pixels over all images, ``*_macro`` averages per-image values.

    A ``torchmetrics.Metric``: pooled counts are ``"sum"`` states, per-image values ``"cat"`` states, so
    under ``torchrun`` :meth:`compute` answers for the union of every process's images (micro values
    identical for any number of processes; macro means equal to the last ulps).

    Args:
        num_classes: K.
        abstain: the abstain label (outside [0, K)).
        ignore_index: label excluded from every count, or None.
        kwargs: the distributed options of ``torchmetrics.Metric``.

    Raises:
        LipcertError: K not a positive integer, an abstain label inside [0, K), a bad ignore_index.

    Examples:
        >>> import numpy as np
        >>> m = AbstainMetrics(2)
        >>> m.update(np.array([[[0, -1], [1, 1]]]), np.array([[[0, 0], [1, 0]]]))
        >>> out = m.compute()
        >>> out["certified_pixel_accuracy_micro"], out["abstain_rate_micro"]
        (0.5, 0.25)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, abstain: int = -1, ignore_index: int | None = 255, **kwargs) -> None:
        check_positive(num_classes, "num_classes", integer=True)
        if isinstance(abstain, bool) or not isinstance(abstain, (int, np.integer)) or 0 <= abstain < num_classes:
            raise LipcertError(f"Expected `abstain` to be a label outside [0, {num_classes}), got {abstain!r}.")
        unknown = sorted(set(kwargs) - set(METRIC_KWARGS))
        if unknown:
            raise LipcertError(f"Unknown option(s) {unknown} for AbstainMetrics.")
        super().__init__(**kwargs)
        self.num_classes, self.abstain = int(num_classes), int(abstain)
        self.ignore_index = check_ignore_index(ignore_index)
        k = self.num_classes
        zeros = torch.zeros
        self.add_state("confusion", zeros(k, k + 1, dtype=torch.int64), dist_reduce_fx="sum", persistent=True)
        for name in ("inter", "union", "by_class"):
            self.add_state(name, zeros(k, dtype=torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("n_abstained", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum", persistent=True)
        for name in _PER_IMAGE:
            self.add_state(name, default=[], dist_reduce_fx="cat", persistent=True)

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
        bad_t = (
            ((target < 0) | (target >= k))
            if self.ignore_index is None
            else (target != self.ignore_index) & ((target < 0) | (target >= k))
        )
        if bad_l.any() or bad_t.any():
            found = np.unique(np.concatenate([labels[bad_l], target[bad_t]]))[:5].tolist()
            raise LipcertError(
                f"Expected labels in [0, {k}) or abstain={self.abstain} and targets in [0, {k}) or "
                f"ignore_index={self.ignore_index}, but found {found}."
            )
        pred = np.where(labels == self.abstain, self.num_classes, labels)
        per_image = {name: [] for name in _PER_IMAGE}
        for p, t in zip(pred, target, strict=True):
            cm = confusion_matrix(p, t, self.num_classes, self.ignore_index, self.num_classes + 1)
            self.confusion += torch.from_numpy(cm).to(self.confusion)
            total = cm.sum()
            per_image["image_accuracy"].append(np.trace(cm[:, : self.num_classes]) / total if total else np.nan)
            per_image["image_abstain"].append(cm[:, -1].sum() / total if total else np.nan)
            iou = iou_from_confusion(cm)
            per_image["image_miou"].append(macro_mean(iou))
            inter, union, by_class, n_abst = abstain_counts(p, t, self.num_classes, self.num_classes, self.ignore_index)
            per_image["image_worst_miou"].append(worst_case_miou(inter, union, by_class, n_abst))
            for name, counts in (("inter", inter), ("union", union), ("by_class", by_class)):
                state = getattr(self, name)
                state += torch.from_numpy(np.asarray(counts, dtype=np.int64)).to(state)
            self.n_abstained += int(n_abst)
        for name, values in per_image.items():
            getattr(self, name).append(torch.tensor(values, dtype=torch.float64, device=self.device))

    def compute(self) -> dict:
        """Every metric of the images seen, macro and micro.

        Dict of ``certified_pixel_accuracy_{micro,macro}``, ``abstain_rate_{micro,macro}``,
        ``certified_map_iou_micro`` (K,) pooled, ``certified_map_miou_{micro,macro}``,
        ``worst_case_miou_{micro,macro}`` (abstained pixels adversarial; micro pools per-class counts) and
        ``certified_recall_micro`` (K,): pooled certified-and-correct pixels of each class over its pixels
        (NaN for a class without pixels).
        """
        cm = self.confusion.cpu().numpy()
        total = cm.sum()
        iou = iou_from_confusion(cm)
        counts = (getattr(self, name).cpu().numpy() for name in ("inter", "union", "by_class"))
        return {
            "certified_pixel_accuracy_micro": float(np.trace(cm[:, : self.num_classes]) / total)
            if total
            else float("nan"),
            "certified_pixel_accuracy_macro": macro_mean(cat_state_values(self.image_accuracy)),
            "abstain_rate_micro": float(cm[:, -1].sum() / total) if total else float("nan"),
            "abstain_rate_macro": macro_mean(cat_state_values(self.image_abstain)),
            "certified_map_iou_micro": iou,
            "certified_map_miou_micro": macro_mean(iou),  # mean over classes of the pooled IoU
            "certified_map_miou_macro": macro_mean(cat_state_values(self.image_miou)),
            "worst_case_miou_micro": worst_case_miou(*counts, int(self.n_abstained)),
            "worst_case_miou_macro": macro_mean(cat_state_values(self.image_worst_miou)),
            "certified_recall_micro": _recall(cm, self.num_classes),
        }


def _recall(cm: np.ndarray, k: int) -> np.ndarray:
    """(K,) certified recall from a (K, K + 1) confusion (rows: true class; last column: abstained)."""
    pixels = cm[:k].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pixels > 0, np.diag(cm[:k, :k]) / np.maximum(pixels, 1), np.nan)
