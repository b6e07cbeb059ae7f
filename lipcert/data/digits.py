"""DigitScenes: the embedded default dataset, composited from scikit-learn's bundled digits (no download)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..core.errors import LipcertError

NUM_CLASSES = 11  # 0 = background, 1 + d for digit d
IGNORE_INDEX = 255
_INK, _AMBIGUOUS = 0.5, 0.2  # upscaled ink intensity thresholds: label / ignore


def _load_digits() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "DigitScenes needs scikit-learn: install the demo extra, e.g. `pip install -e '.[demo]'`."
        ) from exc
    data = load_digits()
    return data.images.astype(np.float32) / 16.0, data.target.astype(np.int64)


def _split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Disjoint source digits: per class, the first 2/3 (by index) are train, the rest test."""
    out = []
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        cut = (2 * len(idx)) // 3
        out.append(idx[:cut] if split == "train" else idx[cut:])
    return np.sort(np.concatenate(out))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth coloured texture in [0, 0.45]: low-resolution noise up-sampled bilinearly, plus grain."""
    coarse = rng.uniform(0, 1, size=(3, 6, 6)).astype(np.float32)
    chans = [np.asarray(Image.fromarray(c, mode="F").resize((size, size), Image.BILINEAR)) for c in coarse]
    tex = np.stack(chans) * rng.uniform(0.15, 0.35) + rng.uniform(0.0, 0.1, size=(3, 1, 1))
    tex += rng.normal(0, 0.03, size=tex.shape)
    return np.clip(tex, 0.0, 0.45).astype(np.float32)


class DigitScenes:
    """Scenes of 2-4 up-scaled handwritten digits on a textured background, with pixel labels.

    Labels: 0 = background, ``1 + d`` for digit d (11 classes); pixels at the blurry border of a digit
    (up-scaled ink between 0.2 and 0.5) are ``255`` (ignored). Train and test scenes use disjoint source
    digits. Scene ``i`` is a pure function of ``(split, seed, i)``: deterministic, generated on the fly.

    Args:
        split: ``"train"`` or ``"test"``.
        size: canvas side in pixels (>= 32, a multiple of 8).
        n: number of scenes.
        seed: base seed.
        cache: keep rendered scenes in memory (about 50 kB each at size 64).

    Returns per item ``(image, target)``: float32 (3, size, size) in [0, 1] and int64 (size, size).

    Examples:
        >>> ds = DigitScenes("test", size=64, n=4, seed=0)
        >>> image, target = ds[0]
        >>> tuple(image.shape), tuple(target.shape), float(image.min()) >= 0.0, float(image.max()) <= 1.0
        ((3, 64, 64), (64, 64), True, True)
    """

    num_classes = NUM_CLASSES
    foreground_classes = tuple(range(1, NUM_CLASSES))  # the ten digits
    class_names = ("background", *(f"digit {d}" for d in range(10)))
    ignore_index = IGNORE_INDEX

    def __init__(self, split: str = "train", size: int = 64, n: int = 1000, seed: int = 0, cache: bool = True) -> None:
        if split not in ("train", "test"):
            raise LipcertError(f"Expected `split` 'train' or 'test', but got {split!r}.")
        if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 8:
            raise LipcertError(f"Expected `size` to be an int >= 32 and a multiple of 8, but got {size!r}.")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LipcertError(f"Expected `n` to be an int >= 1, but got {n!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise LipcertError(f"Expected `seed` to be an int >= 0, but got {seed!r}.")
        self.split, self.size, self.n, self.seed = split, size, n, seed
        images, labels = _load_digits()
        idx = _split_indices(labels, split)
        self._digits, self._labels = images[idx], labels[idx]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if self._cache is None:
            image, target = self.render(i)
        elif i in self._cache:
            image, target = self._cache[i]
        else:
            image, target = self._cache[i] = self.render(i)
        return torch.from_numpy(image.copy()), torch.from_numpy(target.copy())

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Numpy (image, target) of scene i."""
        rng = np.random.default_rng([self.seed, 0 if self.split == "train" else 1, i])
        s = self.size
        image = _background(rng, s)
        target = np.zeros((s, s), dtype=np.int64)
        occupied = np.zeros((s, s), dtype=bool)
        for _ in range(int(rng.integers(2, 5))):
            j = int(rng.integers(len(self._digits)))
            side = int(rng.integers(s // 4, s // 2 - 4))
            ink = np.asarray(Image.fromarray(self._digits[j], mode="F").resize((side, side), Image.BILINEAR))
            ink = np.clip(ink, 0.0, 1.0)
            for _try in range(10):  # avoid heavy overlap
                y, x = (int(v) for v in rng.integers(0, s - side, size=2))
                if occupied[y : y + side, x : x + side].mean() < 0.15:
                    break
            colour = rng.uniform(0.6, 1.0, size=(3, 1, 1)).astype(np.float32)
            region = image[:, y : y + side, x : x + side]
            image[:, y : y + side, x : x + side] = region * (1 - ink) + colour * ink
            lab = target[y : y + side, x : x + side]
            lab[ink > _AMBIGUOUS] = IGNORE_INDEX
            lab[ink > _INK] = 1 + int(self._labels[j])
            occupied[y : y + side, x : x + side] |= ink > _AMBIGUOUS
        return np.clip(image, 0.0, 1.0).astype(np.float32), target
