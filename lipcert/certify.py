"""The entry points: certify a model (one forward pass) or a logit tensor, Q1 and Q2."""

from __future__ import annotations

import numpy as np
import torch

from .core.certificate import Certificate
from .core.checks import (
    check_choice,
    check_eps,
    check_ignore_index,
    check_images,
    check_levels,
    check_lipschitz,
    check_no_options,
)
from .core.errors import LipcertError, LipschitzBoundError
from .core.model_state import eval_mode
from .lipschitz import export_plain, lipschitz_bound
from .worst_case.evaluate import evaluate_iou, evaluate_unit, unit_problem
from .worst_case.registry import METRICS, UNIT_METRICS, build_certificate, metric_spec
from .worst_case.unit import unit_radius

__all__ = ["METRICS", "certified_radius", "certify", "certify_logits", "check_reproduces"]


def certify_logits(
    logits,
    eps,
    metric: str,
    target=None,
    *,
    lipschitz: float,
    ignore_index: int | None = 255,
    lipschitz_source: str = "declared",
    **metric_options,
) -> Certificate:
    """Worst value of a metric for each image over every perturbation with ``||delta||_2 <= eps`` (Q1).

    The logits must come from a network that is ``lipschitz``-Lipschitz (l2) from the input image in
    [0,1] pixel units to its whole logit map. The answer is exact for the relaxed attacker who may move
    the logits anywhere in the ball of radius ``L * eps`` (see docs/certificates.md).

    Args:
        logits: (B, K, H, W) float logits (torch or numpy, any float dtype; float64 inside).
        eps: a radius or a 1-D sequence of E radii, l2 in [0,1] pixel units, each >= 0.
        metric: ``"pixel_accuracy"``, ``"stability"``, ``"recall"``, ``"fnr"``, ``"iou"`` (per class,
            exact) or ``"miou"`` (a sound lower bound: the classes share the attacker's budget, each
            changed pixel hurting at most two of them; never below the mean of per-class worst cases;
            see docs/math.md, and :func:`lipcert.joint_miou` for the exact joint value on small images).
        target: int (B, H, W) labels in [0, K) or ``ignore_index``; required except for stability
            (where it only masks ignored pixels).
        lipschitz: the Lipschitz constant L (required, never defaulted).
        ignore_index: label excluded from every count, or None.
        lipschitz_source: recorded provenance of L.
        metric_options: options of the metric; the built-in metrics take none, so any given is refused
            (weighted objectives: :func:`lipcert.certify_weighted`).

    Returns:
        A :class:`Certificate` with ``worst`` (B, E) for pixel_accuracy / stability / miou, (B, E, K) for
        recall / fnr / iou (NaN where class k is undefined: absent from the image's ground truth for
        recall / fnr; union that stays empty for iou; or an image without valid pixels), ``clean`` (B,)
        or (B, K), ``naive`` (the per-pixel certificate) and the per-pixel radius map ``pixel_radius``
        (B, H, W).

    Raises:
        LipcertError: NaN/Inf or integer logits, bad shapes, labels out of range, eps < 0, L <= 0,
            unknown metric.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]])  # 1 image, 2 classes, 1x2 pixels
        >>> cert = certify_logits(logits, [0.0, 1.5, 3.0], "pixel_accuracy", torch.tensor([[[0, 0]]]),
        ...                       lipschitz=1.0)
        >>> cert.worst.tolist()
        [[1.0, 0.5, 0.0]]
    """
    check_no_options(metric_options, metric)
    ignore_index = check_ignore_index(ignore_index)
    L = check_lipschitz(lipschitz)
    e = check_eps(eps)
    spec = metric_spec(metric)
    if spec.family == "iou":
        _, worst, naive, clean, margin, extras = evaluate_iou(logits, target, e, metric, L, ignore_index)
        radius = margin / (np.sqrt(2.0) * L)
    else:
        ev, shape = evaluate_unit(logits, target, e, metric, L, ignore_index)
        squeeze = (lambda a: a) if spec.per_class else (lambda a: a[..., 0])
        worst, clean, naive = squeeze(ev.worst), squeeze(ev.clean), squeeze(ev.naive)
        radius, extras = ev.radius.reshape(shape), {}
    return build_certificate(
        metric,
        "none",
        eps=e,
        worst=worst,
        clean=clean,
        naive=naive,
        lipschitz=L,
        lipschitz_source=lipschitz_source,
        pixel_radius=radius,
        extras=extras,
    )


