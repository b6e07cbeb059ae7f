"""What the commands read: models, datasets and batches, checked before anything runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import LipcertError


def check_model_arg(name_or_path: str, option: str) -> None:
    """A shipped model name or an existing .pt file, checked before anything is loaded."""
    from ..models import list_pretrained

    if Path(name_or_path).suffix == ".pt":
        if not Path(name_or_path).is_file():
            raise LipcertError(f"{option}: no checkpoint file at {name_or_path}.")
    elif name_or_path not in list_pretrained():
        raise LipcertError(
            f"{option}: {name_or_path!r} is neither a .pt checkpoint nor a shipped model ({list_pretrained()})."
        )


def check_out(out: str, option: str = "--out") -> None:
    """The output folder can be created: neither it nor a parent is an existing file."""
    for p in (Path(out), *Path(out).parents):
        if p.exists() and not p.is_dir():
            raise LipcertError(f"{option} {out}: {p} exists and is not a folder.")


def check_classes(model, dataset, option: str) -> None:
    """The model's class count (from its config) must be the dataset's, before anything runs."""
    k_model = (getattr(model, "config", None) or {}).get("num_classes")
    k_data = getattr(dataset, "num_classes", None)
    if k_model is not None and k_data is not None and int(k_model) != int(k_data):
        raise LipcertError(f"{option}: the model predicts {k_model} classes but the dataset has {k_data}.")


def check_data_args(args: argparse.Namespace) -> None:
    """The dataset options are consistent (a root for the datasets read from disk)."""
    dataset = getattr(args, "dataset", None)
    if dataset in ("pets", "cityscapes"):
        if args.root is None:
            raise LipcertError(f"--root DIR is required for --dataset {dataset}.")
        if not Path(args.root).is_dir():
            raise LipcertError(f"--root {args.root}: no such folder.")


def load_model(name_or_path: str):
    """A checkpoint (a ``.pt`` path) or a shipped model (a name), in eval mode."""
    from pathlib import Path

    from ..models import load_checkpoint, load_pretrained

    return load_checkpoint(name_or_path) if Path(name_or_path).suffix == ".pt" else load_pretrained(name_or_path)


def git_commit() -> str:
    """The commit of the working tree, or ``unknown`` outside a git checkout."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return "unknown"


DEFAULT_SIZES = {"digits": (64, 64), "pets": (128, 128), "cityscapes": None}  # None: native resolution


def _size(values, name: str) -> tuple[int, int] | None:
    """``--size H W`` or ``--size S`` as (H, W); without it the dataset's default (Cityscapes: native)."""
    if values is None:
        return DEFAULT_SIZES[name]
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) not in (1, 2):
        raise LipcertError(f"--size takes H W or one value, but got {values}.")
    return (values[0], values[-1])


def make_dataset(name: str, split: str, n: int | None, size, seed: int, root: str | None):
    """The dataset a command runs on (digits generated, pets and cityscapes read from ``root``).

    ``size`` None: the dataset's default (digits 64, Pets 128, Cityscapes its native 1024x2048 labels:
    l2 radii and the metric are only comparable at one resolution, see docs/training.md).
    """
    from ..data import DigitScenes

    size = _size(size, name)
    if name == "digits":
        if size[0] != size[1]:
            raise LipcertError(f"--size: the digit scenes are square, but got {size[0]} {size[1]}.")
        return DigitScenes(split, size=size[0], n=n or 1000, seed=seed)
    from ..data import Cityscapes, OxfordIIITPet, TrainTransform

    if root is None:
        raise LipcertError(f"--root DIR is required for --dataset {name}.")
    if split == "train" and size is None:
        size = (1024, 2048)  # training crops need one size; native Cityscapes frames are 1024x2048
    tf = TrainTransform(size, jitter=0.5, seed=seed) if split == "train" else None
    if name == "pets":
        return OxfordIIITPet(root, split="trainval" if split == "train" else "test", size=size, transform=tf)
    return Cityscapes(root, split="train" if split == "train" else "val", size=size, transform=tf)


def batches_of(dataset, indices, batch_size: int):
    """(images, labels) batches of the items at ``indices`` (an int n: the first n items)."""
    import torch

    indices = range(indices) if isinstance(indices, int) else indices
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
