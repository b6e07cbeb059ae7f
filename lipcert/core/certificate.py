"""The Certificate result object."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Status(str, Enum):
    """What a certificate's ``worst`` is (compares equal to its string).

    ``EXACT``: the exact optimum of the attacker's relaxed problem; ``BOUND``: a proven bound on the safe
    side; ``TIME_LIMIT``: the proven bound a solver held when its time limit stopped it.
    """

    EXACT = "exact"
    BOUND = "bound"
    TIME_LIMIT = "time_limit"

    __str__ = str.__str__
    __format__ = str.__format__


@dataclass
class Certificate:
    """Worst-case values of a metric over every l2 perturbation of norm <= eps.

    A plain (not frozen) dataclass, so that torchmetrics can carry it through its compute and forward
    caches, which rebuild dataclasses field by field.

    Attributes:
        metric: metric name (e.g. ``"pixel_accuracy"``).
        eps: float64 (E,) radii, l2 in [0,1] pixel units, in the order requested.
        worst: float64 worst reachable value: (B, E) for image-level metrics and (B, E, K) for
            per-class ones when ``average == "none"`` (one row per image); (E,) or (E, K) for dataset
            aggregates (``"macro"`` = mean over images, ``"micro"`` = pooled pixels). NaN where the
            metric is undefined. For metrics where larger is worse (``fnr``) it is the largest reachable
            value, otherwise the smallest.
        clean: float64 clean values, (B,) / (B, K), or () / (K,) for aggregates.
        naive: the per-pixel certificate (a pixel counts only if its own radius ``m / (sqrt(2) L)``
            exceeds eps), same shape as ``worst``; None when the metric has no per-pixel view.
        lipschitz: the Lipschitz constant L used.
        lipschitz_source: where L came from (``"declared"`` or ``"computed: ..."``).
        average: ``"none"`` (per image), ``"macro"`` or ``"micro"``.
        higher_is_better: True for accuracy-like metrics, False for ``fnr``.
        solver: the method that produced ``worst`` (e.g. ``"greedy (exact)"``).
        status: a :class:`Status` (compares equal to its string): ``"exact"`` when ``worst`` is the exact
            optimum of the attacker's relaxed problem, ``"bound"`` when it is a proven bound on the safe
            side, ``"time_limit"`` when a solver stopped at its limit with a proven bound.
        pixel_radius: float64 (B, H, W) per-pixel certified radii (per-image results only), else None.
        extras: metric-specific arrays (documented by each metric).
    """

    metric: str
    eps: np.ndarray
    worst: np.ndarray
    clean: np.ndarray
    naive: np.ndarray | None
    lipschitz: float
    lipschitz_source: str
    average: str
    higher_is_better: bool
    solver: str
    status: Status
    pixel_radius: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """Shapes and summaries, never whole arrays (a radius map can hold millions of values)."""

        def summary(name, a):
            if a is None:
                return f"{name}=None"
            arr = np.asarray(a, dtype=np.float64)
            v = arr
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices summarise as nan
                if self.average == "none" and v.ndim:
                    v = np.nanmean(v, axis=0)  # mean over images
                if name != "clean" and v.ndim == 2 or name == "clean" and v.ndim == 1:
                    v = np.nanmean(v, axis=-1)  # mean over classes
            values = np.atleast_1d(v)
            shown = ", ".join(f"{x:.4g}" for x in values[:6]) + (", ..." if values.size > 6 else "")
            what = "mean over images" if self.average == "none" else self.average
            img = int(self.average == "none")
            per_class = arr.ndim > 1 + img or (name == "clean" and arr.ndim == 1 + img)
            return f"{name} {tuple(arr.shape)} ({what}{', mean over classes' if per_class else ''}: {shown})"

        eps = ", ".join(f"{e:g}" for e in np.atleast_1d(self.eps)[:6]) + (", ..." if np.size(self.eps) > 6 else "")
        parts = [
            f"metric={self.metric!r}",
            f"average={self.average!r}",
            f"status={self.status!r}",
            f"solver={self.solver!r}",
            f"L={self.lipschitz:.6g} ({self.lipschitz_source})",
            f"eps=[{eps}]",
            summary("worst", self.worst),
            summary("clean", self.clean),
            summary("naive", self.naive),
        ]
        if self.pixel_radius is not None:
            parts.append(f"pixel_radius {tuple(np.shape(self.pixel_radius))}")
        if self.extras:
            parts.append(f"extras={sorted(self.extras)}")
        return "Certificate(" + ", ".join(parts) + ")"

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays as nested lists, NaN as None); the pixel radius map is left out."""

        def conv(a):
            if a is None:
                return None
            arr = np.asarray(a, dtype=np.float64)
            return np.where(np.isnan(arr), None, arr).tolist() if arr.ndim else (None if np.isnan(arr) else float(arr))

        return {
            "metric": self.metric,
            "eps": conv(self.eps),
            "worst": conv(self.worst),
            "clean": conv(self.clean),
            "naive": conv(self.naive),
            "lipschitz": self.lipschitz,
            "lipschitz_source": self.lipschitz_source,
            "average": self.average,
            "higher_is_better": self.higher_is_better,
            "solver": self.solver,
            "status": self.status,
            "extras": {k: conv(v) for k, v in self.extras.items()},
        }