def certified_radius(
    logits,
    metric: str,
    target=None,
    *,
    lipschitz: float,
    level=None,
    drop=None,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """Q2: the smallest eps at which each image's metric can be pushed to a level (a certified radius).

    Below the returned radius no perturbation reaches the level; at it the relaxed attacker can.
    Examples: pixel accuracy down by 30 points is ``drop=0.3``; FNR of every class >= 0.5 is
    ``metric="fnr", level=0.5``; robustness@alpha (a fraction alpha of pixels changed) is
    ``metric="stability", level=1 - alpha``; a fraction alpha of pixels wrong is
    ``metric="pixel_accuracy", level=1 - alpha``.

    Args:
        logits: (B, K, H, W) float logits.
        metric: a unit-value metric (see :func:`certify_logits`).
        target: int (B, H, W) labels (not needed for stability).
        lipschitz: L (required).
        level: values in [0, 1] to reach (``<=`` level, or ``>=`` for fnr). Exactly one of level/drop.
        drop: falls (rises for fnr) from each image's clean value, in [0, 1].
        ignore_index: label excluded from every count, or None.

    Returns:
        float64 (B, Lv) or (B, Lv, K) for per-class metrics: radii in l2 [0,1] pixel units; 0 where
        the level already holds, inf where it is unreachable, NaN where the metric is undefined.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]])
        >>> certified_radius(logits, "pixel_accuracy", torch.tensor([[[0, 0]]]), lipschitz=1.0,
        ...                  level=0.5).round(4).tolist()
        [[0.7071]]
    """
    ignore_index = check_ignore_index(ignore_index)
    L = check_lipschitz(lipschitz)
    if (level is None) == (drop is None):
        raise LipcertError("Pass exactly one of `level` and `drop`.")
    check_choice(metric, UNIT_METRICS, "metric (Q2 radii are exact for unit-value metrics)")
    levels = check_levels(level if drop is None else drop, "level" if drop is None else "drop")
    problem, _ = unit_problem(logits, target, metric, L, ignore_index)
    radius = unit_radius(problem, levels, drop is not None)
    return radius if metric_spec(metric).per_class else radius[..., 0]


def certify(
    model: torch.nn.Module,
    x: torch.Tensor,
    eps,
    metric: str,
    target=None,
    lipschitz: float | None = None,
    *,
    ignore_index: int | None = 255,
    allow_outside_unit: bool = False,
) -> Certificate:
    """Certify a model on a batch with ONE forward pass, then :func:`certify_logits`.

    The model runs in eval mode under ``torch.no_grad()``; its previous mode (of every submodule) is
    restored.

    Args:
        model: a segmentation network mapping (B, C, H, W) images in [0,1] to (B, K, H, W) logits.
        x: float (B, C, H, W) images in [0, 1].
        eps: as in :func:`certify_logits`.
        metric: as in :func:`certify_logits`.
        target: as in :func:`certify_logits`.
        ignore_index: as in :func:`certify_logits`.
        lipschitz: a declared L. With None, the model is frozen (:func:`lipcert.models.export_plain`) and
            the guaranteed bound :func:`lipcert.lipschitz_bound` is computed from those frozen weights,
            which are also the ones that run (after checking that they reproduce the model's logits on
            ``x``); a model whose bound cannot be computed is refused (never assumed 1-Lipschitz).
        allow_outside_unit: certify images with values outside [0, 1] (e.g. already normalised). eps and
            L are then in the units of those values, not of [0,1] pixels; off by default, because a
            [0, 255] or normalised image silently changes what eps means.

    Returns:
        A :class:`Certificate` as in :func:`certify_logits`.

    Raises:
        LipcertError: a model that is not an ``nn.Module``, images that are not float (B, C, H, W) in
            [0, 1], and every error of :func:`certify_logits`.
        LipschitzBoundError: no bound can be computed (unknown layers, ...), or the frozen copy does not
            reproduce the model's logits.

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 1, bias=False)
        >>> cert = certify(net, torch.rand(1, 1, 4, 4), 0.1, "stability")
        >>> cert.lipschitz_source.startswith("computed")
        True
    """
    if not isinstance(model, torch.nn.Module):
        raise LipcertError(f"Expected `model` to be a torch.nn.Module, but got {type(model).__name__}.")
    x = check_images(x, allow_outside_unit=allow_outside_unit)
    if lipschitz is None:
        # bound and forward use the same frozen weights (parametrisations may change state per access)
        frozen = export_plain(model)
        L = lipschitz_bound(frozen, tuple(x.shape[1:]))
        source = "computed: lipcert.lipschitz_bound"
        with eval_mode(model), torch.no_grad():
            reference = model(x)
            logits = frozen(x)
        check_reproduces(reference, logits)
    else:
        L, source = check_lipschitz(lipschitz), "declared"
        with eval_mode(model), torch.no_grad():
            logits = model(x)
    return certify_logits(logits, eps, metric, target, lipschitz=L, ignore_index=ignore_index, lipschitz_source=source)


def check_reproduces(reference, logits) -> None:
    """Refuse to certify a frozen copy whose logits differ from the caller's model on the input.

    Raises:
        LipschitzBoundError: when the outputs differ in type or shape, or by more than float rounding
            (1e-4 of the largest logit, plus 1e-6).
    """
    if not isinstance(reference, torch.Tensor) or not isinstance(logits, torch.Tensor):
        raise LipcertError(
            f"Expected the model to return one logit tensor (B, K, H, W), but it returned {type(reference).__name__}."
        )
    if reference.shape != logits.shape:
        raise LipschitzBoundError("The frozen copy of the model gives logits of another shape: nothing is certified.")
    tol = 1e-4 * float(reference.abs().max()) + 1e-6
    diff = float((reference.double() - logits.double()).abs().max())
    if not diff <= tol:
        raise LipschitzBoundError(
            f"The frozen copy of the model (lipcert.lipschitz.export_plain), whose bound was computed, gives "
            f"logits that differ from the model's by {diff:.3g} on this input: it is not the same network, so "
            "nothing is certified. Declare L with `lipschitz=` for this model instead."
        )
