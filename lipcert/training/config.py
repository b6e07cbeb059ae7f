"""The settings of a training run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.checks import check_choice, check_positive
from ..core.errors import LipcertError

LOSSES = ("tau_ce", "hkr", "margin_ce", "margin_hinge")


@dataclass
class TrainConfig:
    """Settings of :func:`train` (all recorded in the checkpoint).

    Attributes:
        epochs, batch_size: schedule length and batch size.
        lr, weight_decay, betas: AdamW settings; the learning rate follows a cosine to ``lr_min``.
        loss: ``"tau_ce"`` (deel-torchlip TauCrossEntropyLoss, CE(tau * z) / tau) or ``"hkr"``
            (deel-torchlip SoftHKRMulticlassLoss on the valid pixels).
        tau: temperature of tau_ce and margin_ce (1 = plain cross-entropy).
        margin: kappa of ``"margin_ce"`` in logit units: ``CE(tau * (z - kappa * onehot(y))) / tau``, the
            true-class logit lowered by kappa, so the loss keeps pushing until the margin exceeds kappa
            (``sqrt(2) * L * eps_train`` protects a pixel at radius eps_train).
        margin_warmup: epochs over which kappa grows linearly from 0 to ``margin`` (0: from the start).
        hinge_weight, hinge_quantile: ``"margin_hinge"`` adds to margin_ce ``hinge_weight`` times a hinge
            aimed at the joint certificate: the attacker flips the cheapest pixels first, so for each class
            present in the batch the fraction ``hinge_quantile`` of its pixels with the lowest margins
            ``m_p = z_y - max_{k != y} z_k`` pays ``mean(relu(kappa - m_p))``; the classes are averaged
            with equal weight (the digits count as much as the background).
        hinge_correct_only: the hinge's quantile is taken over the correctly classified pixels only
            (margin > 0): those are what the joint certificate's attacker spends its budget on; the
            misclassified pixels are left to the cross-entropy.
        class_weights: per-class loss weights (e.g. 0.1 for a dominant background), or None.
        noise_sigma: std of Gaussian noise added in [0,1] input space (randomized-smoothing twins).
        monitor_eps: radius (l2, [0,1] pixels) of the certified accuracy shown during evaluation.
        eval_every: evaluate every this many epochs (0 = never).
        seed: seeds the model initialisation order, the data order and the noise.
        adversarial: ``"pgd"`` for PGD adversarial training (unconstrained models): every batch is replaced
            by PGD adversarial examples (cross-entropy, ``adv_steps`` steps of size 2.5 eps / steps, radius
            ``adv_eps`` in ``adv_norm``, no random start), computed with the model in eval mode.
        init_from: a checkpoint whose matching weights initialise the model before training (PIR-AT:
            start from a robust model's backbone; layers whose shapes differ, e.g. the head, are kept).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    lr_min: float = 1e-6
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    loss: str = "tau_ce"
    tau: float = 8.0
    class_weights: list[float] | None = None
    noise_sigma: float = 0.0
    monitor_eps: float = 0.25
    eval_every: int = 5
    seed: int = 0
    adversarial: str | None = None
    adv_eps: float = 0.5
    adv_steps: int = 3
    adv_norm: str = "l2"
    init_from: str | None = None
    margin: float = 0.0
    margin_warmup: int = 0
    hinge_weight: float = 1.0
    hinge_quantile: float = 0.25
    hinge_correct_only: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_positive(getattr(self, name), name, integer=True)
        for name in ("eval_every", "adv_steps", "margin_warmup", "seed"):
            check_positive(getattr(self, name), name, integer=True, allow_zero=True)
        for name in ("lr", "tau"):
            check_positive(getattr(self, name), name)
        for name in ("lr_min", "weight_decay", "noise_sigma", "margin", "adv_eps", "monitor_eps"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_choice(self.loss, LOSSES, "loss")
        check_positive(self.hinge_weight, "hinge_weight", allow_zero=True)
        check_positive(self.hinge_quantile, "hinge_quantile", maximum=1.0)
        if not isinstance(self.hinge_correct_only, bool):
            raise LipcertError(
                f"Expected `hinge_correct_only` to be True or False, but got {self.hinge_correct_only!r}."
            )
        if self.class_weights is not None:
            w = list(self.class_weights)
            if not w or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in w):
                raise LipcertError(f"Expected `class_weights` finite and >= 0, but got {self.class_weights!r}.")
