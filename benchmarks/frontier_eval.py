"""Evaluate certified-training checkpoints of the digits frontier with their own guaranteed bound.

Every number comes from lipcert's certificates (independent of the training code), on the first N test
scenes, with L = lipschitz_bound(model, (3, 64, 64)) computed from the checkpoint's weights.

    python benchmarks/frontier_eval.py runs/frontier/*.pt --out benchmarks/results/frontier_digits.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import lipcert
from lipcert import CertifiedMetric
from lipcert.data import DigitScenes
from lipcert.models import load_checkpoint, load_pretrained

EPS = [0.1, 0.25]


def evaluate(model, n: int) -> dict:
    """The quality-bar numbers of one model (see docs/training.md)."""
    ds = DigitScenes("test", n=n)
    x = torch.stack([ds[i][0] for i in range(n)])
    y = torch.stack([ds[i][1] for i in range(n)])
    L = lipcert.lipschitz_bound(model, (3, 64, 64))
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 16]) for i in range(0, n, 16)])
    out = {"lipschitz": L, "n_images": n}
    metrics = {
        "pixel_accuracy_macro": CertifiedMetric("pixel_accuracy", EPS, lipschitz=L, average="macro"),
        "recall_micro": CertifiedMetric("recall", EPS, lipschitz=L, average="micro"),
        "miou_micro": CertifiedMetric("miou", EPS, lipschitz=L, average="micro"),
        "miou_macro": CertifiedMetric("miou", EPS, lipschitz=L, average="macro"),
    }
    for m in metrics.values():
        m.update(logits, y)
    certs = {name: m.compute() for name, m in metrics.items()}
    out["clean_pooled_miou"] = float(certs["miou_micro"].clean)
    out["certified_pixel_accuracy_macro"] = certs["pixel_accuracy_macro"].worst.tolist()
    out["certified_digit_recall_micro"] = np.nanmean(certs["recall_micro"].worst[:, 1:], axis=1).tolist()
    out["certified_pooled_miou_micro"] = certs["miou_micro"].worst.tolist()
    out["certified_miou_macro_split"] = certs["miou_macro"].worst.tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = {"shipped digits-lipunet": evaluate(load_pretrained("digits-lipunet"), args.n)}
    for path in args.checkpoints:
        model = load_checkpoint(path)
        rows[Path(path).stem] = evaluate(model, args.n) | {"options": model.meta.get("options", {})}
    lines = [
        f"| setting | clean pooled mIoU | cert. pixel acc (macro) @{EPS[0]} / @{EPS[1]} | cert. digit recall "
        f"(micro, mean of 10) @{EPS[0]} / @{EPS[1]} | cert. pooled mIoU (micro, pooled budget split) @{EPS[0]} | "
        f"cert. mIoU (macro, budget split) @{EPS[0]} |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        pa, rc = r["certified_pixel_accuracy_macro"], r["certified_digit_recall_micro"]
        lines.append(
            f"| {name} | {r['clean_pooled_miou']:.3f} | {pa[0]:.3f} / {pa[1]:.3f} | {rc[0]:.3f} / {rc[1]:.3f} | "
            f"{r['certified_pooled_miou_micro'][0]:.3f} | {r['certified_miou_macro_split'][0]:.3f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
