"""Dataset-level certificates: a ``torchmetrics.Metric`` (update / compute / reset / forward, synchronised)."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from ..core.aggregate import micro_ratio
from ..core.certificate import Certificate
from ..core.checks import check_choice, check_eps, check_ignore_index, check_lipschitz, check_no_options
from ..core.errors import LipcertError
from ..worst_case.evaluate import evaluate_iou, evaluate_unit
from ..worst_case.iou import dinkelbach_min_ratio, iou_frontiers, mean_over_classes
from ..worst_case.miou_pooled import pooled_split_miou
from ..worst_case.registry import METRICS, build_certificate, metric_spec
from ..worst_case.unit import budgets_of, unit_values
from .states import cat_state_values

# the keyword arguments of torchmetrics.Metric (distributed and device behaviour), passed through
METRIC_KWARGS = (
    "compute_on_cpu",
    "dist_sync_on_step",
    "process_group",
    "dist_sync_fn",
    "distributed_available_fn",
    "sync_on_compute",
    "compute_with_cache",
)
_PARTS = ("worst", "naive", "clean")
_FRONTIER = ("frontier_num", "frontier_den", "frontier_len", "frontier_key")
_SPLIT = ("split_tp_costs", "split_tp_prefix", "split_tp_len", "split_fp_costs", "split_fp_prefix", "split_fp_len")


def _flat(values) -> torch.Tensor:
    """A float64 1-D tensor of an array's values (counts are exact: every count is far below 2**53)."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64).reshape(-1).copy())


