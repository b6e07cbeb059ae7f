"""Shared input validation. Every check raises a LipcertError naming the problem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .config import EPS_RANGE, LIPSCHITZ_RANGE, LOGIT_LIMIT
from .errors import LipcertError

_INTEGER_DTYPES = frozenset(
    {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64}
)


def as_tensor(x, name: str) -> torch.Tensor:
    """Return ``x`` as a CPU torch tensor without copying when possible."""
    if isinstance(x, torch.Tensor):
        if x.requires_grad:
            x = x.detach()
        return x if x.is_cpu else x.cpu()
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError as exc:  # ragged
            raise LipcertError(f"Expected `{name}` to be a rectangular array, but got a ragged one.") from exc
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise LipcertError(f"Expected `{name}` to hold numbers, but got a numpy array of dtype {x.dtype}.")
        if any(s < 0 for s in x.strides) or not x.flags.writeable:
            x = np.array(x)  # flipped views (negative strides) and read-only arrays: torch needs a copy
        return torch.from_numpy(x)
    raise LipcertError(f"Expected `{name}` to be a torch.Tensor or numpy array, but got {type(x).__name__}.")


def check_logits(logits, finite: bool = True) -> torch.Tensor:
    """Validate a (B,K,H,W) floating logit tensor (and that it is finite, unless ``finite=False``)."""
    t = as_tensor(logits, "logits")
    if not t.is_floating_point():
        raise LipcertError(f"Expected `logits` to be a floating-point tensor, but got dtype {t.dtype}.")
    if t.ndim != 4:
        raise LipcertError(f"Expected `logits` of shape (B, K, H, W), but got shape {tuple(t.shape)}.")
    if t.shape[1] < 2:
        raise LipcertError(f"Expected at least 2 classes in `logits`, but got K={t.shape[1]}.")
    if t.shape[0] == 0 or t.shape[2] * t.shape[3] == 0:
        raise LipcertError(f"Expected at least one image with pixels, but got logits of shape {tuple(t.shape)}.")
    if finite and not bool(torch.isfinite(t).all()):
        raise_not_finite()
    return t


def raise_not_finite(logits=None) -> None:
    """Refuse logits that are NaN / Inf, or too large to certify exactly (the kernels' joint flag)."""
    if logits is not None and bool(torch.isfinite(torch.as_tensor(logits)).all()):
        raise LipcertError(
            f"Expected every logit to be below {LOGIT_LIMIT:.3g} (2**161) in magnitude, the range lipcert "
            "certifies exactly in float64, but found larger values."
        )
    raise LipcertError("Expected finite `logits`, but found NaN or Inf values (or values of magnitude >= 2**161).")


def check_target(target, logits: torch.Tensor, ignore_index: int | None, check_range: bool = True) -> torch.Tensor:
    """Validate an integer (B,H,W) target matching ``logits``; labels in [0,K) or ``ignore_index``.

    ``check_range=False`` leaves the label range to a kernel that checks it in its own pass.
    """
    t = as_tensor(target, "target")
    if t.dtype not in _INTEGER_DTYPES:
        raise LipcertError(f"Expected `target` to be an integer tensor, but got dtype {t.dtype}.")
    b, k, h, w = logits.shape
    if t.shape != (b, h, w):
        raise LipcertError(
            f"Expected `target` of shape {(b, h, w)} to match logits {tuple(logits.shape)}, but got {tuple(t.shape)}."
        )
    if t.dtype != torch.int64:
        t = t.long()
    if not check_range or t.numel() == 0 or (int(t.min()) >= 0 and int(t.max()) < k):
        return t
    bad = (t < 0) | (t >= k)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bool(bad.any()):
        vals = torch.unique(t[bad])[:5].tolist()
        raise LipcertError(f"Expected labels in [0, {k}) or ignore_index={ignore_index}, but found {vals}.")
    return t


def _real_number(x) -> bool:
    """A real number that is not a bool (True is not a radius or a constant)."""
    if isinstance(x, (bool, np.bool_)):
        return False
    return isinstance(x, (int, float, np.integer, np.floating))


def _as_float(x, name: str) -> float:
    try:
        return float(x)
    except OverflowError:
        text = str(x)
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"
        raise LipcertError(f"`{name}` = {shown} is too large for float64.") from None


def check_eps(eps, name: str = "eps") -> np.ndarray:
    """Validate radii: a number or 1-D sequence of numbers, each 0 or in ``EPS_RANGE`` -> float64 (E,).

    Raises:
        LipcertError: not a number / sequence of numbers, empty, NaN, negative, or outside the range that
            float64 certifies exactly (lipcert.core.config).
    """
    if isinstance(eps, (list, tuple)) and all(type(x) is float or (type(x) is int and abs(x) < 2**64) for x in eps):
        values = [float(x) for x in eps]  # the common case, without numpy reductions
        arr = np.array(values, dtype=np.float64)
    else:
        if isinstance(eps, torch.Tensor):
            if eps.is_complex() or eps.dtype == torch.bool:
                raise LipcertError(f"Expected `{name}` to be real numbers, but got a {eps.dtype} tensor.")
            arr = eps.detach().cpu().double().numpy()
        elif _real_number(eps):
            arr = np.array([_as_float(eps, name)])
        elif isinstance(eps, (list, tuple, np.ndarray)):
            items = np.asarray(eps, dtype=object).ravel() if not isinstance(eps, np.ndarray) else eps
            if isinstance(eps, np.ndarray) and eps.dtype.kind not in "iuf":
                raise LipcertError(f"Expected `{name}` to be real numbers, but got an array of dtype {eps.dtype}.")
            if not isinstance(eps, np.ndarray) and not all(_real_number(x) for x in items):
                bad = next(x for x in items if not _real_number(x))
                raise LipcertError(f"Expected `{name}` to be numbers, but got {bad!r} in {eps!r}.")
            arr = np.array([_as_float(x, name) for x in np.ravel(np.asarray(eps, dtype=object))]).reshape(np.shape(eps))
        else:
            raise LipcertError(f"Expected `{name}` to be a number or a 1-D sequence of numbers, but got {eps!r}.")
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim != 1:
            raise LipcertError(f"Expected `{name}` to be a number or a 1-D sequence, but got shape {arr.shape}.")
        values = arr.tolist()
    if not values:
        raise LipcertError(f"Expected `{name}` to be a number or a non-empty 1-D sequence, but got an empty one.")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise LipcertError(f"Expected every `{name}` to be finite and >= 0, but got {values}.")
    lo, hi = EPS_RANGE
    out = [v for v in values if v != 0 and not lo <= v <= hi]
    if out:
        raise LipcertError(
            f"`{name}` = {out[0]!r} is outside the range lipcert certifies exactly in float64: every radius "
            f"must be 0 or in [{lo:g}, {hi:g}] (l2, [0,1] pixel units)."
        )
    return np.ascontiguousarray(arr, dtype=np.float64)


def check_lipschitz(lipschitz) -> float:
    """Validate a declared Lipschitz constant: a number in ``LIPSCHITZ_RANGE`` (never defaulted).

    Raises:
        LipcertError: None, a bool or non-number, NaN / inf, <= 0, or outside the certified range.
    """
    if lipschitz is None:
        raise LipcertError(
            "A Lipschitz constant is required: pass `lipschitz=` explicitly (it never defaults to 1), "
            "or use lipcert.certify(model, ...) with a model whose bound lipcert can compute."
        )
    if isinstance(lipschitz, torch.Tensor) and lipschitz.numel() == 1 and not lipschitz.dtype == torch.bool:
        lipschitz = lipschitz.item()
    if isinstance(lipschitz, np.ndarray) and lipschitz.ndim == 0 and lipschitz.dtype.kind in "iuf":
        lipschitz = lipschitz.item()
    if not _real_number(lipschitz):
        raise LipcertError(f"Expected `lipschitz` to be a number (the constant L), but got {lipschitz!r}.")
    value = _as_float(lipschitz, "lipschitz")
    if not math.isfinite(value) or value <= 0:
        raise LipcertError(f"Expected `lipschitz` to be finite and > 0, but got {value}.")
    lo, hi = LIPSCHITZ_RANGE
    if not lo <= value <= hi:
        raise LipcertError(
            f"`lipschitz` = {value!r} is outside the range lipcert certifies exactly in float64: [{lo:g}, {hi:g}]."
        )
    return value


def check_levels(levels, name: str = "level") -> np.ndarray:
    """Validate metric levels in [0, 1] -> float64 (Lv,)."""
    arr = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise LipcertError(f"Expected `{name}` to be values in [0, 1], but got {levels!r}.")
    return arr


def check_choice(value: str, choices: Sequence[str], name: str) -> str:
    """Validate a string option against its allowed values."""
    if value not in choices:
        raise LipcertError(f"Expected `{name}` to be one of {list(choices)}, but got {value!r}.")
    return value


def check_no_options(options: dict, metric: str) -> None:
    """Refuse metric options that no built-in metric understands (nothing is silently ignored)."""
    if options:
        raise LipcertError(f"Unknown option(s) {sorted(options)} for metric {metric!r}.")


def check_positive(value, name: str, *, integer: bool = False, allow_zero: bool = False, maximum=None):
    """Validate a finite number > 0 (>= 0 with ``allow_zero``); an int (not a bool) when ``integer``.

    Args:
        value: the value to check.
        name: the parameter's name in messages.
        integer: require an int (numpy ints too).
        allow_zero: accept 0.
        maximum: largest accepted value (None: any finite one; integers default to 2**40).

    Raises:
        LipcertError: naming ``name``, for a bool, a non-number, NaN / inf, a float where an integer is
            needed, or a value out of range.
    """
    kind = "an integer" if integer else "a number"
    bound = ">= 0" if allow_zero else "> 0"
    if maximum is None and integer:
        maximum = 2**40
    bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
    bad = bad or (integer and not isinstance(value, (int, np.integer)))
    if not bad:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        bad = not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero)
        bad = bad or (maximum is not None and number > maximum)
    if bad:
        top = "" if maximum is None else f" and <= {maximum:g}"
        raise LipcertError(f"Expected `{name}` to be {kind} {bound}{top}, but got {value!r}.")
    return int(value) if integer else float(value)


