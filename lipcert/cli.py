"""The ``lipcert`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    import torch

    from . import certify_logits, lipschitz_bound
    from .models import LipUNet, export_plain

    torch.manual_seed(args.seed)
    model = export_plain(LipUNet(4, in_channels=3, widths=[(16, 1), (32, 1)]))
    x = torch.rand(2, 3, 32, 32)
    L = lipschitz_bound(model, (3, 32, 32))
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    eps = [0.0, 0.01, 0.05, 0.1]
    cert = certify_logits(logits, eps, "pixel_accuracy", target, lipschitz=L)
    print(f"random LipUNet, guaranteed L = {L:.6f}; target = its own prediction")
    print("| eps | certified pixel accuracy (joint, macro over 2 images) | per-pixel (naive, macro) |")
    print("|---|---|---|")
    for j, e in enumerate(eps):
        print(f"| {e:g} | {cert.worst[:, j].mean():.4f} | {cert.naive[:, j].mean():.4f} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipcert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main comparison on the embedded default dataset")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
