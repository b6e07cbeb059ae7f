"""The argument parser of the ``lipcert`` command: typed options, defaults shown, one error line."""

from __future__ import annotations

import argparse
import math
import sys

from ..core.config import EPS_RANGE, LIPSCHITZ_RANGE
from ..worst_case.registry import METRICS
from .commands import audit_command, certify_command, compare_command, train_command


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, also for options without a help text."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or action.default in (argparse.SUPPRESS, None) or not action.option_strings:
            return text
        if isinstance(action.default, bool) and not action.default:
            return text
        return f"{text} (default: %(default)s)".strip()


class _Parser(argparse.ArgumentParser):
    """argparse with lipcert's error line: ``lipcert: error: ...`` on stderr, exit status 2."""

    def add_argument(self, *args, **kwargs):
        if "help" not in kwargs and kwargs.get("default") not in (None, False) and kwargs.get("action") != "version":
            kwargs["help"] = "(default: %(default)s)"  # argparse shows defaults only for options with a help text
        return super().add_argument(*args, **kwargs)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"lipcert: error: {message}\n")


_DESCRIPTION = (
    "Certify semantic segmentation models against l2 input perturbations from one forward pass "
    "(Lipschitz certificates), compare them with SegCertify (randomized smoothing) and audit them "
    "with attacks. Radii eps are l2 norms in [0,1] pixel units."
)
_EPS = "l2 radii in [0,1] pixel units"
_LIMIT = "use only the first LIMIT images of the split"
_SEED = "seed of the generated digit scenes and of every random draw (SegCertify's noise, attack starts)"
_THREADS = "torch and numba threads for this run (default: torch's)"
_NO_PROGRESS = "no progress bars"


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _radius(text: str) -> float:
    value = _number(text)
    lo, hi = EPS_RANGE
    if value < 0 or (value != 0 and not lo <= value <= hi):
        raise argparse.ArgumentTypeError(f"radius {text!r} must be 0 or in [{lo:g}, {hi:g}] (l2, [0,1] pixel units)")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _lipschitz(text: str) -> float:
    value = _positive(text)
    lo, hi = LIPSCHITZ_RANGE
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"L = {text!r} must be in [{lo:g}, {hi:g}]")
    return value


def _probability(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1)")
    return value


def _level(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"level {text!r} must be in [0, 1]")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _count(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _seed(text: str) -> int:
    value = _integer(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed {text!r} must be in [0, 2**63)")
    return value


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["digits", "pets", "cityscapes"], default="digits",
                   help="digits: the embedded scenes (no files needed); pets / cityscapes read --root")  # fmt: skip
    p.add_argument("--root", default=None, help="dataset folder (pets / cityscapes; layouts: docs/tutorials/train.md)")
    p.add_argument("--size", type=_count, nargs="+", default=None, metavar=("H", "W"),
                   help="resolution images are resized to: H W, or one value for a square (default: digits 64, "
                        "pets 128, cityscapes native 1024x2048, no resizing)")  # fmt: skip


def _add_compare_args(p: argparse.ArgumentParser, limit: int | None, out: str) -> None:
    _add_dataset_args(p)
    p.add_argument("--lip", default="digits-lipunet", help="the Lipschitz model: shipped name or checkpoint .pt")
    p.add_argument("--twin", default="digits-twin-sigma025",
                   help="the noise-trained model SegCertify smooths: shipped name or checkpoint .pt")  # fmt: skip
    p.add_argument("--limit", type=_count, default=limit, help=_LIMIT if limit else f"{_LIMIT} (default: all)")
    p.add_argument("--eps", type=_radius, nargs="+", default=[0.1, 0.25, 0.5], help=_EPS)
    p.add_argument("--sigma", type=_positive, nargs="+", default=[0.25], help="SegCertify noise levels sigma (l2)")
    p.add_argument("--n0", type=_count, nargs="+", default=[10], help="SegCertify samples n0 for the class guess")
    p.add_argument(
        "--n",
        "--num-samples",
        dest="n",
        type=_count,
        nargs="+",
        default=[100],
        help="SegCertify samples n (under torchrun spell it --num-samples: torchrun reads --n as its own option)",
    )
    p.add_argument("--alpha", type=_probability, default=0.001,
                   help="SegCertify's family-wise error rate per image (Holm correction)")  # fmt: skip
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--seed", type=_seed, default=0, help=_SEED)
    p.add_argument("--threads", type=_count, default=None, help=_THREADS)
    p.add_argument("--device", default="cpu", help="where both networks run, e.g. cuda (timings synchronise)")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS)
    p.add_argument(
        "--overhead-size",
        type=int,
        nargs=2,
        default=[512, 1024],
        metavar=("H", "W"),
        help="also time forward vs certificate on one image of this size (H W); 0 0 to skip",
    )


