"""LipNet (DeepLabV3-style) and LipUNet (U-Net-style) segmentation networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core.errors import LipcertError
from .layers import InputNormalization, ScaledConcat, block, check_input_size, check_parametrization, conv, up_conv

torch.fx.wrap("check_input_size")  # a leaf call when traced (fx wraps by name in the calling module)

PRESETS: dict[str, list[tuple[int, int]]] = {
    "S": [(32, 3), (64, 3), (128, 3)],
    "M1": [(64, 5), (128, 5), (256, 5)],
    "M2": [(64, 5), (128, 5), (256, 5), (512, 5)],
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _stages(preset: str | None, widths: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    if widths is not None:
        stages = [(int(c), int(r)) for c, r in widths]
    elif preset in PRESETS:
        stages = PRESETS[preset]
    else:
        raise LipcertError(f"Expected `preset` in {list(PRESETS)} or explicit `widths`, but got {preset!r}.")
    if not stages or any(c < 2 or c % 2 or r < 1 for c, r in stages):
        raise LipcertError(f"Expected (even channels >= 2, repeats >= 1) per stage, but got {stages}.")
    return stages


class _Base(nn.Module):
    def _init_common(self, num_classes, in_channels, mean, std, gain, parametrization, config):
        self.config = config
        self.parametrization = check_parametrization(parametrization)
        mean = mean if mean is not None else (0.5,) * in_channels
        std = std if std is not None else (1.0,) * in_channels
        if len(mean) != in_channels or len(std) != in_channels:
            raise LipcertError(f"Expected {in_channels} values in `mean` and `std`, but got {mean}, {std}.")
        self.normalize = InputNormalization(mean, std, gain)


class LipNet(_Base):
    """DeepLabV3-style 1-Lipschitz segmentation network (up to the input normalisation's gain / min std).

    Encoder stages: one 3x3 stride-2 conv then (r-1) 3x3 convs, each followed by MaxMin and
    BatchCentering. ASPP: a 1x1 branch and dilated 3x3 branches, concatenated with 1/sqrt(b) scaling, then
    a 1x1 projection. Decoder: per stage, a 2x2 stride-2 orthogonal transposed conv halving the channels.
    Head: a 1x1 conv (with bias) to ``num_classes`` logits at input resolution.

    Args:
        num_classes: K.
        in_channels: C of the [0,1] input image.
        preset: "S" = (32,3),(64,3),(128,3); "M1" = (64,5),(128,5),(256,5); "M2" = M1 + (512,5).
        widths: custom [(channels, repeats), ...] instead of a preset.
        rates: ASPP dilation rates.
        mean: per-channel mean (C,) of the input normalisation ``gain * (x - mean) / std``.
        std: per-channel std (C,) > 0 of that normalisation.
        gain: its positive scalar gain (L = gain / min(std)).
        parametrization: "aoc" (default), "spectral" or "plain" (the unconstrained twin).

    Input (B, C, H, W) with H, W divisible by 2**len(stages); output (B, K, H, W).

    Examples:
        >>> import torch
        >>> net = LipNet(3, widths=[(8, 1), (16, 1)], rates=(2,)).eval()
        >>> net(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        preset: str = "S",
        widths: Sequence[tuple[int, int]] | None = None,
        rates: Sequence[int] = (6, 12, 18),
        mean=None,
        std=None,
        gain: float = 1.0,
        parametrization: str = "aoc",
    ) -> None:
        super().__init__()
        stages = _stages(preset, widths)
        config = dict(
            arch="LipNet",
            num_classes=num_classes,
            in_channels=in_channels,
            preset=preset,
            widths=[list(s) for s in stages],
            rates=list(rates),
            mean=mean,
            std=std,
            gain=gain,
            parametrization=parametrization,
        )
        self._init_common(num_classes, in_channels, mean, std, gain, parametrization, config)
        p = self.parametrization
        layers, c_prev = [], in_channels
        for c, r in stages:
            layers.append(block(p, c_prev, c, stride=2))
            layers += [block(p, c, c) for _ in range(r - 1)]
            c_prev = c
        self.encoder = nn.Sequential(*layers)
        self.aspp = nn.ModuleList([block(p, c_prev, c_prev, k=1)] + [block(p, c_prev, c_prev, 3, 1, d) for d in rates])
        self.concat = ScaledConcat()
        self.project = block(p, c_prev * (1 + len(rates)), c_prev, k=1)
        ups = []
        for _ in stages:
            ups.append(nn.Sequential(up_conv(p, c_prev, c_prev // 2), *block(p, c_prev // 2, c_prev // 2)[1:]))
            c_prev //= 2
        self.decoder = nn.Sequential(*ups)
        self.head = conv(p, c_prev, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of images (B, C, H, W) whose size the strides divide."""
        h = self.encoder(self.normalize(check_input_size(x, 2 ** len(self.config["widths"]))))
        h = self.project(self.concat(*[branch(h) for branch in self.aspp]))
        return self.head(self.decoder(h))


class LipUNet(_Base):
    """U-Net-style 1-Lipschitz network: skips merged by scaled concatenation (1/sqrt(2)).

    Stem: 2x space-to-depth (pixel unshuffle, an isometry) + a 3x3 conv. Encoder stages as in LipNet;
    decoder: per stage a 2x2 stride-2 transposed conv, concatenation with the encoder feature of the same
    resolution scaled by 1/sqrt(2), and a 3x3 conv; a final pixel shuffle (isometry) and a 1x1 head.

    Args: as :class:`LipNet` (no ASPP), plus ``stem`` channels (default: the first stage's).

    Examples:
        >>> import torch
        >>> net = LipUNet(4, in_channels=1, widths=[(8, 1), (16, 1)]).eval()
        >>> net(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 4, 16, 16])
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        preset: str = "S",
        widths: Sequence[tuple[int, int]] | None = None,
        stem: int | None = None,
        mean=None,
        std=None,
        gain: float = 1.0,
        parametrization: str = "aoc",
    ) -> None:
        super().__init__()
        stages = _stages(preset, widths)
        stem = stem or stages[0][0]
        config = dict(
            arch="LipUNet",
            num_classes=num_classes,
            in_channels=in_channels,
            preset=preset,
            widths=[list(s) for s in stages],
            stem=stem,
            mean=mean,
            std=std,
            gain=gain,
            parametrization=parametrization,
        )
        self._init_common(num_classes, in_channels, mean, std, gain, parametrization, config)
        p = self.parametrization
        self.space_to_depth = nn.PixelUnshuffle(2)
        self.stem = block(p, in_channels * 4, stem)
        self.down = nn.ModuleList()
        c_prev, skips = stem, [stem]
        for c, r in stages:
            self.down.append(nn.Sequential(block(p, c_prev, c, stride=2), *[block(p, c, c) for _ in range(r - 1)]))
            c_prev = c
            skips.append(c)
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for c_skip in reversed(skips[:-1]):
            self.up.append(nn.Sequential(up_conv(p, c_prev, c_skip), *block(p, c_skip, c_skip)[1:]))
            self.fuse.append(block(p, 2 * c_skip, c_skip))
            c_prev = c_skip
        self.concat = ScaledConcat()
        self.depth_to_space = nn.PixelShuffle(2)
        if c_prev % 4:
            raise LipcertError(f"Expected stem channels divisible by 4, but got {c_prev}.")
        self.head = conv(p, c_prev // 4, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of images (B, C, H, W) whose size the strides divide."""
        h = self.stem(self.space_to_depth(self.normalize(check_input_size(x, 2 ** (len(self.config["widths"]) + 1)))))
        feats = [h]
        for stage in self.down:
            h = stage(h)
            feats.append(h)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(feats[:-1]), strict=True):
            h = fuse(self.concat(up(h), skip))
        return self.head(self.depth_to_space(h))
