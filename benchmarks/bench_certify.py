"""Benchmark of certify_logits on Cityscapes-sized logits: seconds, pixels per second, peak memory.

Run: ``.venv/bin/python benchmarks/bench_certify.py [--sizes 512x1024 1024x2048] [--repeats 3]``.
Prints a markdown table (a benchmark, not a timed test). Peak memory is the peak resident-set growth
of this process during the call (tracemalloc cannot see torch's allocations).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

import lipcert


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"])
    parser.add_argument(
        "--batches", nargs="+", default=["16x11x64x64"], help="BxKxHxW batches of small images (one image per job)"
    )
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(
        f"certify_logits alone (logits precomputed), {args.repeats} timed calls after a warm-up; the single radius "
        "is the largest of the 64 (same candidates kept): ms per image median [min, max]"
    )
    print("| logits (B x K x H x W) | metric | 1 radius (eps 1.0) | 64 radii (0.01..1.0) | 64 / 1 (medians) | "
          "Mpixels/s (64 radii) | peak RSS (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    lipcert.certify_logits(
        torch.randn(1, 3, 8, 8), [0.1], "pixel_accuracy", torch.zeros(1, 8, 8, dtype=torch.long), lipschitz=1.0
    )  # compile the kernels
    shapes = [(1, args.classes, *(int(v) for v in size.split("x"))) for size in args.sizes]
    shapes += [tuple(int(v) for v in batch.split("x")) for batch in args.batches]
    for b, k, h, w in shapes:
        logits = torch.randn(b, k, h, w, generator=gen) * 3
        target = torch.randint(0, k, (b, h, w), generator=gen)
        target = torch.where(torch.rand(target.shape, generator=gen) < 0.9, logits.argmax(1), target)  # mostly correct
        target[:, :2] = 255
        for metric in ("pixel_accuracy", "recall"):
            one = _times(logits, np.array([1.0]), metric, target, args.repeats)
            many = _times(logits, np.linspace(0.01, 1.0, 64), metric, target, args.repeats)
            ratio = float(np.median(many) / np.median(one))
            print(
                f"| {b} x {k}x{h}x{w} | {metric} | {_spread(one, b)} | {_spread(many, b)} | {ratio:.2f} | "
                f"{b * h * w / float(np.median(many)) / 1e6:.1f} | {_peak_rss_mb():.0f} |",
                flush=True,
            )


def _times(logits, eps, metric, target, repeats) -> list[float]:
    """Seconds of ``repeats`` calls of certify_logits, after one warm-up call at this size."""
    lipcert.certify_logits(logits, eps, metric, target, lipschitz=1.0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lipcert.certify_logits(logits, eps, metric, target, lipschitz=1.0)
        times.append(time.perf_counter() - t0)
    return times


def _spread(times: list[float], per: int) -> str:
    ms = np.array(times) * 1e3 / per
    return f"{np.median(ms):.3f} [{ms.min():.3f}, {ms.max():.3f}]"


if __name__ == "__main__":
    main()