def _running_sum(flat: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum of the parts of shape ``shape`` stored one after another, added in their stored order."""
    parts = flat.reshape((-1, *shape))
    total = parts[0].copy()
    for part in parts[1:]:
        total = total + part
    return total


class CertifiedMetric(Metric):
    """Accumulate a certified metric over a dataset, each image attacked with its own eps.

    ``average="micro"`` pools pixels over all images (sum of numerators / sum of denominators);
    ``average="macro"`` is the mean over images of per-image values (images where the value is
    undefined, e.g. a class absent from an image, are left out of that mean). The two answer different
    questions and are never compared with each other; every printed number names one.

    A ``torchmetrics.Metric``: states are registered with ``add_state`` and gathered across processes
    (``dist_reduce_fx="cat"`` for the per-batch parts and the IoU frontiers, ``"sum"`` for the image
    count), so under ``torchrun`` each process updates its shard and :meth:`compute` answers for the whole
    dataset. Micro values are ratios of integer counts and pooled IoU is solved in integer arithmetic, so
    they are identical for any number of processes; macro values are sums of per-image ratios, identical
    in one process and equal to the last few ulps across processes (the order of the additions differs).

    Unit-value metrics keep O(E * K) numbers per batch. Pooled (micro) IoU / mIoU is not a sum of
    per-image worst cases (the minimiser of a pooled ratio can differ per image): the metric keeps each
    image's frontier of (TP removed, FP added) choices, reduced to its upper convex hull (the only points
    a ratio minimiser can use), and solves ``min sum N_i / sum D_i`` exactly by Dinkelbach in
    :meth:`compute`. Images where a class is absent still count: false positives can be added there.

    Args:
        metric: a metric name (see :func:`lipcert.certify_logits`).
        eps: a radius or sequence of radii (l2, [0,1] pixel units).
        lipschitz: the Lipschitz constant L (required).
        ignore_index: label excluded from every count, or None.
        average: ``"micro"`` or ``"macro"``.
        lipschitz_source: recorded provenance of L (as in :func:`lipcert.certify_logits`).
        kwargs: the distributed options of ``torchmetrics.Metric`` (``process_group``,
            ``sync_on_compute``, ...); anything else is refused.

    Raises:
        LipcertError: an unknown metric, average or option; eps or L out of range.

    Examples:
        >>> import torch
        >>> acc = CertifiedMetric("pixel_accuracy", [0.0, 1.0], lipschitz=1.0)
        >>> acc.update(torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]]), torch.tensor([[[0, 0]]]))
        >>> acc.compute().worst.tolist()
        [1.0, 0.5]
    """

    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        metric: str,
        eps,
        *,
        lipschitz: float,
        ignore_index: int | None = 255,
        average: str = "micro",
        lipschitz_source: str = "declared",
        **kwargs,
    ) -> None:
        check_no_options({k: v for k, v in kwargs.items() if k not in METRIC_KWARGS}, metric)
        super().__init__(**kwargs)
        self.metric = check_choice(metric, METRICS, "metric")
        self.eps = check_eps(eps)
        self.lipschitz = check_lipschitz(lipschitz)
        self.ignore_index = check_ignore_index(ignore_index)
        self.average = check_choice(average, ("micro", "macro"), "average")
        if not isinstance(lipschitz_source, str):
            raise LipcertError(f"Expected `lipschitz_source` to be a string, but got {lipschitz_source!r}.")
        self.lipschitz_source = lipschitz_source
        for part in _PARTS:
            self.add_state(f"{part}_num", default=[], dist_reduce_fx="cat", persistent=True)
            self.add_state(f"{part}_den", default=[], dist_reduce_fx="cat", persistent=True)
        for name in _FRONTIER + _SPLIT:
            self.add_state(name, default=[], dist_reduce_fx="cat", persistent=True)
        self.add_state("classes", default=[], dist_reduce_fx="cat", persistent=True)  # K of every batch
        self.add_state("n_images", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum",
                       persistent=True)  # fmt: skip

    @property
    def higher_is_better(self) -> bool:  # noqa: D102 - torchmetrics' attribute, from the registry
        return metric_spec(self.metric).higher_is_better

    def _shapes(self, k: int) -> dict:
        """Shape of one batch's part of each state, given K classes."""
        spec = metric_spec(self.metric)
        if spec.family == "unit":
            trailing = (k,) if spec.per_class else (1,)
        else:
            trailing = () if (self.metric == "miou" and self.average == "macro") else (k,)
        e = (len(self.eps),)
        return {"worst": e + trailing, "naive": e + trailing, "clean": trailing}

    def _check_classes(self, logits) -> None:
        """Every batch must have the class count of the first (the states are per class)."""
        k = int(logits.shape[1]) if getattr(logits, "ndim", 0) == 4 else None
        state = self.classes  # a list of (1,) tensors, or one tensor once synchronised
        first = (state[0] if state else None) if isinstance(state, list) else state
        seen = int(first.reshape(-1)[0]) if first is not None and first.numel() else None  # the first K is enough
        if k is not None and seen is not None and k != seen:
            raise LipcertError(
                f"Expected logits with K={seen} classes like the earlier batches, but got K={k} "
                "(call reset() to start another dataset)."
            )

    def _add(self, name: str, num, den) -> None:
        num = np.asarray(num, dtype=np.float64)
        den = np.broadcast_to(np.asarray(den, dtype=np.float64), np.shape(num))
        getattr(self, f"{name}_num").append(_flat(num).to(self.device))
        getattr(self, f"{name}_den").append(_flat(den).to(self.device))

    def _add_macro(self, name: str, values: np.ndarray) -> None:
        """Per-image values (B, ...): sum of the defined ones and how many there are."""
        self._add(name, np.nansum(values, 0), (~np.isnan(values)).sum(0))

    def update(self, logits, target=None) -> None:
        """Add a batch: logits (B, K, H, W) float, target (B, H, W) int (see certify_logits)."""
        self._check_classes(logits)
        if metric_spec(self.metric).family == "iou":
            n = self._update_iou(logits, target)
        else:
            n = self._update_unit(logits, target)
        self.classes.append(torch.tensor([float(logits.shape[1])], dtype=torch.float64, device=self.device))
        self.n_images += n

    def _update_unit(self, logits, target) -> int:
        ev, _ = evaluate_unit(logits, target, self.eps, self.metric, self.lipschitz, self.ignore_index)
        den_e = ev.den[:, None, :]
        if self.average == "micro":
            self._add("worst", ev.worst_num.sum(0), ev.den.sum(0)[None, :])
            self._add("naive", ev.naive_num.sum(0), ev.den.sum(0)[None, :])
            self._add("clean", ev.clean_num.sum(0), ev.den.sum(0))
        else:
            self._add_macro("worst", unit_values(ev.worst_num, den_e, False))
            self._add_macro("naive", unit_values(ev.naive_num, den_e, False))
            self._add_macro("clean", unit_values(ev.clean_num, ev.den, False))
        return ev.den.shape[0]

    def _update_iou(self, logits, target) -> int:
        macro = self.average == "macro"  # pooled values only need the sorted costs, not per-image sweeps
        problem, worst, naive, clean, _, _ = evaluate_iou(
            logits, target, self.eps, self.metric, self.lipschitz, self.ignore_index, per_image=macro
        )
        if macro:
            for name, values in (("worst", worst), ("naive", naive), ("clean", clean)):
                self._add_macro(name, values)
            return problem.n_images
        b, k = problem.n_images, problem.n_classes
        a = problem.tp_single.reshape(b, k, -1)
        bb = problem.fp_single.reshape(b, k, -1)
        tp0, union0 = problem.tp0.reshape(b, k), problem.union0.reshape(b, k)
        self._add("naive", (tp0[:, :, None] - a).sum(0).T, (union0[:, :, None] + bb).sum(0).T)  # (E, K)
        self._add("clean", tp0.sum(0), union0.sum(0))
        frontiers = iou_frontiers(problem)
        parts = [(num, den, lens, np.full(len(lens), e * k + c)) for (e, c), (num, den, lens) in frontiers.items()]
        for name, j in zip(_FRONTIER, range(4), strict=True):
            getattr(self, name).append(_flat(np.concatenate([p[j] for p in parts])).to(self.device))
        if self.metric == "miou":  # the pooled budget split needs every kept cost
            tp_len, fp_len = np.diff(problem.tp_offsets), np.diff(problem.fp_offsets)
            lists = (problem.tp_costs, problem.tp_prefix, tp_len, problem.fp_costs, problem.fp_prefix, fp_len)
            for name, values in zip(_SPLIT, lists, strict=True):
                getattr(self, name).append(_flat(values).to(self.device))
        return b

    def _value(self, name: str, shape: tuple) -> np.ndarray:
        num = _running_sum(cat_state_values(getattr(self, f"{name}_num")), shape)
        den = _running_sum(cat_state_values(getattr(self, f"{name}_den")), shape)
        return micro_ratio(num, den)

    def _pooled_iou(self, k: int) -> np.ndarray:
        """(E, K) exact pooled worst IoU by Dinkelbach over the stored frontiers."""
        num, den = (cat_state_values(getattr(self, n)).astype(np.int64) for n in _FRONTIER[:2])
        lens, keys = (cat_state_values(getattr(self, n)).astype(np.int64) for n in _FRONTIER[2:])
        row_key = np.repeat(keys, lens)
        worst = np.full((len(self.eps), k), np.nan)
        for e in range(len(self.eps)):
            for c in range(k):
                rows = row_key == e * k + c
                worst[e, c], _ = dinkelbach_min_ratio(num[rows], den[rows], lens[keys == e * k + c])
        return worst

    def compute(self) -> Certificate:
        """The dataset-level Certificate: ``worst`` (E,) or (E, K); ``clean`` () or (K,).

        Raises:
            LipcertError: before any update, or when processes saw different class counts.
        """
        classes = np.unique(cat_state_values(self.classes))
        if classes.size == 0:
            raise LipcertError("CertifiedMetric.compute() called before any update().")
        if classes.size > 1:
            raise LipcertError(f"Expected every batch (on every process) to have the same K, but got {classes}.")
        k = int(classes[0])
        shapes = self._shapes(k)
        pooled_iou = metric_spec(self.metric).family == "iou" and self.average == "micro"
        worst = self._pooled_iou(k) if pooled_iou else self._value("worst", shapes["worst"])
        naive, clean = self._value("naive", shapes["naive"]), self._value("clean", shapes["clean"])
        if self.metric == "fnr":
            worst, naive, clean = 1.0 - worst, 1.0 - naive, 1.0 - clean
        extras = {"n_images": np.float64(self.n_images.item())}
        if self.metric == "miou" and self.average == "micro":
            extras["mean_of_classes"] = mean_over_classes(worst)
            worst = self._pooled_split(k, extras["mean_of_classes"])
            naive, clean = mean_over_classes(naive), mean_over_classes(clean)
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
            extras=extras,
        )

    def _pooled_split(self, k: int, mean_of_classes: np.ndarray) -> np.ndarray:
        """(E,) the pooled mIoU bound of the Lagrangian budget split (``worst_case.miou_pooled``)."""
        tp_c, tp_p, tp_n, fp_c, fp_p, fp_n = (cat_state_values(getattr(self, name)) for name in _SPLIT)
        tp = _running_sum(cat_state_values(self.clean_num), (k,)).astype(np.int64)
        union = _running_sum(cat_state_values(self.clean_den), (k,)).astype(np.int64)
        tp_lists, fp_lists = (tp_c, tp_p, tp_n.astype(np.int64)), (fp_c, fp_p, fp_n.astype(np.int64))
        return pooled_split_miou(tp_lists, fp_lists, tp, union, k, budgets_of(self.eps), mean_of_classes)
