"""Benchmark of the architectures: forward time, bound time and the upper/lower Lipschitz ratio.

Run: ``.venv/bin/python benchmarks/bench_models.py [--height 512 --width 1024] [--ratio-size 64 128]``.
Prints a markdown table (a benchmark, not a timed test). The ratio upper / lower compares the
guaranteed bound with the best realised ratio ||f(a) - f(b)|| / ||a - b|| found (power iteration on the
Jacobian + random directions, over several inputs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from lipcert import certify_logits, lipschitz_bound, lipschitz_lower_bound
from lipcert.models import LipNet, LipUNet, export_plain

ARCHS = {
    "LipNet-S": lambda: LipNet(19, preset="S"),
    "LipNet-M1": lambda: LipNet(19, preset="M1"),
    "LipUNet-S": lambda: LipUNet(19, preset="S"),
}


def _certify_time(model, x, repeats):
    """Median seconds per image of certify_logits (3 radii) on the model's logits for x."""
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        certify_logits(logits, [0.1, 0.25, 0.5], "pixel_accuracy", y, lipschitz=1.0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / x.shape[0]


def _time(model, x, repeats):
    with torch.no_grad():
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) / x.shape[0]


def _shipped_ratio() -> None:
    """The shipped digits-lipunet: its bound at 64x64 against the best realised ratio on 4 test scenes."""
    from lipcert.data import DigitScenes
    from lipcert.models import load_pretrained

    model = load_pretrained("digits-lipunet")
    ds = DigitScenes("test", n=4)
    x = torch.stack([ds[i][0] for i in range(4)])
    lower = lipschitz_lower_bound(model, x, generator=torch.Generator().manual_seed(0))
    upper = lipschitz_bound(model, (3, 64, 64), progress=False)
    print(f"shipped digits-lipunet at 64x64: upper {upper:.6f}, realised {lower:.3f} on 4 test scenes, "
          f"upper / lower {upper / lower:.3f}\n")  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--ratio-size", type=int, nargs=2, default=[64, 128])
    parser.add_argument(
        "--bound-size",
        type=int,
        nargs=2,
        default=[256, 512],
        help="input size at which lipschitz_bound is timed (its cost grows with H * W)",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--shipped-only", action="store_true", help="only the shipped model's upper / lower")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}"
    )
    _shipped_ratio()
    if args.shipped_only:
        return
    print(
        f"forward and certificate at {args.height}x{args.width}; lipschitz_bound timed at "
        f"{args.bound_size[0]}x{args.bound_size[1]}"
    )
    print(
        "| model | batch | s/image parametrised | s/image exported | certificate s/image (3 radii) | overhead | "
        f"lipschitz_bound s | upper bound | lower bound ({args.ratio_size[0]}x{args.ratio_size[1]}) | upper / lower |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.archs:
        net = ARCHS[name]().eval()
        exported = export_plain(net)
        t0 = time.perf_counter()
        upper = lipschitz_bound(exported, (3, *args.bound_size))
        t_bound = time.perf_counter() - t0
        h, w = args.ratio_size
        lower = lipschitz_lower_bound(exported, torch.rand(3, 3, h, w), n_iter=40, n_random=4)
        upper_small = lipschitz_bound(exported, (3, h, w))
        for b in args.batches:
            x = torch.rand(b, 3, args.height, args.width)
            tp, te = _time(net, x, args.repeats), _time(exported, x, args.repeats)
            tc = _certify_time(exported, x, args.repeats)
            print(
                f"| {name} | {b} | {tp:.3f} | {te:.3f} | {tc:.4f} | {(te + tc) / te:.3f} | {t_bound:.1f} | "
                f"{upper:.6f} | {lower:.4f} | {upper_small / lower:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
