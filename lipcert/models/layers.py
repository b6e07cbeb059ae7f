"""Building blocks of the lipcert architectures: Lipschitz or unconstrained, chosen by one argument.

``parametrization``:
- ``"aoc"`` (default): orthogonium ``AdaptiveOrthoConv2d`` / ``AdaptiveOrthoConvTranspose2d``, orthogonal
  on the whole feature map (tight, no receptive-field shrinkage), zero padding, MaxMin, BatchCentering;
- ``"spectral"``: deel-torchlip ``SpectralConv2d`` / ``SpectralConvTranspose2d`` (Björck + the
  receptive-field factor), MaxMin, BatchCentering;
- ``"plain"``: the unconstrained twin: ``nn.Conv2d`` + ``ReLU`` + ``BatchNorm2d`` (no certificate).
"""

from __future__ import annotations

import math

import torch
from deel import torchlip
from orthogonium.layers.conv.AOC import AdaptiveOrthoConv2d, AdaptiveOrthoConvTranspose2d
from orthogonium.layers.custom_activations import MaxMin
from torch import nn

from ..core.errors import LipcertError
from ..lipschitz import register_layer_bound

PARAMETRIZATIONS = ("aoc", "spectral", "plain")


def check_input_size(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Return ``x`` unchanged, after checking that H and W are multiples of ``multiple``.

    A network whose strides do not divide the input would return a logit map of another size than the
    image, and a certificate must be over the pixels the user gave. Wrapped for torch.fx (a leaf call
    that :func:`lipcert.lipschitz_bound` treats as the identity it is).

    Raises:
        LipcertError: when H or W is not a multiple.
    """
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise LipcertError(
            f"Expected an input whose height and width are multiples of {multiple} (the network's total "
            f"stride), but got {h}x{w}: pad or crop the image (and its labels) first."
        )
    return x


check_input_size.lipcert_identity = True  # returns its input: lipschitz_bound keeps the bound


class InputNormalization(nn.Module):
    """``gain * (x - mean) / std`` per channel: inside the model, counted in its Lipschitz bound.

    Its l2 Lipschitz constant is ``gain / min(std)``. The gain is an explicit, documented scale: a
    1-Lipschitz body after a gain g makes a g-Lipschitz model, and certificates use that L.

    Args:
        mean: per-channel mean (C,) of the [0,1] input.
        std: per-channel std (C,) of the [0,1] input, > 0.
        gain: a positive scalar.
    """

    def __init__(self, mean, std, gain: float = 1.0) -> None:
        super().__init__()
        std_t = torch.as_tensor(std, dtype=torch.float32)
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
            raise LipcertError(f"Expected `gain` to be a finite number > 0, but got {gain!r}.")
        if not bool(torch.isfinite(std_t).all()) or bool(torch.any(std_t <= 0)):
            raise LipcertError(f"Expected every `std` to be finite and > 0, but got {std}.")
        if not bool(torch.isfinite(mean_t).all()) or mean_t.numel() != std_t.numel():
            raise LipcertError(f"Expected finite `mean` with one value per channel like `std`, but got {mean}.")
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("scale", (gain / std_t).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) * scale`` per channel."""
        return (x - self.mean) * self.scale


register_layer_bound(InputNormalization, lambda m, hw: float(m.scale.abs().max()))


def check_parametrization(parametrization: str) -> str:
    """The parametrization name, or a LipcertError naming the known ones."""
    if parametrization not in PARAMETRIZATIONS:
        raise LipcertError(f"Expected `parametrization` in {PARAMETRIZATIONS}, but got {parametrization!r}.")
    return parametrization


def conv(p: str, c_in: int, c_out: int, k: int, stride: int = 1, dilation: int = 1, bias: bool = False) -> nn.Module:
    """A k x k conv with zero padding keeping size // stride (integer padding, never 'same')."""
    pad = dilation * (k - 1) // 2
    if p == "aoc":
        return AdaptiveOrthoConv2d(
            c_in, c_out, k, stride=stride, padding=pad, dilation=dilation, bias=bias, padding_mode="zeros"
        )
    if p == "spectral":
        return torchlip.SpectralConv2d(c_in, c_out, k, stride=stride, padding=pad, dilation=dilation, bias=bias)
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, dilation=dilation, bias=bias)


def up_conv(p: str, c_in: int, c_out: int) -> nn.Module:
    """A 2x2 stride-2 transposed conv (orthogonal for "aoc")."""
    if p == "aoc":
        return AdaptiveOrthoConvTranspose2d(c_in, c_out, 2, stride=2, bias=False)
    if p == "spectral":
        return torchlip.SpectralConvTranspose2d(c_in, c_out, 2, stride=2, bias=False)
    return nn.ConvTranspose2d(c_in, c_out, 2, stride=2, bias=False)


def activation(p: str, channels: int) -> nn.Module:
    """MaxMin (channel-preserving, 1-Lipschitz) or ReLU for the plain twin."""
    return nn.ReLU() if p == "plain" else MaxMin()


def norm(p: str, channels: int) -> nn.Module:
    """BatchCentering (a shift in eval mode: 1-Lipschitz) or BatchNorm2d for the plain twin."""
    return nn.BatchNorm2d(channels) if p == "plain" else torchlip.BatchCentering(channels)


def block(p: str, c_in: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv -> activation -> centering."""
    return nn.Sequential(conv(p, c_in, c_out, k, stride, dilation), activation(p, c_out), norm(p, c_out))


class ScaledConcat(nn.Module):
    """Concatenate b branches along channels and scale by 1/sqrt(b): 1-Lipschitz if each branch is."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """The inputs concatenated on channels, scaled by ``1 / sqrt(len(xs))`` (1-Lipschitz)."""
        return torch.cat(xs, dim=1) * (1.0 / math.sqrt(len(xs)))
