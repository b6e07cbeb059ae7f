"""The ``lipcert`` command line."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .core.config import EPS_RANGE, LIPSCHITZ_RANGE
from .core.distributed import gather_objects, init_from_env, is_main, rank_and_size, shard
from .core.errors import LipcertError, SolverError
from .worst_case.registry import METRICS, UNIT_METRICS


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


def _check_model_arg(name_or_path: str, option: str) -> None:
    """A shipped model name or an existing .pt file, checked before anything is loaded."""
    from .models import list_pretrained

    if Path(name_or_path).suffix == ".pt":
        if not Path(name_or_path).is_file():
            raise LipcertError(f"{option}: no checkpoint file at {name_or_path}.")
    elif name_or_path not in list_pretrained():
        raise LipcertError(
            f"{option}: {name_or_path!r} is neither a .pt checkpoint nor a shipped model ({list_pretrained()})."
        )


def _check_out(out: str, option: str = "--out") -> None:
    """The output folder can be created: neither it nor a parent is an existing file."""
    for p in (Path(out), *Path(out).parents):
        if p.exists() and not p.is_dir():
            raise LipcertError(f"{option} {out}: {p} exists and is not a folder.")


def _check_classes(model, dataset, option: str) -> None:
    """The model's class count (from its config) must be the dataset's, before anything runs."""
    k_model = (getattr(model, "config", None) or {}).get("num_classes")
    k_data = getattr(dataset, "num_classes", None)
    if k_model is not None and k_data is not None and int(k_model) != int(k_data):
        raise LipcertError(f"{option}: the model predicts {k_model} classes but the dataset has {k_data}.")


def _check_data_args(args: argparse.Namespace) -> None:
    dataset = getattr(args, "dataset", None)
    if dataset in ("pets", "cityscapes"):
        if args.root is None:
            raise LipcertError(f"--root DIR is required for --dataset {dataset}.")
        if not Path(args.root).is_dir():
            raise LipcertError(f"--root {args.root}: no such folder.")


def _load_model(name_or_path: str):
    from pathlib import Path

    from .models import load_checkpoint, load_pretrained

    return load_checkpoint(name_or_path) if Path(name_or_path).suffix == ".pt" else load_pretrained(name_or_path)


def _compare(args: argparse.Namespace) -> int:
    from .compare import CompareConfig, run_compare
    from .compare.report import markdown, write_outputs

    if any(v < 0 for v in args.overhead_size) or (0 in args.overhead_size and any(args.overhead_size)):
        raise LipcertError(f"--overhead-size: expected two sizes > 0 (or 0 0 to skip), but got {args.overhead_size}.")
    _check_model_arg(args.lip, "--lip")
    _check_model_arg(args.twin, "--twin")
    _check_data_args(args)
    _check_out(args.out)
    if args.threads:
        from .kernels.threads import set_threads

        set_threads(args.threads)
    dataset = _make_dataset(args.dataset, "test", args.limit or 300, args.size, args.seed, args.root)
    cfg = CompareConfig(
        eps=args.eps,
        sigma=args.sigma,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        limit=args.limit,
        seed=args.seed,
        progress=not args.no_progress,
        overhead_size=tuple(args.overhead_size) if all(args.overhead_size) else None,
        device=args.device,
    )
    lip, twin = _load_model(args.lip), _load_model(args.twin)
    _check_classes(lip, dataset, "--lip")
    _check_classes(twin, dataset, "--twin")
    res = run_compare(lip, twin, dataset, cfg)  # under torchrun: this process's shard, gathered
    if is_main():
        print(markdown(res))
        paths = write_outputs(res, args.out)
        print("\nfiles: " + ", ".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def _certify(args: argparse.Namespace) -> int:
    import time

    import torch
    from tqdm.auto import tqdm

    from . import CertifiedMetric, certified_radius, lipschitz_bound

    _check_model_arg(args.model, "--model")
    _check_data_args(args)
    _check_out(args.out)
    model = _load_model(args.model)
    dataset = _make_dataset(args.dataset, "test", args.limit or 300, args.size, args.seed, args.root)
    _check_classes(model, dataset, "--model")
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    L = args.lipschitz if args.lipschitz is not None else lipschitz_bound(model, tuple(dataset[0][0].shape))
    source = "declared" if args.lipschitz is not None else "computed"
    ignore = getattr(dataset, "ignore_index", 255)
    accs = {
        (m, avg): CertifiedMetric(m, args.eps, lipschitz=L, ignore_index=ignore, average=avg)
        for m in args.metric
        for avg in ("macro", "micro")
    }
    q2 = {m: [] for m in args.metric if m in UNIT_METRICS} if args.level else {}
    mine = shard(n)  # this process's images (all of them in one process)
    t0 = time.perf_counter()
    batches = _batches(dataset, mine, args.batch_size)
    total = -(-len(mine) // args.batch_size)
    for x, y in tqdm(batches, total=total, desc="batches", disable=args.no_progress or not is_main()):
        with torch.no_grad():
            logits = model(x)
        for acc in accs.values():
            acc.update(logits, y)
        for m in q2:
            q2[m].append(certified_radius(logits, m, y, lipschitz=L, level=args.level, ignore_index=ignore))
    seconds = gather_objects(time.perf_counter() - t0)
    certs = {key: acc.compute() for key, acc in accs.items()}  # gathers every process's states
    q2 = {m: [r for parts in gather_objects(radii) for r in parts] for m, radii in q2.items()}
    if is_main():
        info = {"model": args.model, "dataset": args.dataset, "n_images": n, "lipschitz": L, "source": source}
        _write_certify(args, info, certs, q2, seconds)
    return 0


def _write_certify(args: argparse.Namespace, info: dict, certs: dict, q2: dict, seconds: list) -> None:
    """Print the certify table and write certify.json / certify.csv (rank 0 only)."""
    import csv
    import json
    from pathlib import Path

    import numpy as np

    print(f"{info['model']} on {info['dataset']} ({info['n_images']} images), L = {info['lipschitz']:.6f} "
          f"({info['source']})\n")  # fmt: skip
    print("| metric | average | status | clean | " + " | ".join(f"eps={e:g}" for e in args.eps) + " |")
    print("|---|---|---|---|" + "---|" * len(args.eps))
    out = {
        "model": info["model"],
        "dataset": info["dataset"],
        "n_images": info["n_images"],
        "lipschitz": info["lipschitz"],
        "lipschitz_source": info["source"],
        "eps": list(args.eps),
        "metrics": {},
        "q2": {},
        "timing": {"processes": len(seconds), "seconds_per_process": seconds, "seconds_max": max(seconds)},
    }
    rows = []
    for (m, avg), cert in certs.items():
        worst = np.asarray(cert.worst)
        summary = worst if worst.ndim == 1 else np.nanmean(worst, axis=1)
        label = f"{m}{' (mean over classes)' if worst.ndim > 1 else ''}"
        print(
            f"| {label} | {avg} | {cert.status} | {np.nanmean(cert.clean):.4f} | "
            + " | ".join(f"{v:.4f}" for v in summary)
            + " |"
        )
        out["metrics"][f"{m}_{avg}"] = cert.to_dict()
        rows += [[m, avg, e, float(v)] for e, v in zip(args.eps, summary, strict=True)]
    for m, parts in q2.items():
        radii = np.concatenate(parts)  # (N, Lv) or (N, Lv, K)
        flat = radii if radii.ndim == 2 else np.nanmedian(radii, axis=2)
        med = np.nanmedian(np.where(np.isinf(flat), np.nan, flat), axis=0)
        print(
            f"Q2 {m}: median certified radius over images at level "
            + ", ".join(f"{lv:g}: {r:.4f}" for lv, r in zip(args.level, med, strict=True))
        )
        out["q2"][m] = {"levels": list(args.level), "median_radius": med.tolist()}
    if len(seconds) > 1:
        print("seconds per process: " + ", ".join(f"{s:.1f}" for s in seconds))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "certify.json").write_text(json.dumps(out, indent=2, default=float))
    with open(Path(args.out, "certify.csv"), "w", newline="") as f:
        csv.writer(f).writerows([["metric", "average", "eps", "worst"], *rows])
    print(f"files: {Path(args.out, 'certify.json')}, {Path(args.out, 'certify.csv')}")


def _audit(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .audit.run import audit

    _check_model_arg(args.model, "--model")
    _check_data_args(args)
    _check_out(args.out)
    model = _load_model(args.model)
    dataset = _make_dataset(args.dataset, "test", args.limit or 300, args.size, args.seed, args.root)
    _check_classes(model, dataset, "--model")
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    batches = list(_batches(dataset, shard(n), args.batch_size))  # under torchrun: this process's block
    rep = audit(
        model,
        batches,
        args.eps,
        lipschitz=args.lipschitz,
        steps=args.steps,
        ignore_index=getattr(dataset, "ignore_index", 255),
        progress=not args.no_progress and is_main(),
    )
    if is_main():
        print(
            f"audit of {args.model} on {args.dataset}: certified vs attacked pixel accuracy, recall, IoU and mIoU "
            f"(SEA l2 + margin attack, {args.steps} steps per loss; the best attack output per image and metric)"
        )
        print(rep.markdown())
        Path(args.out).mkdir(parents=True, exist_ok=True)
        out = Path(args.out, "audit.json")
        out.write_text(json.dumps({k: v for k, v in vars(rep).items()}, indent=2))
        print(f"files: {out}")
    if rep.violations:
        print(f"SOUNDNESS VIOLATION: {rep.violations} values (per image and class, or pooled) attacked below their "
              "certificate")  # fmt: skip
        return 1
    return 0


def _add_compare_args(p: argparse.ArgumentParser, limit: int | None, out: str) -> None:
    p.add_argument("--dataset", choices=["digits", "pets", "cityscapes"], default="digits")
    p.add_argument("--root", default=None, help="dataset folder (pets / cityscapes)")
    p.add_argument("--size", type=_count, nargs="+", default=[64], metavar=("H", "W"),
                   help="resolution images are resized to: H W, or one value for a square")  # fmt: skip
    p.add_argument("--lip", default="digits-lipunet", help="shipped model name or checkpoint .pt")
    p.add_argument("--twin", default="digits-twin-sigma025", help="shipped model name or checkpoint .pt")
    p.add_argument("--limit", type=_count, default=limit)
    p.add_argument("--eps", type=_radius, nargs="+", default=[0.1, 0.25, 0.5])
    p.add_argument("--sigma", type=_positive, nargs="+", default=[0.25])
    p.add_argument("--n0", type=_count, nargs="+", default=[10])
    p.add_argument(
        "--n",
        "--num-samples",
        dest="n",
        type=_count,
        nargs="+",
        default=[100],
        help="SegCertify samples n (under torchrun spell it --num-samples: torchrun reads --n as its own option)",
    )
    p.add_argument("--alpha", type=_probability, default=0.001)
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--threads", type=_count, default=None)
    p.add_argument("--device", default="cpu", help="where both networks run, e.g. cuda (timings synchronise)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--overhead-size",
        type=int,
        nargs=2,
        default=[512, 1024],
        metavar=("H", "W"),
        help="also time forward vs certificate on one image of this size (H W); 0 0 to skip",
    )


def _git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return "unknown"


def _size(values) -> tuple[int, int]:
    """``--size H W`` or ``--size S`` as (H, W)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) not in (1, 2):
        raise LipcertError(f"--size takes H W or one value, but got {values}.")
    return (values[0], values[-1])


