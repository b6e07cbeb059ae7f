"""The metric registry: one row per certified metric, read by certify, the accumulators, the CLI and the docs.

Adding a metric is one row here and its worst-case math in this package. The row says which family of
math computes it, what it needs, and how its certificate is labelled for each average; every
:class:`~lipcert.core.certificate.Certificate` of a registered metric is built by :func:`build_certificate`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..core.certificate import Certificate, Status
from ..core.checks import check_choice
from ..core.errors import LipcertWarning

GREEDY = "greedy on sorted costs (exact)"
SWEEP = "two-list sweep (exact)"
DINKELBACH = "Dinkelbach over per-image frontiers (exact)"
SPLIT = ", budget split over classes (sound bound)"
LAGRANGIAN = ", budget split over classes, Lagrangian over images (sound bound)"


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is certified.

    Attributes:
        name: the metric's name, as users pass it.
        family: ``"unit"`` (every pixel counts 1: the exact greedy) or ``"iou"`` (ratios of counts).
        needs_target: whether the certificate needs ground-truth labels.
        per_class: whether values are per class (a trailing K axis).
        higher_is_better: False where a larger value is worse (its certificate is the largest reachable).
        solvers: ``average -> (solver label, status)`` for ``"none"`` (per image), ``"macro"`` and ``"micro"``.
    """

    name: str
    family: str
    needs_target: bool
    per_class: bool
    higher_is_better: bool
    solvers: dict

    def solver(self, average: str) -> tuple[str, Status]:
        """(solver label, status) of this metric's certificate for an average."""
        return self.solvers[check_choice(average, ("none", "macro", "micro"), "average")]


def _unit(name: str, needs_target: bool, per_class: bool, higher_is_better: bool = True) -> MetricSpec:
    exact = {average: (GREEDY, Status.EXACT) for average in ("none", "macro", "micro")}
    return MetricSpec(name, "unit", needs_target, per_class, higher_is_better, exact)


REGISTRY: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _unit("pixel_accuracy", needs_target=True, per_class=False),
        _unit("stability", needs_target=False, per_class=False),
        _unit("recall", needs_target=True, per_class=True),
        _unit("fnr", needs_target=True, per_class=True, higher_is_better=False),
        MetricSpec(
            "iou", "iou", True, True, True,
            {"none": (SWEEP, Status.EXACT), "macro": (SWEEP, Status.EXACT), "micro": (DINKELBACH, Status.EXACT)},
        ),
        MetricSpec(
            "miou", "iou", True, False, True,
            {
                "none": (SWEEP + SPLIT, Status.BOUND),
                "macro": (SWEEP + SPLIT, Status.BOUND),
                "micro": (DINKELBACH + LAGRANGIAN, Status.BOUND),
            },
        ),
    )
}  # fmt: skip
METRICS = tuple(REGISTRY)
UNIT_METRICS = tuple(m for m, s in REGISTRY.items() if s.family == "unit")
IOU_METRICS = tuple(m for m, s in REGISTRY.items() if s.family == "iou")


def metric_spec(metric: str) -> MetricSpec:
    """The registry row of a metric.

    Args:
        metric: a metric name (one of ``METRICS``).

    Returns:
        Its :class:`MetricSpec`.

    Raises:
        LipcertError: an unknown metric, naming the known ones.

    Examples:
        >>> metric_spec("fnr").higher_is_better
        False
    """
    return REGISTRY[check_choice(metric, METRICS, "metric")]


def build_certificate(
    metric: str,
    average: str,
    *,
    eps: np.ndarray,
    worst: np.ndarray,
    clean: np.ndarray,
    naive: np.ndarray | None,
    lipschitz: float,
    lipschitz_source: str,
    pixel_radius: np.ndarray | None = None,
    extras: dict | None = None,
    solver: str | None = None,
    status: Status | str | None = None,
    higher_is_better: bool | None = None,
) -> Certificate:
    """The one place a :class:`Certificate` is built: solver, status and direction from the registry.

    Objectives outside the registry (weighted, joint mIoU) pass ``solver``, ``status`` and
    ``higher_is_better`` themselves; for a registered metric any of them given must agree in kind
    (a solver label may only be replaced, a status only weakened from exact to a bound).

    Args:
        metric: the metric's name.
        average: ``"none"`` (per image), ``"macro"`` or ``"micro"``.
        eps: float64 (E,) radii, l2 in [0,1] pixel units.
        worst: float64 worst values (see :class:`Certificate`).
        clean: float64 clean values.
        naive: the per-pixel certificate, or None.
        lipschitz: the L used.
        lipschitz_source: provenance of L.
        pixel_radius: float64 (B, H, W) per-pixel radii, or None.
        extras: metric-specific arrays.
        solver: the solver label (registered metrics: from the registry when None).
        status: ``Status.EXACT`` / ``BOUND`` / ``TIME_LIMIT`` (registered metrics: from the registry when None).
        higher_is_better: direction (registered metrics: from the registry when None).

    Returns:
        The :class:`Certificate`.

    Raises:
        LipcertError: an unknown average, or an objective outside the registry without solver/status.

    Warns:
        LipcertWarning: when the status is ``time_limit`` (the value is a proven bound, not the optimum).

    Examples:
        >>> import numpy as np
        >>> c = build_certificate("stability", "micro", eps=np.array([0.1]), worst=np.array([0.9]),
        ...                       clean=np.array(1.0), naive=None, lipschitz=1.0, lipschitz_source="declared")
        >>> c.solver, str(c.status)
        ('greedy on sorted costs (exact)', 'exact')
    """
    check_choice(average, ("none", "macro", "micro"), "average")
    if metric in REGISTRY:
        spec = REGISTRY[metric]
        label, registered = spec.solver(average)
        solver = label if solver is None else solver
        status = registered if status is None or registered is Status.BOUND else Status(status)
        higher_is_better = spec.higher_is_better if higher_is_better is None else higher_is_better
    elif solver is None or status is None or higher_is_better is None:
        check_choice(metric, METRICS, "metric")  # raises, naming the known metrics
    if Status(status) is Status.TIME_LIMIT:
        warnings.warn(
            LipcertWarning(
                f"{metric}: a solver stopped at its time limit; `worst` holds the proven bound it had reached "
                "(sound, not the optimum; status 'time_limit'). Raise `time_limit` for the exact value."
            ),
            stacklevel=3,
        )
    return Certificate(
        metric=metric,
        eps=eps,
        worst=worst,
        clean=clean,
        naive=naive,
        lipschitz=lipschitz,
        lipschitz_source=lipschitz_source,
        average=average,
        higher_is_better=bool(higher_is_better),
        solver=solver,
        status=Status(status),
        pixel_radius=pixel_radius,
        extras={} if extras is None else extras,
    )
