"""Training of 1-Lipschitz segmentation networks: the loop, its evaluation, checkpoints and recipes."""

from .checkpoints import save_checkpoint
from .config import LOSSES, TrainConfig
from .evaluation import evaluate, pgd_examples, recalibrate_centering
from .loop import train
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
