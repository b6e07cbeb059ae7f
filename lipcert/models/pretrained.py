"""Checkpoints: loading (weights_only=True) and the models shipped with lipcert."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..core.errors import LipcertError
from ..lipschitz.export import export_plain
from .lipnet import LipNet, LipUNet

_ARCHS = {"LipNet": LipNet, "LipUNet": LipUNet}
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def build_model(config: dict) -> nn.Module:
    """Build an architecture from its ``config`` dict (as stored in ``model.config``)."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch not in _ARCHS:
        raise LipcertError(f"Expected a config with `arch` in {list(_ARCHS)}, but got {arch!r}.")
    if "widths" in cfg:
        cfg["widths"] = [tuple(w) for w in cfg["widths"]]
    return _ARCHS[arch](**cfg)


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Load a lipcert checkpoint (``torch.load(weights_only=True)``) as a model in eval mode.

    Exported checkpoints (the default of :func:`lipcert.training.save_checkpoint`) come back with plain
    frozen layers: the Lipschitz bound is computed on exactly these weights.

    Args:
        path: a ``.pt`` file written by :func:`lipcert.training.save_checkpoint`.

    Returns:
        The model (eval mode) with ``.config`` and ``.meta`` attributes.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, ("config", "state_dict"))
    try:
        model = build_model(ckpt["config"])
        if ckpt.get("exported", False):
            model = export_plain(model)
        model.load_state_dict(ckpt["state_dict"])
    except (LipcertError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        reason = f"its config and weights build no model: {exc}"
        raise LipcertError(f"{path} is not a lipcert checkpoint ({reason}).") from exc
    model.config = dict(ckpt["config"])
    model.meta = ckpt.get("meta", {})
    return model.eval()


def read_checkpoint(path: str | os.PathLike, required: tuple[str, ...]) -> dict:
    """``torch.load(path, weights_only=True)`` of a lipcert file holding the keys ``required``.

    Never unpickles code: a crafted file cannot execute anything, and anything else than a dict with
    those keys is refused with one message.

    Raises:
        LipcertError: "PATH is not a lipcert checkpoint (...)" for a missing, empty, garbage or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise LipcertError(f"No checkpoint at {path} (no such file).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds (pickle, zip, EOF, unsafe globals)
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:
            reason = "it holds Python objects other than tensors and plain data, which lipcert never unpickles"
        elif isinstance(exc, EOFError) or not text:
            reason = "the file is empty or truncated"
        else:
            reason = "not a readable torch file"
        raise LipcertError(f"{path} is not a lipcert checkpoint ({reason}).") from None
    if not isinstance(ckpt, dict) or any(key not in ckpt for key in required):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise LipcertError(f"{path} is not a lipcert checkpoint (expected the keys {list(required)}, found {found}).")
    return ckpt


def list_pretrained() -> list[str]:
    """Names of the checkpoints shipped with lipcert.

    Examples:
        >>> all(isinstance(n, str) for n in list_pretrained())
        True
    """
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def load_pretrained(name: str) -> nn.Module:
    """A shipped model in eval mode, ready for :func:`lipcert.certify` (its bound is computed, not assumed).

    Args:
        name: one of :func:`list_pretrained`.

    Examples:
        >>> model = load_pretrained("digits-lipunet")
        >>> model.config["arch"], model.training
        ('LipUNet', False)
    """
    if name not in list_pretrained():
        raise LipcertError(f"Unknown pretrained model {name!r}; available: {list_pretrained()}.")
    return load_checkpoint(PRETRAINED_DIR / f"{name}.pt")