def _add_model_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="shipped model name or checkpoint .pt")
    _add_dataset_args(p)
    p.add_argument("--eps", type=_radius, nargs="+", default=[0.1, 0.25, 0.5], help=_EPS)


def _add_run_args(p: argparse.ArgumentParser, limit: int | None, batch_size: int, out: str) -> None:
    p.add_argument("--lipschitz", type=_lipschitz, default=None, help="declare L instead of computing it")
    p.add_argument("--limit", type=_count, default=limit, help=_LIMIT if limit else f"{_LIMIT} (default: all)")
    p.add_argument("--batch-size", type=_count, default=batch_size, help="images per forward pass")
    p.add_argument("--seed", type=_seed, default=0, help=_SEED)
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS)


def build_parser() -> argparse.ArgumentParser:
    """The ``lipcert`` argument parser with every command."""
    from .. import __version__

    parser = _Parser(prog="lipcert", description=_DESCRIPTION, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"lipcert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = {"formatter_class": _Help}
    demo = sub.add_parser("demo", help="the comparison on the embedded digit scenes with the shipped models", **fmt)
    _add_compare_args(demo, limit=48, out="lipcert_out/demo")
    demo.set_defaults(func=compare_command)
    cmp_ = sub.add_parser("compare", help="Lipschitz certificate vs SegCertify on a dataset", **fmt)
    _add_compare_args(cmp_, limit=None, out="lipcert_out/compare")
    cmp_.set_defaults(func=compare_command)
    ce = sub.add_parser("certify", help="certify a model on a dataset split (every metric macro and micro)", **fmt)
    _add_model_data_args(ce)
    ce.add_argument(
        "--metric",
        nargs="+",
        default=["pixel_accuracy", "miou"],
        choices=METRICS,
        help="metrics to certify (each macro and micro)",
    )
    ce.add_argument("--level", type=_level, nargs="*", default=[0.5], help="Q2 levels (unit-value metrics)")
    _add_run_args(ce, limit=None, batch_size=16, out="lipcert_out/certify")
    ce.set_defaults(func=certify_command)
    au = sub.add_parser(
        "audit", help="certificates vs attacks on the same images (non-zero exit on a violation)", **fmt
    )
    _add_model_data_args(au)
    au.add_argument("--steps", type=_count, default=100, help="APGD iterations per loss")
    _add_run_args(au, limit=16, batch_size=8, out="lipcert_out/audit")
    au.set_defaults(func=audit_command)
    tr = sub.add_parser("train", help="train a model from a named recipe", **fmt)
    tr.add_argument("--recipe", required=True, help="e.g. digits-lipunet, digits-twin-sigma025")
    tr.add_argument("--out", required=True, help="checkpoint path (.pt)")
    tr.add_argument("--dataset", choices=["digits", "pets", "cityscapes"], default=None,
                    help="(default: the recipe's)")  # fmt: skip
    tr.add_argument("--root", default=None, help="dataset folder (pets / cityscapes)")
    tr.add_argument("--epochs", type=_count, default=None, help="(default: the recipe's)")
    tr.add_argument("--n-train", type=_count, default=None, help="training images (default: the recipe's)")
    tr.add_argument("--seed", type=_seed, default=None, help="(default: the recipe's)")
    tr.add_argument("--threads", type=_count, default=None, help=_THREADS)
    tr.add_argument("--resume", action="store_true", help="continue from OUT's training state if it exists")
    tr.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS)
    tr.set_defaults(func=train_command)
    return parser
