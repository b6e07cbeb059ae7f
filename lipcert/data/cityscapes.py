"""Cityscapes (local files, the published layout): 19 train ids, everything else ignored (255)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LipcertError
from .files import PairDataset, require_dir
from .transforms import EvalTransform

LAYOUT = """root/
  leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
  gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png"""

# labelId -> trainId (the 19 evaluated classes); every other id becomes 255.
LABEL_TO_TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
MEAN, STD = (0.286, 0.325, 0.283), (0.176, 0.180, 0.177)

_LUT = np.full(256, 255, dtype=np.int64)
for _label, _train in LABEL_TO_TRAIN_ID.items():
    _LUT[_label] = _train


class Cityscapes(PairDataset):
    """Cityscapes fine annotations read from ``root`` (nothing is downloaded).

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/`` (see ``LAYOUT``).
        split: ``"train"`` or ``"val"``.
        size: resize every pair to (H, W) (an int means square) when no ``transform`` is given.
        transform: a callable ``(image, target) -> (image, target)`` on numpy arrays
            (see :mod:`lipcert.data.transforms`).

    Items: image float32 (3, H, W) in [0, 1], target int64 (H, W) in [0, 19) or 255.

    Example (with the dataset on disk; the loaders are tested on fake trees)::

        ds = Cityscapes("CITYSCAPES", split="val", size=(512, 1024))
        image, target = ds[0]
    """

    num_classes = 19
    classes = CLASSES
    foreground_classes = tuple(range(11, 19))  # things: person, rider, car, truck, bus, train, motorcycle, bicycle

    def __init__(self, root, split: str = "train", size=None, transform=None) -> None:
        if split not in ("train", "val"):
            raise LipcertError(f"Expected `split` 'train' or 'val', but got {split!r}.")
        root = Path(root)
        img_dir = require_dir(root / "leftImg8bit" / split, LAYOUT)
        lab_dir = require_dir(root / "gtFine" / split, LAYOUT)
        pairs = []
        for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
            stem = img.name[: -len("_leftImg8bit.png")]
            lab = lab_dir / img.parent.name / f"{stem}_gtFine_labelIds.png"
            if not lab.is_file():
                raise LipcertError(f"Missing annotation {lab} for {img}; the expected layout is:\n{LAYOUT}")
            pairs.append((img, lab))
        if not pairs:
            raise LipcertError(f"No *_leftImg8bit.png images under {img_dir}; the expected layout is:\n{LAYOUT}")
        if transform is None and size is not None:
            transform = EvalTransform(size)
        super().__init__(pairs, transform)

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        """LabelIds -> train ids (255 for every unevaluated id)."""
        if raw.min() < 0 or raw.max() > 255:
            raise LipcertError("Cityscapes labelIds must lie in [0, 255].")
        return _LUT[raw]
