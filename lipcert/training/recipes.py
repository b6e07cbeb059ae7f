"""Named, reproducible training recipes (model + data + schedule), used by ``lipcert train --recipe``."""

from __future__ import annotations

from dataclasses import replace

from ..core.errors import LipcertError
from .config import TrainConfig

_DIGIT_BODY = dict(
    arch="LipUNet",
    num_classes=11,
    in_channels=3,
    widths=[[64, 2], [128, 2], [256, 2]],
    stem=64,
    mean=[0.5, 0.5, 0.5],
    std=[1.0, 1.0, 1.0],
)
_NARROW_BODY = dict(_DIGIT_BODY, widths=[[32, 2], [64, 2], [128, 2]], stem=32)  # the first shipped model's
_BACKGROUND_WEIGHT = [0.1] + [1.0] * 10

_DIGITS_DATA = dict(dataset="digits", n_train=4000, n_eval=200, size=64, seed=0)
# the first shipped model (TauCE tau 16 on the 32/64/128 body): the base of the frontier's settings
_TAU16_TRAIN = TrainConfig(
    epochs=40,
    batch_size=32,
    lr=3e-3,
    weight_decay=0.0,
    loss="tau_ce",
    tau=16.0,
    class_weights=_BACKGROUND_WEIGHT,
    monitor_eps=0.25,
    eval_every=10,
    seed=0,
)

RECIPES: dict[str, dict] = {
    # 1-Lipschitz body after an explicit input gain of 8: the model is 8-Lipschitz (L computed, not assumed).
    # margin_ce (tau 8, kappa 2 logits after 5 warm-up epochs) on a body of 64/128/256 channels: the best
    # point of the certified-training frontier (docs/training.md), i.e. the first model's schedule with the
    # frontier's loss and length
    "digits-lipunet": dict(
        model=dict(_DIGIT_BODY, gain=8.0, parametrization="aoc"),
        data=dict(_DIGITS_DATA),
        train=replace(_TAU16_TRAIN, epochs=30, loss="margin_ce", tau=8.0, margin=2.0, margin_warmup=5, eval_every=0),
    ),
    "digits-lipunet-tau16": dict(
        model=dict(_NARROW_BODY, gain=8.0, parametrization="aoc"),
        data=dict(_DIGITS_DATA),
        train=_TAU16_TRAIN,
    ),
    # The unconstrained twin of digits-lipunet's topology (Conv2d + ReLU + BatchNorm2d), Gaussian-noise
    # trained for SegCertify.
    "digits-twin-sigma025": dict(
        model=dict(_DIGIT_BODY, gain=1.0, parametrization="plain"),
        data=dict(_DIGITS_DATA),
        train=replace(_TAU16_TRAIN, epochs=15, weight_decay=1e-4, tau=1.0, noise_sigma=0.25, eval_every=5),
    ),
}


_IMAGENET = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
_CITYSCAPES = dict(mean=[0.286, 0.325, 0.283], std=[0.176, 0.180, 0.177])
_REFERENCE = dict(betas=(0.95, 0.95), weight_decay=1e-4, lr=1e-3, monitor_eps=0.1, eval_every=10, seed=0)
RECIPES.update(
    {
        # The reference setting for Oxford-IIIT Pet (128x128, 3 classes, border included), LipNet-M1.
        "pets-lipnet": dict(
            model=dict(arch="LipNet", num_classes=3, in_channels=3, preset="M1", parametrization="aoc", **_IMAGENET),
            data=dict(dataset="pets", n_train=None, n_eval=200, size=128, seed=0),
            train=TrainConfig(epochs=150, batch_size=30, loss="tau_ce", tau=8.0, **_REFERENCE),
        ),
        "pets-twin-sigma025": dict(
            model=dict(arch="LipNet", num_classes=3, in_channels=3, preset="M1", parametrization="plain", **_IMAGENET),
            data=dict(dataset="pets", n_train=None, n_eval=200, size=128, seed=0),
            train=TrainConfig(epochs=150, batch_size=30, loss="tau_ce", tau=1.0, noise_sigma=0.25, **_REFERENCE),
        ),
        # Cityscapes (reference: 1024x1024 squares, 19 classes, tau 20, 200 epochs; a GPU job).
        "cityscapes-lipnet": dict(
            model=dict(arch="LipNet", num_classes=19, in_channels=3, preset="M1", parametrization="aoc", **_CITYSCAPES),
            data=dict(dataset="cityscapes", n_train=None, n_eval=50, size=1024, seed=0),
            train=TrainConfig(epochs=200, batch_size=8, loss="tau_ce", tau=20.0, **_REFERENCE),
        ),
        "cityscapes-twin-sigma025": dict(
            model=dict(
                arch="LipNet", num_classes=19, in_channels=3, preset="M1", parametrization="plain", **_CITYSCAPES
            ),
            data=dict(dataset="cityscapes", n_train=None, n_eval=50, size=1024, seed=0),
            train=TrainConfig(epochs=200, batch_size=8, loss="tau_ce", tau=1.0, noise_sigma=0.25, **_REFERENCE),
        ),
    }
)


def get_recipe(name: str, **overrides) -> dict:
    """A copy of a recipe, with TrainConfig fields overridden (e.g. ``epochs=1``)."""
    if name not in RECIPES:
        raise LipcertError(f"Unknown recipe {name!r}; available: {sorted(RECIPES)}.")
    r = RECIPES[name]
    return dict(model=dict(r["model"]), data=dict(r["data"]), train=replace(r["train"], **overrides))
