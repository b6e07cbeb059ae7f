"""Training of 1-Lipschitz segmentation networks: the loop, its evaluation, checkpoints and recipes."""

from .loop import LOSSES, TrainConfig, evaluate, pgd_examples, recalibrate_centering, save_checkpoint, train
from .recipes import RECIPES, get_recipe

__all__ = [
    "LOSSES",
    "RECIPES",
    "TrainConfig",
    "evaluate",
    "get_recipe",
    "pgd_examples",
    "recalibrate_centering",
    "save_checkpoint",
    "train",
]