def check_ignore_index(ignore_index) -> int | None:
    """Validate ``ignore_index``: None or an integer (a float would silently match nothing or class 0)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
        raise LipcertError(f"Expected `ignore_index` to be an integer label or None, but got {ignore_index!r}.")
    if not -(2**62) <= int(ignore_index) < 2**62:
        raise LipcertError(f"Expected `ignore_index` to fit in int64, but got {ignore_index!r}.")
    return int(ignore_index)


def check_images(x, name: str = "x", *, allow_outside_unit: bool = False) -> torch.Tensor:
    """Validate a float (B, C, H, W) image batch in [0, 1] (the units eps is measured in).

    Args:
        x: the images (a torch tensor).
        name: the parameter's name in messages.
        allow_outside_unit: accept values outside [0, 1] (eps is then in the units of those values).

    Raises:
        LipcertError: not a tensor, not floating point (e.g. uint8), not 4-D, empty, NaN / Inf, or values
            outside [0, 1] (with the range found) unless ``allow_outside_unit``.
    """
    if not isinstance(x, torch.Tensor):
        raise LipcertError(f"Expected `{name}` to be a torch.Tensor of images, but got {type(x).__name__}.")
    if not x.is_floating_point():
        hint = " (uint8 images: divide by 255 to get [0, 1])" if x.dtype == torch.uint8 else ""
        raise LipcertError(f"Expected `{name}` to be floating-point images in [0, 1], but got dtype {x.dtype}{hint}.")
    if x.ndim != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise LipcertError(f"Expected `{name}` of shape (B, C, H, W), but got shape {tuple(x.shape)}{hint}.")
    if x.numel() == 0:
        raise LipcertError(f"Expected `{name}` to hold at least one image with pixels, but got shape {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()):
        raise LipcertError(f"Expected finite `{name}`, but found NaN or Inf values.")
    if not allow_outside_unit:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise LipcertError(
                f"Expected `{name}` in [0, 1] (eps is l2 in [0,1] pixel units), but found values in [{lo:g}, {hi:g}]: "
                "a [0, 255] or normalised image would make eps mean something else. Rescale to [0, 1] (and "
                "normalise inside the model), or pass allow_outside_unit=True if eps is meant in these units."
            )
    return x
