"""The training losses: temperature-scaled CE, margin-offset CE and HKR for Lipschitz nets."""

from __future__ import annotations

import torch
from deel import torchlip
from torch import nn

from ..core.errors import LipcertError
from .config import LOSSES, TrainConfig


def loss_function(cfg: TrainConfig, ignore_index: int):
    """The training loss of ``cfg.loss``: ``f(logits, target)`` (margin_ce: ``f(logits, target, kappa)``)."""
    weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)
    if cfg.loss == "tau_ce":
        return torchlip.TauCrossEntropyLoss(tau=cfg.tau, weight=weight, ignore_index=ignore_index)
    if cfg.loss == "margin_ce":
        return _margin_ce(cfg.tau, weight, ignore_index)
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
