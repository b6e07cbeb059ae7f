"""Dataset-level certificates: a torchmetrics-style accumulator (update / compute / reset)."""

from __future__ import annotations

import numpy as np

from ..core.certificate import Certificate
from ..core.checks import check_choice, check_eps, check_ignore_index, check_lipschitz, check_no_options
from ..core.errors import LipcertError
from ..worst_case.evaluate import evaluate_iou, evaluate_unit
from ..worst_case.iou import dinkelbach_min_ratio, iou_frontiers, mean_over_classes
from ..worst_case.registry import IOU_METRICS, METRICS, build_certificate
from ..worst_case.unit import unit_values


class CertifiedMetric:
    """Accumulate a certified metric over a dataset, each image attacked with its own eps.

    ``average="micro"`` pools pixels over all images (sum of numerators / sum of denominators);
    ``average="macro"`` is the mean over images of per-image values (images where the value is
    undefined, e.g. a class absent from an image, are left out of that mean). The two answer different
    questions and are never compared with each other; every printed number names one.

    Unit-value metrics keep O(E * K) numbers. Pooled (micro) IoU / mIoU is not a sum of per-image worst
    cases (the minimiser of a pooled ratio can differ per image): the accumulator keeps each image's
    frontier of (TP removed, FP added) choices, reduced to its upper convex hull (the only points a
    ratio minimiser can use), and solves ``min sum N_i / sum D_i`` exactly by Dinkelbach in
    :meth:`compute`. Images where a class is absent still count: false positives can be added there.

    Args:
        metric: a metric name (see :func:`lipcert.certify_logits`).
        eps: a radius or sequence of radii (l2, [0,1] pixel units).
        lipschitz: the Lipschitz constant L (required).
        ignore_index: label excluded from every count, or None.
        average: ``"micro"`` or ``"macro"``.
        lipschitz_source: recorded provenance of L (as in :func:`lipcert.certify_logits`).

    Examples:
        >>> import torch
        >>> acc = CertifiedMetric("pixel_accuracy", [0.0, 1.0], lipschitz=1.0)
        >>> acc.update(torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]]), torch.tensor([[[0, 0]]]))
        >>> acc.compute().worst.tolist()
        [1.0, 0.5]
    """

    def __init__(
        self,
        metric: str,
        eps,
        *,
        lipschitz: float,
        ignore_index: int | None = 255,
        average: str = "micro",
        lipschitz_source: str = "declared",
        **metric_options,
    ) -> None:
        check_no_options(metric_options, metric)
        self.metric = check_choice(metric, METRICS, "metric")
        self.eps = check_eps(eps)
        self.lipschitz = check_lipschitz(lipschitz)
        self.ignore_index = check_ignore_index(ignore_index)
        self.average = check_choice(average, ("micro", "macro"), "average")
        if not isinstance(lipschitz_source, str):
            raise LipcertError(f"Expected `lipschitz_source` to be a string, but got {lipschitz_source!r}.")
        self.lipschitz_source = lipschitz_source
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._state: dict[str, list[np.ndarray]] = {}  # name -> [numerator sum, denominator sum]
        self._frontiers: dict = {}
        self._n_images = 0
        self._num_classes: int | None = None

    def _check_classes(self, logits) -> None:
        """Every batch must have the class count of the first (the states are per class)."""
        k = int(logits.shape[1]) if getattr(logits, "ndim", 0) == 4 else None
        if k is not None and self._num_classes is not None and k != self._num_classes:
            raise LipcertError(
                f"Expected logits with K={self._num_classes} classes like the earlier batches, but got K={k} "
                "(call reset() to start another dataset)."
            )
        if k is not None and self._num_classes is None:
            self._num_classes = k

    def _add(self, name: str, num, den) -> None:
        num, den = np.asarray(num, dtype=np.float64), np.broadcast_to(np.asarray(den, dtype=np.float64), np.shape(num))
        if name in self._state:
            self._state[name][0] = self._state[name][0] + num
            self._state[name][1] = self._state[name][1] + den
        else:
            self._state[name] = [num.copy(), den.copy()]

    def _add_macro(self, name: str, values: np.ndarray) -> None:
        """Per-image values (B, ...): sum of the defined ones and how many there are."""
        self._add(name, np.nansum(values, 0), (~np.isnan(values)).sum(0))

    def update(self, logits, target=None) -> None:
        """Add a batch: logits (B, K, H, W) float, target (B, H, W) int (see certify_logits)."""
        self._check_classes(logits)
        if self.metric in IOU_METRICS:
            self._update_iou(logits, target)
            return
        ev, _ = evaluate_unit(logits, target, self.eps, self.metric, self.lipschitz, self.ignore_index)
        self._n_images += ev.den.shape[0]
        den_e = ev.den[:, None, :]
        if self.average == "micro":
            self._add("worst", ev.worst_num.sum(0), ev.den.sum(0)[None, :])
            self._add("naive", ev.naive_num.sum(0), ev.den.sum(0)[None, :])
            self._add("clean", ev.clean_num.sum(0), ev.den.sum(0))
        else:
            self._add_macro("worst", unit_values(ev.worst_num, den_e, False))
            self._add_macro("naive", unit_values(ev.naive_num, den_e, False))
            self._add_macro("clean", unit_values(ev.clean_num, ev.den, False))

    def _update_iou(self, logits, target) -> None:
        macro = self.average == "macro"  # pooled values only need the sorted costs, not per-image sweeps
        problem, worst, naive, clean, _, _ = evaluate_iou(
            logits, target, self.eps, self.metric, self.lipschitz, self.ignore_index, per_image=macro
        )
        self._n_images += problem.n_images
        if macro:
            for name, values in (("worst", worst), ("naive", naive), ("clean", clean)):
                self._add_macro(name, values)
            return
        b, k = problem.n_images, problem.n_classes
        a = problem.tp_single.reshape(b, k, -1)
        bb = problem.fp_single.reshape(b, k, -1)
        tp0, union0 = problem.tp0.reshape(b, k), problem.union0.reshape(b, k)
        self._add("naive", (tp0[:, :, None] - a).sum(0).T, (union0[:, :, None] + bb).sum(0).T)  # (E, K)
        self._add("clean", tp0.sum(0), union0.sum(0))
        for key, part in iou_frontiers(problem).items():
            self._frontiers.setdefault(key, []).append(part)

    def _value(self, name: str) -> np.ndarray:
        num, den = self._state[name]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def _pooled_iou(self) -> np.ndarray:
        """(E, K) exact pooled worst IoU by Dinkelbach over the stored frontiers."""
        worst = np.full((len(self.eps), self._state["clean"][0].shape[0]), np.nan)
        for (e, k), parts in self._frontiers.items():
            num, den, lens = (np.concatenate([p[j] for p in parts]) for j in range(3))
            worst[e, k], _ = dinkelbach_min_ratio(num, den, lens)
        return worst

    def compute(self) -> Certificate:
        """The dataset-level Certificate: ``worst`` (E,) or (E, K); ``clean`` () or (K,)."""
        if not self._state:
            raise LipcertError("CertifiedMetric.compute() called before any update().")
        iou = self.metric in IOU_METRICS
        worst = self._pooled_iou() if iou and self.average == "micro" else self._value("worst")
        naive, clean = self._value("naive"), self._value("clean")
        if self.metric == "fnr":
            worst, naive, clean = 1.0 - worst, 1.0 - naive, 1.0 - clean
        if self.metric == "miou" and self.average == "micro":
            worst, naive, clean = (mean_over_classes(v) for v in (worst, naive, clean))
        elif self.metric in ("pixel_accuracy", "stability"):
            worst, naive, clean = worst[..., 0], naive[..., 0], clean[..., 0]
        return build_certificate(
            self.metric,
            self.average,
            eps=self.eps,
            worst=worst,
            clean=clean,
            naive=naive,
            lipschitz=self.lipschitz,
            lipschitz_source=self.lipschitz_source,
            extras={"n_images": np.float64(self._n_images)},
        )
