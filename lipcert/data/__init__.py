"""Datasets: the embedded digit scenes, Cityscapes and Oxford-IIIT Pet (local files only)."""

from .digits import DigitScenes

__all__ = ["DigitScenes"]
