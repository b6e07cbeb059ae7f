"""The two averages every reported number names: macro (mean over images) and micro (pooled counts).

One definition, used by the accumulators, the audit and the training evaluation: a value that is
undefined (a class absent from an image, an image without valid pixels) is NaN and is left out of a
macro mean; a pooled ratio with an empty denominator is NaN.
"""

from __future__ import annotations

import numpy as np


def micro_ratio(num, den) -> np.ndarray:
    """Pooled ratio ``num / den`` elementwise, NaN where ``den`` is 0.

    Args:
        num: float64 array of summed numerators (counts).
        den: float64 array of summed denominators, broadcastable to ``num``.

    Returns:
        float64 array of ratios.

    Examples:
        >>> micro_ratio(np.array([3.0, 0.0]), np.array([4.0, 0.0])).tolist()
        [0.75, nan]
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def macro_mean(values, axis=None):
    """Mean of the defined (non-NaN) values; NaN, without a warning, where none is defined.

    Args:
        values: float array of per-image (or per-class) values, NaN where undefined.
        axis: the axis averaged over (None: all values).

    Returns:
        A float (``axis=None``) or a float64 array.

    Examples:
        >>> macro_mean(np.array([0.5, np.nan, 1.0]))
        0.75
        >>> macro_mean(np.array([np.nan]))
        nan
    """
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    if axis is None:
        return float(np.nanmean(values)) if defined.any() else float("nan")
    count = defined.sum(axis)
    total = np.where(defined, values, 0.0).sum(axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
