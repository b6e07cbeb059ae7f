"""Datasets: the embedded digit scenes, Cityscapes and Oxford-IIIT Pet (local files only)."""

from .cityscapes import Cityscapes
from .digits import DigitScenes
from .pets import OxfordIIITPet
from .transforms import EvalTransform, TrainTransform

__all__ = ["Cityscapes", "DigitScenes", "EvalTransform", "OxfordIIITPet", "TrainTransform"]
