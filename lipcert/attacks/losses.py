"""Per-image segmentation attack losses (SEA, Croce et al. 2024), averaged over all H * W pixels.

Ignored pixels contribute 0 but stay in the denominator. The correctness masks are detached and
recomputed at every iterate: a pixel that flips drops out (and returns if it flips back).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import LipcertError


def _valid(labels: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    valid = labels != ignore_index
    return valid, torch.where(valid, labels, torch.zeros_like(labels))


def masked_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, weight=None) -> torch.Tensor:
    """Cross-entropy on the pixels still correct at this iterate; (B,) per-image means over H * W."""
    valid, y = _valid(labels, ignore_index)
    ce = F.cross_entropy(logits, y, weight=weight, reduction="none")
    mask = (valid & (logits.argmax(1) == y)).detach()
    return (ce * mask).flatten(1).mean(1)


def balanced_masked_ce(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Masked CE with per-class weights (inverse class frequency of the labels given, when None)."""
    if class_weights is None:
        class_weights = class_weights_from_labels(labels, logits.shape[1], ignore_index)
    return masked_ce(logits, labels, ignore_index, weight=class_weights.to(logits.dtype))


def js_divergence(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Jensen-Shannon divergence between the softmax and the one-hot label (bounded by log 2), no mask."""
    valid, y = _valid(labels, ignore_index)
    p = logits.softmax(1)
    q = F.one_hot(y, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * (torch.log(a.clamp_min(1e-12)) - torch.log(b.clamp_min(1e-12)))).sum(1)  # noqa: E731
    js = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return (js * valid).flatten(1).mean(1)


def class_weights_from_labels(labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Inverse-frequency class weights computed from the data, normalised to sum to 1 (absent classes 0)."""
    valid = labels != ignore_index
    counts = torch.bincount(labels[valid].flatten(), minlength=num_classes).double()
    w = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    return (w / w.sum()).float() if w.sum() > 0 else torch.ones(num_classes) / num_classes


LOSSES = {"mce": masked_ce, "mce_bal": balanced_masked_ce, "js": js_divergence}


def get_loss(name: str):
    """The attack loss called ``name`` (one of ``LOSSES``), or a LipcertError naming the known ones."""
    if name not in LOSSES:
        raise LipcertError(f"Expected `loss` in {list(LOSSES)}, but got {name!r}.")
    return LOSSES[name]


def pixel_accuracy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Per-image pixel accuracy over valid pixels, (B,) (NaN without valid pixels)."""
    valid = labels != ignore_index
    correct = ((logits.argmax(1) == labels) & valid).flatten(1).sum(1).double()
    return correct / valid.flatten(1).sum(1).double()
