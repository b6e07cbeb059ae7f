"""Oxford-IIIT Pet (local files, the published layout): trimap segmentation into 3 or 2 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LipcertError
from .files import PairDataset, require_dir
from .transforms import EvalTransform

LAYOUT = """root/
  images/{name}.jpg
  annotations/trimaps/{name}.png      (1 = pet, 2 = background, 3 = border)
  annotations/trainval.txt, annotations/test.txt   (lines: "{name} class species breed")"""
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class OxfordIIITPet(PairDataset):
    """Oxford-IIIT Pet trimaps read from ``root`` (nothing is downloaded).

    Args:
        root: folder holding ``images/`` and ``annotations/`` (see ``LAYOUT``).
        split: ``"trainval"`` or ``"test"``.
        classes: 3 -> pet 0 / background 1 / border 2 (the border is a real class); 2 -> pet 0 /
            background 1 with the border ignored (255).
        size: resize every pair to (H, W) (int = square) when no ``transform`` is given.
        transform: a callable ``(image, target) -> (image, target)`` on numpy arrays.

    Items: image float32 (3, H, W) in [0, 1], target int64 (H, W).

    Example (with the dataset on disk; the loaders are tested on fake trees)::

        ds = OxfordIIITPet("PETS", split="test", classes=3, size=128)
        image, target = ds[0]
    """

    labels_in_first_channel = True  # trimaps are exported as L, P, RGB or RGBA

    def __init__(self, root, split: str = "trainval", classes: int = 3, size=None, transform=None) -> None:
        if split not in ("trainval", "test"):
            raise LipcertError(f"Expected `split` 'trainval' or 'test', but got {split!r}.")
        if classes not in (2, 3):
            raise LipcertError(f"Expected `classes` 3 or 2, but got {classes!r}.")
        root = Path(root)
        images = require_dir(root / "images", LAYOUT)
        trimaps = require_dir(root / "annotations" / "trimaps", LAYOUT)
        listing = root / "annotations" / f"{split}.txt"
        if not listing.is_file():
            raise LipcertError(f"Missing split file {listing}; the expected layout is:\n{LAYOUT}")
        pairs = []
        for line_no, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 4:
                raise LipcertError(f"{listing}:{line_no}: expected 'name class species breed', got {line!r}.")
            name = parts[0]
            img, tri = images / f"{name}.jpg", trimaps / f"{name}.png"
            if not img.is_file() or not tri.is_file():
                raise LipcertError(f"{listing}:{line_no}: missing {img if not img.is_file() else tri}.")
            pairs.append((img, tri))
        if not pairs:
            raise LipcertError(f"{listing} lists no images; the expected layout is:\n{LAYOUT}")
        self.num_classes = classes
        self.foreground_classes = (0,)  # the pet
        self.class_names = ("pet", "background", "border")[:classes]
        if transform is None and size is not None:
            transform = EvalTransform(size)
        super().__init__(pairs, transform)

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        """Trimap 1/2/3 -> 0/1/2 (3 classes) or 0/1/255 (2 classes)."""
        if not np.isin(raw, (1, 2, 3)).all():
            raise LipcertError(f"Trimap values must be 1, 2 or 3, but found {np.unique(raw)[:6].tolist()}.")
        out = raw - 1
        if self.num_classes == 2:
            out = np.where(out == 2, 255, out)
        return out
