"""The statistics of SegCertify: binomial p-values, multiple-testing corrections, tau and its ceiling.

Counts of the estimation samples take only n + 1 values, so the one-sided p-values
``P[Bin(n, tau) >= c]`` form a table of n + 1 numbers (``scipy.stats.binom.sf``) and every correction
is a pass over the histogram of counts: linear in the number of pixels, no sort, no per-pixel loop.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom, norm

from ..core.errors import LipcertError

CORRECTIONS = ("holm", "bonferroni", "kfwer")


def pvalue_table(n: int, tau: float) -> np.ndarray:
    """float64 (n+1,): ``P[Bin(n, tau) >= c]`` for c = 0..n.

    Examples:
        >>> [round(float(p), 4) for p in pvalue_table(2, 0.5)]
        [1.0, 0.75, 0.25]
    """
    return binom.sf(np.arange(n + 1) - 1, n, tau)


def pvalues(counts: np.ndarray, n: int, tau: float) -> np.ndarray:
    """One-sided binomial p-values of H0: P(f = mode) <= tau, for integer counts in [0, n].

    Examples:
        >>> import numpy as np
        >>> pvalues(np.array([2, 1]), 2, 0.5).tolist()
        [0.25, 0.75]
    """
    return pvalue_table(n, tau)[counts]


def reject(
    counts: np.ndarray,
    n: int,
    tau: float,
    alpha: float,
    correction: str = "holm",
    k: int = 1,
    table: np.ndarray | None = None,
) -> np.ndarray:
    """Which pixels' null hypotheses are rejected (certified), controlling the FWER (k-FWER) at alpha.

    Args:
        counts: int (P,) estimation counts of each pixel's selected class, in [0, n].
        n: number of estimation samples.
        tau: the tested probability.
        alpha: level.
        correction: ``"holm"`` (step-down, default), ``"bonferroni"`` or ``"kfwer"`` (Lehmann-Romano
            step-down: at most ``k`` false certifications with probability >= 1 - alpha).
        k: the k of ``"kfwer"``.
        table: the p-value table of :func:`pvalue_table` when already computed.

    Returns:
        bool (P,).

    Examples:
        >>> import numpy as np
        >>> reject(np.array([100, 100, 60]), n=100, tau=0.7, alpha=0.01).tolist()
        [True, True, False]
    """
    if correction not in CORRECTIONS:
        raise LipcertError(f"Expected `correction` in {CORRECTIONS}, but got {correction!r}.")
    counts = np.asarray(counts).ravel()
    total = counts.size
    table = pvalue_table(n, tau) if table is None else table
    if correction == "bonferroni":
        return table[counts] <= alpha / total
    if correction == "holm":
        k = 1
    if k < 1:
        raise LipcertError(f"Expected k >= 1 for k-FWER, but got {k}.")
    hist = np.bincount(counts, minlength=n + 1)
    position = 0  # 0-based rank of the first pixel of the current group in ascending p-value order
    threshold_count = n + 1  # reject every count >= this
    for c in range(n, -1, -1):  # larger count = smaller p-value
        m = int(hist[c])
        if m == 0:
            continue
        i = position + 1  # 1-based rank, the group's strictest threshold
        level = k * alpha / total if i <= k else k * alpha / (total + k - i)
        if table[c] > level:
            break
        threshold_count = c
        position += m
    return counts >= threshold_count


def radius(sigma: float, tau: float) -> float:
    """Certified l2 radius ``sigma * Phi^-1(tau)`` of every certified pixel.

    Examples:
        >>> round(radius(0.25, 0.8413447), 4)
        0.25
    """
    return float(sigma * norm.ppf(tau))


def tau_for_radius(eps: float, sigma: float) -> float:
    """The tau whose radius equals ``eps``: ``Phi(eps / sigma)``.

    Examples:
        >>> round(tau_for_radius(0.25, 0.25), 4)
        0.8413
    """
    if sigma <= 0 or eps < 0:
        raise LipcertError(f"Expected sigma > 0 and eps >= 0, but got sigma={sigma}, eps={eps}.")
    return float(norm.cdf(eps / sigma))


def tau_ceiling(n: int, pixels: int, alpha: float, correction: str = "holm", k: int = 1) -> float:
    """The largest tau for which anything can be certified: ``(alpha' / P) ** (1 / n)``.

    Even a pixel where all n samples agree has p-value ``tau ** n``; Bonferroni and Holm need it below
    ``alpha / P`` for the first rejection (k-FWER: ``k alpha / P``).

    Examples:
        >>> round(tau_ceiling(100, 64 * 64, 0.001), 4)
        0.8588
    """
    level = (k if correction == "kfwer" else 1) * alpha
    return float((level / pixels) ** (1.0 / n))


def check_reachable(tau: float, n: int, pixels: int, alpha: float, correction: str = "holm", k: int = 1) -> None:
    """Raise when tau is above the ceiling (nothing could ever be certified) or n is too small for alpha.

    Examples:
        >>> check_reachable(0.8, n=100, pixels=4096, alpha=0.001)  # fine: below the ceiling 0.8588
    """
    ceiling = tau_ceiling(n, pixels, alpha, correction, k)
    if ceiling <= 0.5:
        raise LipcertError(
            f"n={n} estimation samples are too few for alpha={alpha} over {pixels} pixels: even tau=0.5 "
            f"(radius 0) cannot be certified (ceiling {ceiling:.4f}); increase n."
        )
    if tau > ceiling:
        raise LipcertError(
            f"tau={tau:.4f} is above the certifiable ceiling {ceiling:.4f} = (alpha/P)^(1/n) for n={n}, "
            f"P={pixels}, alpha={alpha}: SegCertify would abstain on every pixel (certified accuracy 0). "
            f"The largest reachable radius is sigma * {norm.ppf(ceiling):.4f}."
        )


def min_samples(tau: float, pixels: int, alpha: float) -> int:
    """Smallest n for which tau is below the ceiling.

    Examples:
        >>> min_samples(0.9, pixels=4096, alpha=0.001)
        145
    """
    return int(math.ceil(math.log(alpha / pixels) / math.log(tau)))
