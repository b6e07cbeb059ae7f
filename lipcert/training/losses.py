"""The training losses: temperature-scaled CE, margin-offset CE and HKR for Lipschitz nets."""

from __future__ import annotations

import torch
from deel import torchlip
from torch import nn

from ..core.errors import LipcertError
from .config import LOSSES, TrainConfig


def loss_function(cfg: TrainConfig, ignore_index: int):
    """The training loss of ``cfg.loss``: ``f(logits, target)`` (margin losses: ``f(logits, target, kappa)``)."""
    weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)
    if cfg.loss == "tau_ce":
        return torchlip.TauCrossEntropyLoss(tau=cfg.tau, weight=weight, ignore_index=ignore_index)
    if cfg.loss == "margin_ce":
        return _margin_ce(cfg.tau, weight, ignore_index)
    if cfg.loss == "margin_hinge":
        ce = _margin_ce(cfg.tau, weight, ignore_index)

        def loss(logits, target, kappa=0.0):
            hinge = lowest_margin_hinge(
                logits, target, kappa, cfg.hinge_quantile, ignore_index, correct_only=cfg.hinge_correct_only
            )
            return ce(logits, target, kappa) + cfg.hinge_weight * hinge

        return loss
    if cfg.loss == "hkr":
        hkr = torchlip.SoftHKRMulticlassLoss(alpha=0.95, min_margin=0.01, temperature=5.0)

        def loss(logits, target):
            k = logits.shape[1]
            z = logits.permute(0, 2, 3, 1).reshape(-1, k)
            t = target.reshape(-1)
            keep = t != ignore_index
            onehot = nn.functional.one_hot(t[keep], k).float()
            return hkr(z[keep], onehot)

        return loss
    raise LipcertError(f"Expected `loss` in {LOSSES}, but got {cfg.loss!r}.")


def _margin_ce(tau: float, weight, ignore_index: int):
    """``CE(tau * (z - kappa * onehot(y))) / tau`` with a per-call kappa (the schedule sets it)."""

    def loss(logits, target, kappa=0.0):
        k = logits.shape[1]
        safe = torch.where(target == ignore_index, torch.zeros_like(target), target)
        offset = nn.functional.one_hot(safe, k).permute(0, 3, 1, 2).to(logits.dtype) * kappa
        z = tau * (logits - offset)
        return nn.functional.cross_entropy(z, target, weight=weight, ignore_index=ignore_index) / tau

    return loss


def lowest_margin_hinge(
    logits: torch.Tensor, target: torch.Tensor, kappa: float, quantile: float, ignore_index: int, correct_only=False
):
    """Class-balanced hinge on the lowest-margin pixels of each class (the ones the attacker flips first).

    Args:
        logits: float (B, K, H, W).
        target: int (B, H, W) labels, ``ignore_index`` excluded.
        kappa: the margin asked for, in logit units (``sqrt(2) * L * eps`` protects a pixel at radius eps).
        quantile: the fraction (0, 1] of each class's pixels, lowest margins first, that pays.
        ignore_index: label of ignored pixels.
        correct_only: take the quantile over the correctly classified pixels (``m_p > 0``) only.

    Returns:
        A scalar tensor: the mean over the classes present of ``mean(relu(kappa - m_p))`` over their
        lowest-margin pixels; 0 when no pixel is valid (or, with ``correct_only``, none is correct).

    Examples:
        >>> z = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # margins 2 (class 0) and 1 (class 1)
        >>> float(lowest_margin_hinge(z, torch.tensor([[[0, 1]]]), 1.5, 1.0, 255))
        0.25
    """
    k = logits.shape[1]
    z = logits.permute(0, 2, 3, 1).reshape(-1, k)
    t = target.reshape(-1)
    keep = t != ignore_index
    z, t = z[keep], t[keep]
    if t.numel() == 0:
        return logits.sum() * 0.0
    true = z.gather(1, t[:, None])[:, 0]
    others = z.scatter(1, t[:, None], float("-inf")).max(1).values
    margin = true - others
    if correct_only:
        margin, t = margin[margin > 0], t[margin > 0]
        if t.numel() == 0:
            return logits.sum() * 0.0
    per_class = []
    for c in torch.unique(t):
        m = margin[t == c]
        n = max(1, int(round(quantile * m.numel())))
        lowest = torch.topk(m, n, largest=False).values
        per_class.append(torch.relu(kappa - lowest).mean())
    return torch.stack(per_class).mean()
