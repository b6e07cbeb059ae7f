"""Benchmark: ``lipschitz_bound`` on plain (bring-your-own) segmentation networks and on single layers.

Run: ``.venv/bin/python benchmarks/bench_zoo.py [--sizes 256x512 512x1024] [--repeats 3]``.
Prints two markdown tables (a benchmark, not a timed test): the bound and its wall time for a zoo of
random-init plain models of real shapes at each input size, and the time per layer type. Times are the
median of ``--repeats`` calls after one warm-up call (imports and tracing caches), with min and max;
each timed call starts with no memoised norm (``clear_norm_cache``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from lipcert import lipschitz_bound
from lipcert.lipschitz.operator_norms import clear_norm_cache


def _cbr(c_in: int, c_out: int, **kw) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, padding=kw.pop("padding", 1), **kw)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())


class FourConv(nn.Module):
    """Four plain 3x3 convolutions of width 64 (the case of the issue)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 19, 3, padding=1),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


class UNet(nn.Module):
    """Two-level U-Net: BatchNorm, max pooling, bilinear up-sampling, concatenated skips."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.e1, self.e2, self.mid = _cbr(3, c), _cbr(c, 2 * c), _cbr(2 * c, 4 * c)
        self.d2, self.d1, self.head = _cbr(6 * c, 2 * c), _cbr(3 * c, c), nn.Conv2d(c, 19, 1)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(F.max_pool2d(a, 2))
        m = self.mid(F.max_pool2d(b, 2))
        up = F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False)
        b = self.d2(torch.cat([up, b], 1))
        up = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(self.d1(torch.cat([up, a], 1)))


class DeepLabHead(nn.Module):
    """Stride-8 backbone, ASPP with dilations 1/6/12/18 and a global-pooling branch, bilinear output."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.backbone = nn.Sequential(_cbr(3, c, stride=2), _cbr(c, 2 * c, stride=2), _cbr(2 * c, 4 * c, stride=2))
        self.branches = nn.ModuleList(
            [nn.Conv2d(4 * c, c, 1)] + [nn.Conv2d(4 * c, c, 3, padding=r, dilation=r) for r in (6, 12, 18)]
        )
        self.pool = nn.Conv2d(4 * c, c, 1)
        self.head = nn.Conv2d(5 * c, 19, 1)

    def forward(self, x):
        f = self.backbone(x)
        g = self.pool(F.adaptive_avg_pool2d(f, 1)).expand(-1, -1, f.shape[2], f.shape[3])
        y = self.head(torch.cat([b(f) for b in self.branches] + [g], 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class FCN(nn.Module):
    """Stride-8 fully convolutional net, bilinear up-sampling to the input size."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _cbr(3, c, stride=2), _cbr(c, 2 * c, stride=2), _cbr(2 * c, 4 * c, stride=2), nn.Conv2d(4 * c, 19, 1)
        )

    def forward(self, x):
        return F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class Normalised(nn.Module):
    """In-model ImageNet normalisation (buffers), then the FCN."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.net = FCN()

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


ZOO = {"four conv 64": FourConv, "U-Net 32": UNet, "DeepLab head 32": DeepLabHead, "FCN s8 32": FCN,
       "normalised FCN": Normalised}  # fmt: skip
LAYERS = {
    "Conv2d 64->64 3x3": lambda: nn.Conv2d(64, 64, 3, padding=1),
    "Conv2d 64->64 3x3 stride 2": lambda: nn.Conv2d(64, 64, 3, stride=2, padding=1),
    "Conv2d 64->64 3x3 dilation 6": lambda: nn.Conv2d(64, 64, 3, padding=6, dilation=6),
    "ConvTranspose2d 64->64 2x2 s2": lambda: nn.ConvTranspose2d(64, 64, 2, stride=2),
    "Conv2d 64->64 1x1": lambda: nn.Conv2d(64, 64, 1),
    "BatchNorm2d 64": lambda: nn.BatchNorm2d(64),
    "bilinear x2": lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
}


def random_init(make) -> nn.Module:
    """``make()`` built under seed 0, in eval mode, with non-trivial BatchNorm statistics (same in every run)."""
    torch.manual_seed(0)
    model = make()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial eval statistics
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def _timed(model: nn.Module, shape, repeats: int) -> tuple[float, list[float]]:
    value = lipschitz_bound(model, shape, progress=False)  # warm-up
    times = []
    for _ in range(repeats):
        clear_norm_cache()  # cold: no norm memoised by an earlier call
        t0 = time.perf_counter()
        lipschitz_bound(model, shape, progress=False)
        times.append(time.perf_counter() - t0)
    return value, times


def _fmt(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} [{min(times):.2f}, {max(times):.2f}]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x512", "512x1024"], help="H x W input sizes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("lipschitz_bound wall seconds: median [min, max] of", args.repeats, "calls after a warm-up\n")
    print("| model | " + " | ".join(f"bound {h}x{w} | s {h}x{w}" for h, w in sizes) + " |")
    print("|---|" + "---|---|" * len(sizes))
    for name, make in ZOO.items():
        model = random_init(make)
        cells = []
        for h, w in sizes:
            value, times = _timed(model, (3, h, w), args.repeats)
            cells += [f"{value:.4g}", _fmt(times)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\n| layer (64 channels in) | " + " | ".join(f"s {h}x{w}" for h, w in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, make in LAYERS.items():
        layer = random_init(make)
        cells = [_fmt(_timed(layer, (64, h, w), args.repeats)[1]) for h, w in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
