"""Joint image/target transforms that keep both aligned and never interpolate labels.

Images are float32 (C, H, W) in [0,1] numpy arrays; targets int64 (H, W). Images are resized bilinearly,
targets with nearest neighbour (labels are never blended).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..core.errors import LipcertError


def check_size(size, name: str = "size") -> tuple[int, int]:
    """Validate an (H, W) size (an int means square): positive ints.

    Raises:
        LipcertError: naming the parameter, for anything else.
    """
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise LipcertError(f"Expected `{name}` to be a positive int or (H, W) of positive ints, but got {size!r}.")
    return int(pair[0]), int(pair[1])


def resize_pair(image: np.ndarray, target: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size = (H, W)``: bilinear for the image, nearest for the target."""
    h, w = size
    chans = [np.asarray(Image.fromarray(c, mode="F").resize((w, h), Image.BILINEAR)) for c in image]
    lab = Image.fromarray(target.astype(np.int32), mode="I").resize((w, h), Image.NEAREST)
    return np.clip(np.stack(chans), 0.0, 1.0).astype(np.float32), np.asarray(lab).astype(np.int64)


def random_crop(image, target, size: tuple[int, int], rng: np.random.Generator, ignore_index: int = 255):
    """Random crop of ``size``; smaller inputs are padded (image 0, target ``ignore_index``)."""
    h, w = size
    c, H, W = image.shape
    if H < h or W < w:
        ph, pw = max(0, h - H), max(0, w - W)
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)))
        target = np.pad(target, ((0, ph), (0, pw)), constant_values=ignore_index)
        H, W = target.shape
    y = int(rng.integers(0, H - h + 1))
    x = int(rng.integers(0, W - w + 1))
    return image[:, y : y + h, x : x + w], target[y : y + h, x : x + w]


def random_flip(image, target, rng: np.random.Generator):
    """Horizontal flip with probability 1/2."""
    if rng.random() < 0.5:
        return image[:, :, ::-1].copy(), target[:, ::-1].copy()
    return image, target


def colour_jitter(image, rng: np.random.Generator, strength: float = 0.5):
    """Random brightness, contrast and saturation factors in [1 - strength, 1 + strength], clipped to [0,1]."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    image = image * b
    mean = image.mean()
    image = (image - mean) * c + mean
    gray = image.mean(0, keepdims=True)
    image = (image - gray) * s + gray
    return np.clip(image, 0.0, 1.0).astype(np.float32)


class TrainTransform:
    """Resize, random crop, flip and colour jitter for training.

    Args:
        size: (H, W) after resizing; crop: (H, W) of the random crop (default: size, i.e. no crop).
        jitter: colour-jitter strength (0 disables).
        seed: seed of the transform's own generator.
    """

    def __init__(self, size, crop=None, jitter: float = 0.5, seed: int = 0, ignore_index: int = 255):
        crop = None if crop is None else check_size(crop, "crop")
        self.size, self.crop, self.jitter, self.ignore_index = check_size(size), crop, jitter, ignore_index
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise LipcertError(f"Expected `seed` to be an int >= 0, but got {seed!r}.")
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, target):
        """The pair resized, randomly cropped (when ``crop`` is set), flipped and colour-jittered."""
        image, target = resize_pair(image, target, self.size)
        if self.crop is not None:
            image, target = random_crop(image, target, tuple(self.crop), self.rng, self.ignore_index)
        image, target = random_flip(image, target, self.rng)
        if self.jitter:
            image = colour_jitter(image, self.rng, self.jitter)
        return np.ascontiguousarray(image), np.ascontiguousarray(target)


class EvalTransform:
    """Resize only (bilinear image, nearest target)."""

    def __init__(self, size):
        self.size = check_size(size)

    def __call__(self, image, target):
        """The (image, target) pair resized to ``size``."""
        return resize_pair(image, target, self.size)
