"""SegCertify (Fischer, Baader, Vechev, ICML 2021): randomized smoothing for segmentation, done right.

Fresh, independent Gaussian noise of std sigma for EVERY sample, added in input [0,1] space (before any
normalisation or resizing inside the model); the per-pixel mode of n0 selection samples; the counts of
that class over n estimation samples; one-sided binomial tests ``P[Bin(n, tau) >= count]``; a
multiple-testing correction over all pixels at level alpha (Holm by default); abstention where the null
is not rejected. Guarantee: with probability >= 1 - alpha, every non-abstained pixel of the
tau-thresholded smoothed segmenter keeps its label for every ``||delta||_2 < sigma * Phi^-1(tau)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.checks import check_choice, check_images, check_positive
from ..core.errors import LipcertError
from ..core.model_state import eval_mode
from ..kernels import mode_and_count
from .stats import CORRECTIONS, check_reachable, pvalue_table, radius, reject


@dataclass(frozen=True)
class SmoothingResult:
    """SegCertify output.

    Attributes:
        labels: int64 certified labels, the spatial shape of one sample ((H, W) or (B, H, W) for a batch),
            ``abstain`` where not certified.
        radius: the l2 radius ``sigma * Phi^-1(tau)`` shared by every certified pixel.
        abstain: the abstain label.
        timings: seconds spent in ``sampling``, ``testing`` (p-values) and ``correction``.
        n_forward: forward passes per image (n0 + n).
    """

    labels: np.ndarray
    radius: float
    abstain: int
    timings: dict = field(default_factory=dict)
    n_forward: int = 0


def _validate(n0: int, n: int, tau: float, alpha: float, sigma: float, correction="holm", k=1, abstain=-1) -> None:
    """Refuse every bad setting of SegCertify, naming it (before any sampling)."""
    check_positive(n0, "n0", integer=True, maximum=10**8)
    check_positive(n, "n", integer=True, maximum=10**8)
    check_positive(k, "k", integer=True)
    check_choice(correction, CORRECTIONS, "correction")
    for name, value in (("tau", tau), ("alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
            raise LipcertError(f"Expected `{name}` to be a number, but got {value!r}.")
    if not 0.5 <= tau < 1:
        raise LipcertError(f"Expected tau in [0.5, 1), but got {tau}.")
    if not 0 < alpha < 1:
        raise LipcertError(f"Expected alpha in (0, 1), but got {alpha}.")
    check_positive(sigma, "sigma")
    if isinstance(abstain, bool) or not isinstance(abstain, (int, np.integer)):
        raise LipcertError(f"Expected `abstain` to be an integer label, but got {abstain!r}.")


def _check_abstain(abstain: int, mode: np.ndarray) -> None:
    if 0 <= abstain <= int(mode.max(initial=-1)):
        raise LipcertError(
            f"The abstain label {abstain} is also a class the model predicts: use a label outside [0, K) (e.g. -1)."
        )


def _certify_counts(mode, est, n, tau, alpha, sigma, correction, k, abstain, pixels, t_sampling):
    check_reachable(tau, n, pixels, alpha, correction, k)
    t0 = time.perf_counter()
    table = pvalue_table(n, tau)  # counts take n + 1 values: every p-value is a lookup in this table
    t1 = time.perf_counter()
    certified = reject(est, n, tau, alpha, correction, k, table=table)
    t2 = time.perf_counter()
    labels = np.where(certified, mode, abstain).astype(np.int64)
    return labels, {"sampling": t_sampling, "testing": t1 - t0, "correction": t2 - t1}


def segcertify_from_samples(
    samples, n0: int, tau: float, alpha: float, sigma: float, correction: str = "holm", abstain: int = -1, k: int = 1
) -> SmoothingResult:
    """SegCertify on precomputed base-model label samples.

    Args:
        samples: int (n0 + n, ...) labels of the base model under independent noise draws; the first n0
            select each pixel's class, the remaining n estimate its probability. Any integer dtype, used
            as it is (the pass reads every sample once: uint8 labels take about half the time of int64).
        n0: selection sample count.
        tau: tested probability.
        alpha: FWER level.
        sigma: noise std.
        correction: ``"holm"``, ``"bonferroni"`` or ``"kfwer"`` (with ``k``).
        abstain: label of non-certified pixels.
        k: the k of ``"kfwer"`` (at most k false certifications).

    Returns:
        :class:`SmoothingResult` with ``labels`` of shape ``samples.shape[1:]``.

    Examples:
        >>> import numpy as np
        >>> s = np.zeros((110, 2, 2), dtype=int); s[:, 0, 0] = np.arange(110) % 2
        >>> res = segcertify_from_samples(s, n0=10, tau=0.6, alpha=0.01, sigma=0.25)
        >>> res.labels.tolist(), round(res.radius, 4)
        ([[-1, 0], [0, 0]], 0.0633)
    """
    check_positive(n0, "n0", integer=True, maximum=10**8)  # before it is compared with the sample count
    samples = np.asarray(samples)
    if samples.dtype.kind not in "iu" or samples.ndim < 2 or samples.shape[0] <= n0:
        raise LipcertError(f"Expected integer samples of shape (n0 + n, ...) with n >= 1, got {samples.shape}.")
    n = samples.shape[0] - n0
    _validate(n0, n, tau, alpha, sigma, correction, k, abstain)
    spatial = samples.shape[1:]
    flat = np.ascontiguousarray(samples.reshape(samples.shape[0], -1))
    k_classes = int(flat[:n0].max()) + 1
    mode, est, ok = mode_and_count(flat, n0, k_classes)  # one fused pass (numba)
    if not ok:
        raise LipcertError("Expected non-negative class labels in `samples`.")
    _check_abstain(abstain, mode)
    labels, timings = _certify_counts(mode, est, n, tau, alpha, sigma, correction, k, abstain, flat.shape[1], 0.0)
    return SmoothingResult(labels.reshape(spatial), radius(sigma, tau), abstain, timings, n0 + n)


def _sample_counts(model, x, sigma, n_samples, batch_size, generator, k_classes=None, target_mode=None):
    """Class counts (K, P) of one image under n_samples independent draws, or matches of ``target_mode``."""
    counts = None
    done = 0
    while done < n_samples:
        m = min(batch_size, n_samples - done)
        noise = torch.randn((m, *x.shape), generator=generator, dtype=x.dtype, device=generator.device)
        noise = noise.to(x.device)  # fresh for every sample
        with torch.no_grad():
            pred = model(x.unsqueeze(0) + sigma * noise).argmax(1).reshape(m, -1)
        if target_mode is not None:
            part = (pred == target_mode[None, :]).sum(0)
            counts = part if counts is None else counts + part
        else:
            k = k_classes or 0
            onehot = torch.zeros((max(k, int(pred.max()) + 1), pred.shape[1]), dtype=torch.int64, device=pred.device)
            onehot.scatter_add_(0, pred, torch.ones_like(pred))
            if counts is None:
                counts = onehot
            else:
                if onehot.shape[0] > counts.shape[0]:
                    extra = onehot.shape[0] - counts.shape[0]
                    counts = torch.cat([counts, counts.new_zeros(extra, counts.shape[1])])
                counts[: onehot.shape[0]] += onehot
        done += m
    return counts


def sample_counts(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int,
    n: int,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The sampling phase of SegCertify for one image: selected class and estimation counts.

    The model must already be in eval mode. The samples do not depend on tau, so one call serves every
    radius (see :func:`certify_counts`).

    Args:
        model: as in :func:`segcertify`.
        sigma: as in :func:`segcertify`.
        n0: as in :func:`segcertify`.
        n: as in :func:`segcertify`.
        batch_size: as in :func:`segcertify`.
        generator: as in :func:`segcertify`.
        x: float (C, H, W) image in [0, 1].

    Returns:
        ``(mode, counts, seconds)``: int64 (H, W) selected classes, int64 (H, W) estimation counts in
        [0, n], and the sampling time.
    """
    check_positive(n0, "n0", integer=True)
    check_positive(n, "n", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(sigma, "sigma")
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise LipcertError(f"Expected `x` to be one (C, H, W) image tensor, but got {getattr(x, 'shape', type(x))}.")
    check_images(x.unsqueeze(0), allow_outside_unit=True)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    sel = _sample_counts(model, x, sigma, n0, batch_size, gen)
    mode = sel.argmax(0)
    est = _sample_counts(model, x, sigma, n, batch_size, gen, target_mode=mode)
    hw = x.shape[-2:]
    return mode.cpu().numpy().reshape(hw), est.cpu().numpy().reshape(hw), time.perf_counter() - t0


def certify_counts(
    mode: np.ndarray,
    counts: np.ndarray,
    n: int,
    tau: float,
    alpha: float,
    sigma: float,
    correction: str = "holm",
    abstain: int = -1,
    k: int = 1,
) -> SmoothingResult:
    """The testing and correction phases of SegCertify on one image's (mode, counts).

    Returns:
        :class:`SmoothingResult` with labels of ``mode``'s shape (sampling time 0).
    """
    _validate(1, n, tau, alpha, sigma, correction, k, abstain)
    mode, counts = np.asarray(mode), np.asarray(counts)
    if mode.dtype.kind not in "iu" or counts.dtype.kind not in "iu" or mode.shape != counts.shape or mode.size == 0:
        raise LipcertError(
            f"Expected integer `mode` and `counts` of the same non-empty shape, but got {mode.dtype} {mode.shape} "
            f"and {counts.dtype} {counts.shape}."
        )
    if counts.min() < 0 or counts.max() > n or mode.min() < 0:
        raise LipcertError(
            f"Expected counts in [0, n={n}] and classes >= 0, but got counts in [{counts.min()}, {counts.max()}]."
        )
    _check_abstain(abstain, mode)
    labels, timings = _certify_counts(
        mode.ravel(), counts.ravel(), n, tau, alpha, sigma, correction, k, abstain, mode.size, 0.0
    )
    return SmoothingResult(labels.reshape(mode.shape), radius(sigma, tau), abstain, timings, 0)


def segcertify(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int,
    n: int,
    tau: float,
    alpha: float,
    correction: str = "holm",
    batch_size: int = 32,
    generator: torch.Generator | None = None,
    abstain: int = -1,
    k: int = 1,
) -> SmoothingResult:
    """SegCertify for any segmentation model, one or several images.

    Args:
        model: (B, C, H, W) images in [0,1] -> (B, K, H, W) logits; run in eval mode (restored).
        x: float (C, H, W) or (B, C, H, W) images in [0, 1]; noise is added here, in [0,1] space.
        sigma: noise std (l2 units of [0,1] pixels).
        n0: selection samples per image.
        n: estimation samples per image.
        tau: tested probability (radius ``sigma * Phi^-1(tau)``).
        alpha: FWER level.
        correction: ``"holm"`` (default), ``"bonferroni"`` or ``"kfwer"`` (with ``k``).
        batch_size: noisy samples per forward pass (memory stays bounded).
        generator: a torch.Generator for reproducible noise (drawn on its device, then moved to ``x``'s).
        abstain: label of non-certified pixels.
        k: the k of ``"kfwer"``.

    Returns:
        :class:`SmoothingResult`: labels (H, W) or (B, H, W), radius, timings (sampling / testing /
        correction, summed over images), ``n_forward`` = n0 + n per image.

    Raises:
        LipcertError: tau above the certifiable ceiling ``(alpha / P) ** (1 / n)``, n too small for alpha,
            or invalid settings.

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 1)
        >>> res = segcertify(net, torch.rand(1, 8, 8), sigma=0.25, n0=5, n=100, tau=0.6, alpha=0.01)
        >>> res.labels.shape, res.n_forward
        ((8, 8), 105)
    """
    if not isinstance(x, torch.Tensor):
        raise LipcertError(f"Expected `x` to be a torch.Tensor of images, but got {type(x).__name__}.")
    single = x.ndim == 3
    xs = check_images(x.unsqueeze(0) if single else x, allow_outside_unit=True)  # sigma is in the units of x
    _validate(n0, n, tau, alpha, sigma, correction, k, abstain)
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(sigma, "sigma")
    pixels = xs.shape[-2] * xs.shape[-1]
    check_reachable(tau, n, pixels, alpha, correction, k)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    out, totals = [], {"sampling": 0.0, "testing": 0.0, "correction": 0.0}
    with eval_mode(model):
        for img in xs:
            mode, est, t_sampling = sample_counts(model, img, sigma, n0, n, batch_size, gen)
            res = certify_counts(mode, est, n, tau, alpha, sigma, correction, abstain, k)
            out.append(res.labels)
            totals["sampling"] += t_sampling
            for key in ("testing", "correction"):
                totals[key] += res.timings[key]
    labels = out[0] if single else np.stack(out)
    return SmoothingResult(labels, radius(sigma, tau), abstain, totals, n0 + n)
