"""1-Lipschitz segmentation architectures, their unconstrained twins, export and shipped checkpoints."""

from ..lipschitz.export import export_plain
from .layers import InputNormalization, ScaledConcat
from .lipnet import PRESETS, LipNet, LipUNet
from .pretrained import build_model, list_pretrained, load_checkpoint, load_pretrained

__all__ = [
    "build_model",
    "list_pretrained",
    "load_checkpoint",
    "load_pretrained",
    "PRESETS",
    "InputNormalization",
    "LipNet",
    "LipUNet",
    "ScaledConcat",
    "export_plain",
]
