"""Cityscapes (local files, the published layout): 19 train ids, everything else ignored (255)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import LipcertError
from .files import PairDataset, require_dir
from .transforms import EvalTransform

LAYOUT = """root/
  leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
  gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png
    (or *_gtFine_labelTrainIds.png, written by cityscapesscripts' createTrainIdLabelImgs)"""
LABEL_FILES = {"labelIds": "_gtFine_labelIds.png", "labelTrainIds": "_gtFine_labelTrainIds.png"}

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
        labels: ``"labelIds"`` (the 34 ids, mapped to the 19 train ids here), ``"labelTrainIds"`` (already
            train ids: 0..18 and 255) or ``"auto"``: labelIds when every image has them, else labelTrainIds
            when every image has those.

    Items: image float32 (3, H, W) in [0, 1], target int64 (H, W) in [0, 19) or 255.

    Example (with the dataset on disk; the loaders are tested on fake trees)::

        ds = Cityscapes("CITYSCAPES", split="val", size=(512, 1024))
        image, target = ds[0]
    """

    num_classes = 19
    classes = CLASSES
    class_names = CLASSES
    foreground_classes = tuple(range(11, 19))  # things: person, rider, car, truck, bus, train, motorcycle, bicycle

    def __init__(self, root, split: str = "train", size=None, transform=None, labels: str = "auto") -> None:
        if split not in ("train", "val"):
            raise LipcertError(f"Expected `split` 'train' or 'val', but got {split!r}.")
        if labels not in ("auto", *LABEL_FILES):
            raise LipcertError(f"Expected `labels` 'auto', 'labelIds' or 'labelTrainIds', but got {labels!r}.")
        root = Path(root)
        img_dir = require_dir(root / "leftImg8bit" / split, LAYOUT)
        lab_dir = require_dir(root / "gtFine" / split, LAYOUT)
        images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise LipcertError(f"No *_leftImg8bit.png images under {img_dir}; the expected layout is:\n{LAYOUT}")

        def label_file(img: Path, kind: str) -> Path:
            return lab_dir / img.parent.name / (img.name[: -len("_leftImg8bit.png")] + LABEL_FILES[kind])

        if labels == "auto":
            complete = [k for k in LABEL_FILES if all(label_file(img, k).is_file() for img in images)]
            labels = complete[0] if complete else "labelIds"  # the missing file is then named below
        self.label_kind = labels
        pairs = []
        for img in images:
            lab = label_file(img, labels)
            if not lab.is_file():
                raise LipcertError(f"Missing annotation {lab} for {img}; the expected layout is:\n{LAYOUT}")
            pairs.append((img, lab))
        if transform is None and size is not None:
            transform = EvalTransform(size)
        super().__init__(pairs, transform)

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        """LabelIds -> train ids (255 for every unevaluated id); labelTrainIds are checked and kept."""
        if raw.min() < 0 or raw.max() > 255:
            raise LipcertError(f"Cityscapes {self.label_kind} must lie in [0, 255].")
        if self.label_kind == "labelIds":
            return _LUT[raw]
        bad = (raw >= self.num_classes) & (raw != self.ignore_index)
        if bad.any():
            found = np.unique(raw[bad])[:5].tolist()
            raise LipcertError(
                f"Expected labelTrainIds in [0, 19) or 255, but found {found}: are these labelIds? "
                "Pass labels='labelIds'."
            )
        return raw.astype(np.int64)
