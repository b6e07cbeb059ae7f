"""Shared input validation. Every check raises a LipcertError naming the problem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

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
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise LipcertError(f"Expected `{name}` to be a torch.Tensor or numpy.ndarray, but got {type(x).__name__}.")


def check_logits(logits, finite: bool = True) -> torch.Tensor:
    """Validate a (B,K,H,W) floating logit tensor (and that it is finite, unless ``finite=False``)."""
    t = as_tensor(logits, "logits")
    if not t.is_floating_point():
        raise LipcertError(f"Expected `logits` to be a floating-point tensor, but got dtype {t.dtype}.")
    if t.ndim != 4:
        raise LipcertError(f"Expected `logits` of shape (B, K, H, W), but got shape {tuple(t.shape)}.")
    if t.shape[1] < 2:
        raise LipcertError(f"Expected at least 2 classes in `logits`, but got K={t.shape[1]}.")
    if finite and not bool(torch.isfinite(t).all()):
        raise_not_finite()
    return t


def raise_not_finite() -> None:
    raise LipcertError("Expected finite `logits`, but found NaN or Inf values.")


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


def check_eps(eps) -> np.ndarray:
    """Validate radii: a float or 1-D sequence of finite values >= 0 -> float64 (E,)."""
    if isinstance(eps, (list, tuple)) and all(type(x) in (float, int) for x in eps):
        values = [float(x) for x in eps]  # the common case, without numpy reductions
        arr = np.array(values, dtype=np.float64)
    else:
        arr = np.asarray(eps, dtype=np.float64) if not isinstance(eps, torch.Tensor) else eps.double().numpy()
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim != 1:
            raise LipcertError(f"Expected `eps` to be a float or a non-empty 1-D sequence, but got shape {arr.shape}.")
        values = arr.tolist()
    if not values:
        raise LipcertError("Expected `eps` to be a float or a non-empty 1-D sequence, but got an empty one.")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise LipcertError(f"Expected every `eps` to be finite and >= 0, but got {values}.")
    return arr


def check_lipschitz(lipschitz) -> float:
    """Validate a declared Lipschitz constant: a finite float > 0 (never defaulted)."""
    if lipschitz is None:
        raise LipcertError(
            "A Lipschitz constant is required: pass `lipschitz=` explicitly (it never defaults to 1), "
            "or use lipcert.certify(model, ...) with a model whose bound lipcert can compute."
        )
    try:
        value = float(lipschitz)
    except (TypeError, ValueError) as exc:
        raise LipcertError(f"Expected `lipschitz` to be a number, but got {lipschitz!r}.") from exc
    if not math.isfinite(value) or value <= 0:
        raise LipcertError(f"Expected `lipschitz` to be finite and > 0, but got {value}.")
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
