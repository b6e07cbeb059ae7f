"""Reading images and label maps from local files (no download, ever)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import LipcertError


def read_rgb(path: Path) -> np.ndarray:
    """float32 (3, H, W) in [0, 1]."""
    with Image.open(path) as im:
        return (np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def read_labels(path: Path) -> np.ndarray:
    """int64 (H, W) raw label ids of a single-channel PNG."""
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.int64)


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise LipcertError(f"Expected the folder {path}; the expected layout is:\n{layout}")
    return path


class _PairDataset:
    """(image, target) files + a label mapping + an optional transform -> torch tensors."""

    ignore_index = 255
    num_classes: int

    def __init__(self, pairs, transform=None) -> None:
        self.pairs = pairs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def map_labels(self, raw: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img_path, lab_path = self.pairs[i]
        image, target = read_rgb(img_path), self.map_labels(read_labels(lab_path))
        if image.shape[1:] != target.shape:
            raise LipcertError(f"Image {img_path} and labels {lab_path} differ in size.")
        if self.transform is not None:
            image, target = self.transform(image, target)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(target))
