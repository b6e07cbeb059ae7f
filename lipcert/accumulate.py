"""Dataset-level certificates: a torchmetrics-style accumulator (update / compute / reset)."""

from __future__ import annotations

import numpy as np

from ._checks import check_choice, check_eps, check_lipschitz
from .certificate import Certificate
from .certify import METRICS, _evaluate, _higher_is_better
from .metrics.unit import unit_values


class CertifiedMetric:
    """Accumulate a certified metric over a dataset, each image attacked with its own eps.

    ``average="micro"`` pools pixels over all images (sum of numerators / sum of denominators);
    ``average="macro"`` is the mean over images of per-image values (images where the value is
    undefined, e.g. a class absent from an image's ground truth, are left out of that mean). The two
    answer different questions and are never compared with each other; every printed number names one.
    Memory is O(E * K) whatever the number of images.

    Args:
        metric: a metric name (see :func:`lipcert.certify_logits`).
        eps: a radius or sequence of radii (l2, [0,1] pixel units).
        lipschitz: the Lipschitz constant L (required).
        ignore_index: label excluded from every count, or None.
        average: ``"micro"`` or ``"macro"``.

    Example:
        >>> import torch
        >>> acc = CertifiedMetric("pixel_accuracy", [0.0, 1.0], lipschitz=1.0)
        >>> acc.update(torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]]), torch.tensor([[[0, 0]]]))
        >>> acc.compute().worst.tolist()
        [1.0, 0.5]
    """

    def __init__(self, metric: str, eps, *, lipschitz: float, ignore_index: int | None = 255,
                 average: str = "micro") -> None:
        self.metric = check_choice(metric, METRICS, "metric")
        self.eps = check_eps(eps)
        self.lipschitz = check_lipschitz(lipschitz)
        self.ignore_index = ignore_index
        self.average = check_choice(average, ("micro", "macro"), "average")
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._worst = self._naive = self._clean = self._den = None
        self._n_images = 0

    def update(self, logits, target=None) -> None:
        """Add a batch: logits (B, K, H, W) float, target (B, H, W) int (see certify_logits)."""
        ev = _evaluate(logits, target, self.eps, self.metric, self.lipschitz, self.ignore_index)
        self._per_class = ev.per_class
        self._complement = ev.complement
        if self.average == "micro":
            parts = (ev.worst_num.sum(0), ev.naive_num.sum(0), ev.clean_num.sum(0), ev.den.sum(0))
        else:  # macro: sums of defined per-image values and how many images define them
            den_e = ev.den[:, None, :]
            values = [unit_values(ev.worst_num, den_e, False), unit_values(ev.naive_num, den_e, False),
                      unit_values(ev.clean_num, ev.den, False)]
            parts = tuple(np.nansum(v, 0) for v in values) + ((ev.den > 0).sum(0).astype(np.float64),)
        if self._worst is None:
            self._worst, self._naive, self._clean, self._den = (np.array(p, dtype=np.float64) for p in parts)
        else:
            for name, p in zip(("_worst", "_naive", "_clean", "_den"), parts, strict=True):
                setattr(self, name, getattr(self, name) + p)
        self._n_images += ev.den.shape[0]

    def compute(self) -> Certificate:
        """The dataset-level Certificate: ``worst`` (E,) or (E, K); ``clean`` () or (K,)."""
        if self._worst is None:
            raise ValueError("CertifiedMetric.compute() called before any update().")
        den = self._den
        out = [unit_values(self._worst, den[None, :], self._complement),
               unit_values(self._naive, den[None, :], self._complement),
               unit_values(self._clean, den, self._complement)]
        if not self._per_class:
            out = [o[..., 0] for o in out]
        return Certificate(
            metric=self.metric, eps=self.eps, worst=out[0], clean=out[2], naive=out[1],
            lipschitz=self.lipschitz, lipschitz_source="declared", average=self.average,
            higher_is_better=_higher_is_better(self.metric), solver="greedy on sorted costs (exact)",
            status="exact", extras={"n_images": np.float64(self._n_images)},
        )
