"""Reading images and label maps from local files (no download, ever)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.errors import LipcertError


def _open(path: Path, what: str):
    """The decoded PIL image of a file, or a LipcertError naming the file (missing, truncated, not an image)."""
    try:
        im = Image.open(path)
        im.load()  # decode now: a truncated file fails here, named
        return im
    except (OSError, SyntaxError, ValueError) as exc:
        raise LipcertError(f"Cannot read the {what} file {path}: {exc}.") from None


def read_rgb(path: Path) -> np.ndarray:
    """float32 (3, H, W) in [0, 1].

    Raises:
        LipcertError: naming the file when it is missing, truncated or not an image.
    """
    with _open(path, "image") as im:
        return (np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def read_labels(path: Path, channel_ok: bool = False) -> np.ndarray:
    """int64 (H, W) raw label ids of a label PNG.

    Single-channel images (L, P, I) are read as their values (the palette index for P). RGB / RGBA
    images are refused unless ``channel_ok``, where the first channel is taken (formats that store the
    id in every channel, e.g. some trimap exports).

    Raises:
        LipcertError: naming the file and the mode found, for unreadable files and multi-channel labels.
    """
    with _open(path, "label") as im:
        if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
            if not channel_ok:
                raise LipcertError(
                    f"The label file {path} has {im.mode} pixels; expected a single-channel label image "
                    "(mode L, P or I) of class ids."
                )
            return np.asarray(im, dtype=np.int64)[..., 0].copy()
        return np.asarray(im, dtype=np.int64)


def require_dir(path: Path, layout: str) -> Path:
    """``path`` when it is a folder, else a LipcertError that shows the expected ``layout``."""
    if not path.is_dir():
        raise LipcertError(f"Expected the folder {path}; the expected layout is:\n{layout}")
    return path


class PairDataset:
    """(image, target) files + a label mapping + an optional transform -> torch tensors."""

    ignore_index = 255
    num_classes: int
    labels_in_first_channel = False  # read RGB / RGBA label files as their first channel

    def __init__(self, pairs, transform=None) -> None:
        self.pairs = pairs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def map_labels(self, raw: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        """The dataset's class ids (int64, ``ignore_index`` for void) of raw label values."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img_path, lab_path = self.pairs[i]
        image = read_rgb(img_path)
        target = self.map_labels(read_labels(lab_path, self.labels_in_first_channel))
        if image.shape[1:] != target.shape:
            raise LipcertError(f"Image {img_path} and labels {lab_path} differ in size.")
        if self.transform is not None:
            image, target = self.transform(image, target)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(target))
