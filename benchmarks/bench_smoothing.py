"""Benchmark of SegCertify: time per image by phase, and the vectorised statistics vs a per-pixel loop.

Run: ``.venv/bin/python benchmarks/bench_smoothing.py [--height 256 --width 512 --n0 10 --n 100]``.
Prints markdown tables (a benchmark, not a timed test).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.stats import binomtest

from lipcert.models import LipNet, export_plain
from lipcert.smoothing import reject, segcertify, segcertify_from_samples, tau_for_radius
from lipcert.smoothing.stats import pvalue_table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--n0", type=int, default=10)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--loop-pixels", type=int, default=20_000)
    parser.add_argument("--stat-pixels", type=int, default=2_000_000)
    parser.add_argument("--samples-size", type=int, nargs=2, default=[512, 1024], help="H W of the sample arrays")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}"
    )
    torch.manual_seed(0)
    model = export_plain(LipNet(19, preset="S", rates=(6, 12, 18), parametrization="plain"))
    x = torch.rand(3, args.height, args.width)
    sigma, alpha = 0.25, 0.001
    tau = tau_for_radius(0.1, sigma)
    res = segcertify(model, x, sigma, args.n0, args.n, tau, alpha, batch_size=8)
    total = sum(res.timings.values())
    print(f"\n### SegCertify, LipNet-S-sized plain model, 3x{args.height}x{args.width}, n0={args.n0}, n={args.n}")
    print("| phase | seconds per image | share |")
    print("|---|---|---|")
    for k, v in res.timings.items():
        print(f"| {k} | {v:.3f} | {v / total:.1%} |")
    print(f"| total | {total:.3f} | 100% |")

    rng = np.random.default_rng(0)
    n = args.n
    counts = rng.binomial(n, 0.97, size=args.stat_pixels)
    t0 = time.perf_counter()
    table = pvalue_table(n, tau)
    certified = reject(counts, n, tau, alpha, "holm", table=table)
    t_vec = time.perf_counter() - t0
    sub = counts[: args.loop_pixels]
    t0 = time.perf_counter()
    p_loop = np.array([binomtest(int(c), n, tau, alternative="greater").pvalue for c in sub])
    order = np.argsort(p_loop)
    thresholds = alpha / (len(sub) - np.arange(len(sub)))
    fails = np.flatnonzero(p_loop[order] > thresholds)
    _ = fails[0] if len(fails) else len(sub)
    t_loop = time.perf_counter() - t0
    per_vec = t_vec / args.stat_pixels
    per_loop = t_loop / args.loop_pixels
    print(
        f"\n### p-values + Holm correction ({args.stat_pixels} pixels vectorised, {args.loop_pixels} pixels "
        "per-pixel scipy.stats.binomtest loop, the reference implementation's approach)"
    )
    print("| method | pixels | seconds | us per pixel |")
    print("|---|---|---|---|")
    print(f"| table of n+1 p-values + histogram Holm | {args.stat_pixels} | {t_vec:.4f} | {per_vec * 1e6:.4f} |")
    print(f"| per-pixel binomtest loop + sort | {args.loop_pixels} | {t_loop:.3f} | {per_loop * 1e6:.2f} |")
    print(f"\nspeed-up per pixel: {per_loop / per_vec:.0f}x; certified {certified.mean():.3f}")
    _from_samples(args)


def _from_samples(args) -> None:
    """segcertify_from_samples on precomputed label samples at 512x1024 (the mode/count pass fused).

    The pass reads every sample once, so its time follows the bytes per label: int64 (what torch's argmax
    returns), int32, and uint8 (enough for up to 255 classes, the usual way to store label maps).
    """
    rng = np.random.default_rng(1)
    h, w = args.samples_size
    base = rng.integers(0, 19, size=(args.n0 + args.n, h, w), dtype=np.int64)
    base[:, : h // 2] = 3  # half the image agrees under noise: certified pixels
    tau = tau_for_radius(0.1, 0.25)
    print(f"\n### segcertify_from_samples, samples ({args.n0 + args.n}, {h}, {w}), {args.repeats} calls per dtype")
    print("| sample dtype | MB read | seconds per image: median | min | max |")
    print("|---|---|---|---|---|")
    reference = None
    for dtype in (np.int64, np.int32, np.uint8):
        samples = base.astype(dtype)
        out = segcertify_from_samples(samples, args.n0, tau, 0.001, 0.25)  # warm-up (compiles the kernel)
        if reference is None:
            reference = out
        assert np.array_equal(out.labels, reference.labels)  # the same certificate whatever the dtype
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            segcertify_from_samples(samples, args.n0, tau, 0.001, 0.25)
            times.append(time.perf_counter() - t0)
        mb = samples.nbytes / 1e6
        print(f"| {np.dtype(dtype).name} | {mb:.0f} | {np.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()