def _make_dataset(name: str, split: str, n: int | None, size, seed: int, root: str | None):
    from .data import DigitScenes

    h, w = _size(size)
    if name == "digits":
        if h != w:
            raise LipcertError(f"--size: the digit scenes are square, but got {h} {w}.")
        return DigitScenes(split, size=h, n=n or 1000, seed=seed)
    from .data import Cityscapes, OxfordIIITPet, TrainTransform

    if root is None:
        raise LipcertError(f"--root DIR is required for --dataset {name}.")
    size = (h, w)
    tf = TrainTransform(size, jitter=0.5, seed=seed) if split == "train" else None
    if name == "pets":
        return OxfordIIITPet(root, split="trainval" if split == "train" else "test", size=size, transform=tf)
    return Cityscapes(root, split="train" if split == "train" else "val", size=size, transform=tf)


def _train(args: argparse.Namespace) -> int:
    import platform
    import sys as _sys

    import torch

    from .models import build_model
    from .training import train
    from .training.recipes import RECIPES, get_recipe

    if args.recipe not in RECIPES:
        raise LipcertError(f"--recipe: unknown recipe {args.recipe!r}; available: {sorted(RECIPES)}.")
    _check_data_args(args)
    _check_out(str(Path(args.out).parent), "--out")
    if Path(args.out).is_dir():
        raise LipcertError(f"--out {args.out}: is a folder; give the checkpoint file path (.pt).")
    if args.threads:
        from .kernels.threads import set_threads

        set_threads(args.threads)
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
    meta = {
        "recipe": args.recipe,
        "commit": _git_commit(),
        "command": " ".join(_sys.argv),
        "machine": f"{platform.machine()} {platform.processor()}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "processes": rank_and_size()[1],
        "data": data,
    }
    res = train(
        model,
        train_set,
        cfg,
        eval_set=eval_set,
        out=args.out,
        resume=args.resume,
        progress=not args.no_progress,
        meta=meta,
    )
    if is_main():  # under torchrun: DistributedDataParallel, rank 0 writes the checkpoint
        print(f"saved {args.out} after {res['seconds']:.0f} s")
    return 0


