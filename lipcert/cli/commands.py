"""The ``lipcert`` commands: compare (and demo), certify, audit and train."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.distributed import gather_objects, is_main, rank_and_size, shard
from ..core.errors import LipcertError
from ..worst_case.registry import UNIT_METRICS
from .inputs import (
    batches_of,
    check_classes,
    check_data_args,
    check_model_arg,
    check_out,
    git_commit,
    load_model,
    make_dataset,
)


def compare_command(args: argparse.Namespace) -> int:
    """``lipcert compare`` and ``lipcert demo``: returns the exit status."""
    from ..compare import CompareConfig, run_compare
    from ..compare.report import markdown, write_outputs

    if any(v < 0 for v in args.overhead_size) or (0 in args.overhead_size and any(args.overhead_size)):
        raise LipcertError(f"--overhead-size: expected two sizes > 0 (or 0 0 to skip), but got {args.overhead_size}.")
    check_model_arg(args.lip, "--lip")
    check_model_arg(args.twin, "--twin")
    check_data_args(args)
    check_out(args.out)
    if args.threads:
        from ..kernels.threads import set_threads

        set_threads(args.threads)
    dataset = make_dataset(args.dataset, "test", args.limit or 300, args.size, args.seed, args.root)
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
    lip, twin = load_model(args.lip), load_model(args.twin)
    check_classes(lip, dataset, "--lip")
    check_classes(twin, dataset, "--twin")
    res = run_compare(lip, twin, dataset, cfg)  # under torchrun: this process's shard, gathered
    if is_main():
        print(markdown(res))
        paths = write_outputs(res, args.out)
        print("\nfiles: " + ", ".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def _model_and_test_set(args: argparse.Namespace):
    """(model, test dataset, number of images) of ``--model`` / ``--dataset`` / ``--limit``, all checked first."""
    check_model_arg(args.model, "--model")
    check_data_args(args)
    check_out(args.out)
    model = load_model(args.model)
    dataset = make_dataset(args.dataset, "test", args.limit or 300, args.size, args.seed, args.root)
    check_classes(model, dataset, "--model")
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    return model, dataset, n


def certify_command(args: argparse.Namespace) -> int:
    """``lipcert certify``: returns the exit status."""
    import time

    import torch
    from tqdm.auto import tqdm

    from .. import CertifiedMetric, certified_radius, lipschitz_bound

    model, dataset, n = _model_and_test_set(args)
    shape = tuple(dataset[0][0].shape)
    L = args.lipschitz if args.lipschitz is not None else lipschitz_bound(model, shape, progress=not args.no_progress)
    source = "declared" if args.lipschitz is not None else "computed"
    ignore = getattr(dataset, "ignore_index", 255)
    accs = {
        (m, avg): CertifiedMetric(m, args.eps, lipschitz=L, ignore_index=ignore, average=avg, lipschitz_source=source)
        for m in args.metric
        for avg in ("macro", "micro")
    }
    q2 = {m: [] for m in args.metric if m in UNIT_METRICS} if args.level else {}
    mine = shard(n)  # this process's images (all of them in one process)
    t0 = time.perf_counter()
    batches = batches_of(dataset, mine, args.batch_size)
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


def audit_command(args: argparse.Namespace) -> int:
    """``lipcert audit``: returns 1 on a soundness violation, else 0."""
    import json
    from pathlib import Path

    from ..audit.run import audit

    model, dataset, n = _model_and_test_set(args)
    batches = list(batches_of(dataset, shard(n), args.batch_size))  # under torchrun: this process's block
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


def train_command(args: argparse.Namespace) -> int:
    """``lipcert train``: returns the exit status."""
    import platform
    import sys as _sys

    import torch

    from ..models import build_model
    from ..training import train
    from ..training.recipes import RECIPES, get_recipe

    if args.recipe not in RECIPES:
        raise LipcertError(f"--recipe: unknown recipe {args.recipe!r}; available: {sorted(RECIPES)}.")
    check_data_args(args)
    check_out(str(Path(args.out).parent), "--out")
    if Path(args.out).is_dir():
        raise LipcertError(f"--out {args.out}: is a folder; give the checkpoint file path (.pt).")
    if args.threads:
        from ..kernels.threads import set_threads

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
    train_set = make_dataset(data["dataset"], "train", data.get("n_train"), data["size"], data["seed"], args.root)
    eval_set = make_dataset(data["dataset"], "test", data.get("n_eval"), data["size"], data["seed"], args.root)
    meta = {
        "recipe": args.recipe,
        "commit": git_commit(),
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
