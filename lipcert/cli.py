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


def _git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return "unknown"


def _make_dataset(name: str, split: str, n: int | None, size: int, seed: int, root: str | None):
    from .data import DigitScenes

    if name == "digits":
        return DigitScenes(split, size=size, n=n or 1000, seed=seed)
    from .data import Cityscapes, OxfordIIITPet

    if root is None:
        raise SystemExit(f"--root DIR is required for --dataset {name}")
    if name == "pets":
        return OxfordIIITPet(root, split="trainval" if split == "train" else "test", size=size)
    return Cityscapes(root, split="train" if split == "train" else "val", size=size)


def _train(args: argparse.Namespace) -> int:
    import platform
    import sys as _sys

    import torch

    from .models import build_model
    from .recipes import get_recipe
    from .train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    recipe = get_recipe(args.recipe, **overrides)
    data = recipe["data"]
    if args.dataset:
        data["dataset"] = args.dataset
    if args.n_train:
        data["n_train"] = args.n_train
    cfg = recipe["train"]
    torch.manual_seed(cfg.seed)
    model = build_model(recipe["model"])
    train_set = _make_dataset(data["dataset"], "train", data.get("n_train"), data["size"], data["seed"], args.root)
    eval_set = _make_dataset(data["dataset"], "test", data.get("n_eval"), data["size"], data["seed"], args.root)
    meta = {"recipe": args.recipe, "commit": _git_commit(), "command": " ".join(_sys.argv),
            "machine": f"{platform.machine()} {platform.processor()}", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "data": data}
    res = train(model, train_set, cfg, eval_set=eval_set, out=args.out, resume=args.resume,
                progress=not args.no_progress, meta=meta)
    print(f"saved {args.out} after {res['seconds']:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipcert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main comparison on the embedded default dataset")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    tr = sub.add_parser("train", help="train a model from a named recipe")
    tr.add_argument("--recipe", required=True, help="e.g. digits-lipunet, digits-twin-sigma025")
    tr.add_argument("--out", required=True, help="checkpoint path (.pt)")
    tr.add_argument("--dataset", choices=["digits", "pets", "cityscapes"], default=None)
    tr.add_argument("--root", default=None, help="dataset folder (pets / cityscapes)")
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--n-train", type=int, default=None)
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--resume", action="store_true")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