def _add_model_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="shipped model name or checkpoint .pt")
    p.add_argument("--dataset", choices=["digits", "pets", "cityscapes"], default="digits")
    p.add_argument("--root", default=None)
    p.add_argument("--size", type=_count, nargs="+", default=[64], metavar=("H", "W"),
                   help="resolution images are resized to: H W, or one value for a square")  # fmt: skip
    p.add_argument("--eps", type=_radius, nargs="+", default=[0.1, 0.25, 0.5])


def _add_run_args(p: argparse.ArgumentParser, limit: int | None, batch_size: int, out: str) -> None:
    p.add_argument("--lipschitz", type=_lipschitz, default=None, help="declare L instead of computing it")
    p.add_argument("--limit", type=_count, default=limit)
    p.add_argument("--batch-size", type=_count, default=batch_size)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--no-progress", action="store_true")


def _batches(dataset, indices, batch_size: int):
    """(images, labels) batches of the items at ``indices`` (an int n: the first n items)."""
    import torch

    indices = range(indices) if isinstance(indices, int) else indices
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def build_parser() -> argparse.ArgumentParser:
    """The ``lipcert`` argument parser with every command."""
    from . import __version__

    parser = _Parser(prog="lipcert", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"lipcert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = {"formatter_class": _Help}
    demo = sub.add_parser("demo", help="the comparison on the embedded digit scenes with the shipped models", **fmt)
    _add_compare_args(demo, limit=48, out="lipcert_out/demo")
    demo.set_defaults(func=_compare)
    cmp_ = sub.add_parser("compare", help="Lipschitz certificate vs SegCertify on a dataset", **fmt)
    _add_compare_args(cmp_, limit=None, out="lipcert_out/compare")
    cmp_.set_defaults(func=_compare)
    ce = sub.add_parser("certify", help="certify a model on a dataset split (every metric macro and micro)", **fmt)
    _add_model_data_args(ce)
    ce.add_argument(
        "--metric",
        nargs="+",
        default=["pixel_accuracy", "miou"],
        choices=METRICS,
    )
    ce.add_argument("--level", type=_level, nargs="*", default=[0.5], help="Q2 levels (unit-value metrics)")
    _add_run_args(ce, limit=None, batch_size=16, out="lipcert_out/certify")
    ce.set_defaults(func=_certify)
    au = sub.add_parser(
        "audit", help="certificates vs attacks on the same images (non-zero exit on a violation)", **fmt
    )
    _add_model_data_args(au)
    au.add_argument("--steps", type=_count, default=100, help="APGD iterations per loss")
    _add_run_args(au, limit=16, batch_size=8, out="lipcert_out/audit")
    au.set_defaults(func=_audit)
    tr = sub.add_parser("train", help="train a model from a named recipe", **fmt)
    tr.add_argument("--recipe", required=True, help="e.g. digits-lipunet, digits-twin-sigma025")
    tr.add_argument("--out", required=True, help="checkpoint path (.pt)")
    tr.add_argument("--dataset", choices=["digits", "pets", "cityscapes"], default=None)
    tr.add_argument("--root", default=None, help="dataset folder (pets / cityscapes)")
    tr.add_argument("--epochs", type=_count, default=None)
    tr.add_argument("--n-train", type=_count, default=None)
    tr.add_argument("--seed", type=_seed, default=None)
    tr.add_argument("--threads", type=_count, default=None)
    tr.add_argument("--resume", action="store_true")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``lipcert`` command; a user error prints ``lipcert: error: ...`` and returns 2 (no traceback)."""
    args = build_parser().parse_args(argv)
    try:
        init_from_env()  # under torchrun: join the process group; each command shards its images
        return args.func(args)
    except (LipcertError, SolverError, OSError) as exc:
        print(f"lipcert: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lipcert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
