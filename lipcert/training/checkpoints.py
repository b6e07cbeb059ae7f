"""Training checkpoints: the exported model with its metadata, and initialisation from a checkpoint."""

from __future__ import annotations

import json

import torch
from torch import nn

from ..core.errors import LipcertError
from ..lipschitz import export_plain
from ..models.pretrained import read_checkpoint


def init_from_checkpoint(model: nn.Module, path: str) -> int:
    """Copy every weight of the checkpoint whose name and shape match (PIR-AT initialisation)."""
    ckpt = read_checkpoint(path, ())
    state = ckpt.get("state_dict", ckpt)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise LipcertError(f"No weight of {path} matches the model: cannot initialise from it.")
    model.load_state_dict(matched, strict=False)
    return len(matched)


def save_checkpoint(path: str, model: nn.Module, meta: dict) -> None:
    """Save the exported (frozen) weights + the model config + training metadata.

    Load with :func:`lipcert.models.load_checkpoint` (``torch.load(weights_only=True)``).
    """
    frozen = export_plain(model)
    torch.save(
        {
            "config": dict(model.config),
            "state_dict": frozen.state_dict(),
            "exported": True,
            "meta": json.loads(json.dumps(meta, default=str)),
        },
        path,
    )
