"""How tight the pooled mIoU certificate is, and how tight any logit-only certificate could be.

Run: ``.venv/bin/python benchmarks/bench_relaxed_gap.py [--images 48]`` (about a minute, no timings).
On the shipped ``digits-lipunet`` (first test scenes, L computed), per radius: the clean pooled mIoU, the
mean of per-class worst cases, the pooled budget split (what ``CertifiedMetric("miou", average="micro")``
certifies), and the pooled mIoU of an explicit *relaxed witness* (``lipcert.attacks.relaxed``): a logit
map within ``L * eps`` of every image's logits. Every certificate computed from the logits and L alone
is at most the witness's value, so ``witness / mean of classes`` is the largest gain over the mean of
classes that any such certificate can reach on these images. The same per image (macro) follows.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import lipcert
from lipcert.attacks.relaxed import relaxed_miou_witness
from lipcert.data import DigitScenes
from lipcert.models import load_pretrained


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1, 0.25])
    args = ap.parse_args(argv)
    model = load_pretrained("digits-lipunet")
    ds = DigitScenes("test", n=args.images)
    x = torch.stack([ds[i][0] for i in range(args.images)])
    y = torch.stack([ds[i][1] for i in range(args.images)])
    L = lipcert.lipschitz_bound(model, (3, 64, 64), progress=False)
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 16]) for i in range(0, args.images, 16)])
    metric = lipcert.CertifiedMetric("miou", args.eps, lipschitz=L, average="micro")
    metric.update(logits, y)
    cert = metric.compute()
    print(f"shipped digits-lipunet, first {args.images} test scenes, L = {L:.6f} (computed); pooled (micro) mIoU")
    print("\n| eps | clean | mean of classes (sound) | budget split (sound, certified) | relaxed witness (not a "
          "certificate: an upper bound on any logit-only certificate) | split / mean | witness / mean | "
          "witness - split (room left) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    _rows(cert, logits, y, L, args.eps, "micro")
    per_image = lipcert.certify_logits(logits, args.eps, "miou", y, lipschitz=L)  # worst (B, E), per image
    print("\nper image (macro: the mean over images of each image's mIoU), same columns:\n")
    print("| eps | clean | mean of classes | budget split | relaxed witness | split / mean | witness / mean | room |")
    print("|---|---|---|---|---|---|---|---|")
    _rows(per_image, logits, y, L, args.eps, "macro")


def _rows(cert, logits, y, L, eps, average) -> None:
    for j, e in enumerate(eps):
        moc, split = cert.extras["mean_of_classes"][..., j], cert.worst[..., j]
        moc, split = (float(moc), float(split)) if average == "micro" else (np.nanmean(moc), np.nanmean(split))
        w = relaxed_miou_witness(logits, y, e, L, average=average)
        assert split <= w["miou"] and (w["norms"] <= L * e).all()
        print(f"| {e:g} | {w['clean_miou']:.4f} | {moc:.4f} | {split:.4f} | {w['miou']:.4f} ({w['flips']} flips) | "
              f"{split / moc:.3f} | {w['miou'] / moc:.3f} | {w['miou'] - split:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
