"""1-Lipschitz segmentation architectures, their unconstrained twins, export and shipped checkpoints."""

from ..lipschitz.export import export_plain
from .layers import InputNormalization, ScaledConcat
from .lipnet import PRESETS, LipNet, LipUNet

__all__ = ["PRESETS", "InputNormalization", "LipNet", "LipUNet", "ScaledConcat", "export_plain"]
