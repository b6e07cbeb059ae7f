"""Benchmark of the IoU certificates: per-class IoU, pooled (Dinkelbach) IoU, joint mIoU with CP-SAT.

Run: ``.venv/bin/python benchmarks/bench_iou.py [--images 500]``. Prints markdown tables (a benchmark, not
a timed test). Logits are random (scaled Gaussian) with labels equal to the prediction on 80% of pixels.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

import lipcert
from lipcert.metrics.states import cat_state_values


def _data(gen, b, k, h, w):
    logits = torch.randn(b, k, h, w, generator=gen) * 2
    target = logits.argmax(1)
    flip = torch.rand(b, h, w, generator=gen) < 0.2
    target[flip] = torch.randint(0, k, (int(flip.sum()),), generator=gen)
    return logits, target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    print(
        f"machine: {platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}\n"
    )
    eps = [0.05, 0.1, 0.25]
    logits, target = _data(gen, 1, 19, 8, 8)
    lipcert.certify_logits(logits, eps, "iou", target, lipschitz=1.0)  # compile
    print("| task | size | radii | seconds | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    logits, target = _data(gen, 1, 19, 1024, 2048)
    t0 = time.perf_counter()
    lipcert.certify_logits(logits, eps, "iou", target, lipschitz=1.0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"| per-class IoU, one image (exact two-list sweep) | 19x1024x2048 | {len(eps)} | "
        f"{time.perf_counter() - t0:.2f} | {rss:.0f} |"
    )
    acc = lipcert.CertifiedMetric("iou", eps, lipschitz=1.0, average="micro")
    t_update = 0.0
    for _ in range(0, args.images, args.batch):
        logits, target = _data(gen, args.batch, 19, 256, 512)  # data generation is not timed
        t0 = time.perf_counter()
        acc.update(logits, target)
        t_update += time.perf_counter() - t0
    t0 = time.perf_counter()
    cert = acc.compute()
    t_compute = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    frontier = cat_state_values(acc.frontier_num).size  # stored hull points (the numerators' "cat" state)
    print(
        f"| pooled per-class IoU (Dinkelbach, exact), {args.images} images | 19x256x512 | {len(eps)} | "
        f"{t_update:.1f} (update) + {t_compute:.2f} (compute) | {rss:.0f} |"
    )
    print(
        f"\nstored hull points: {frontier} ({frontier * 16 / 2**20:.1f} MB); pooled worst IoU at eps="
        f"{eps[-1]}: mean over classes {np.nanmean(cert.worst[-1]):.4f}"
    )
    logits, target = _data(gen, 1, 4, 16, 16)
    print(
        "\n| joint mIoU (CP-SAT), 4x16x16 | eps | seconds | status | proven lower bound (exact if status exact) "
        "| best attack found (upper bound) | split bound | mean-of-classes bound |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for e in (0.1, 0.3, 0.6):
        t0 = time.perf_counter()
        joint = lipcert.joint_miou(logits, target, [e], lipschitz=1.0, time_limit=60.0)
        dt = time.perf_counter() - t0
        split = lipcert.certify_logits(logits, [e], "miou", target, lipschitz=1.0)
        print(
            f"| 16x16, K=4 | {e} | {dt:.1f} | {joint.status} | {joint.worst[0, 0]:.4f} | "
            f"{joint.extras['attack'][0, 0]:.4f} | {split.worst[0, 0]:.4f} | "
            f"{split.extras['mean_of_classes'][0, 0]:.4f} |"
        )
    _more_joint_instances(gen)
    _pooled_miou_rows()


def _pooled_miou_rows() -> None:
    """The pooled (micro) mIoU budget split: its cost and its gain over the mean of per-class worst cases."""
    from lipcert.data import DigitScenes
    from lipcert.models import load_pretrained

    print("\n| pooled mIoU (micro) | images | eps | compute s (all radii) | budget split | mean of classes | ratio |")
    print("|---|---|---|---|---|---|---|")
    model = load_pretrained("digits-lipunet")
    ds = DigitScenes("test", n=48)
    x, y = torch.stack([ds[i][0] for i in range(48)]), torch.stack([ds[i][1] for i in range(48)])
    L = lipcert.lipschitz_bound(model, (3, 64, 64), progress=False)
    with torch.no_grad():
        digits = torch.cat([model(x[i : i + 16]) for i in range(0, 48, 16)])
    gen = torch.Generator().manual_seed(1)
    cases = [("shipped digits-lipunet, first test scenes, L computed", digits, y, L)]
    cases += [("random 19x256x512, L = 1", *_data(gen, n, 19, 256, 512), 1.0) for n in (20, 60)]
    for name, logits, target, lip in cases:
        acc = lipcert.CertifiedMetric("miou", [0.05, 0.1, 0.25], lipschitz=lip, average="micro")
        acc.update(logits, target)
        t0 = time.perf_counter()
        cert = acc.compute()
        dt = time.perf_counter() - t0
        for j, e in enumerate(cert.eps.tolist()):
            moc = cert.extras["mean_of_classes"][j]
            print(
                f"| {name} | {logits.shape[0]} | {e} | {dt:.1f} | {cert.worst[j]:.4f} | {moc:.4f} | "
                f"{cert.worst[j] / moc:.2f} |"
            )


def _more_joint_instances(gen, n_instances: int = 5) -> None:
    """Joint mIoU on more random 16x16, K=4 images: time spread and how many are proven exact."""
    print("\n| joint mIoU, 5 more random 4x16x16 images | eps | seconds: median [min, max] | exact | gap to split |")
    print("|---|---|---|---|---|")
    data = [_data(gen, 1, 4, 16, 16) for _ in range(n_instances)]
    for e in (0.1, 0.3, 0.6):
        times, exact, gaps = [], 0, []
        for logits, target in data:
            t0 = time.perf_counter()
            joint = lipcert.joint_miou(logits, target, [e], lipschitz=1.0, time_limit=60.0)
            times.append(time.perf_counter() - t0)
            exact += joint.status == "exact"
            split = lipcert.certify_logits(logits, [e], "miou", target, lipschitz=1.0)
            gaps.append(float(joint.worst[0, 0] - split.worst[0, 0]))
        print(
            f"| 16x16, K=4 | {e} | {np.median(times):.1f} [{min(times):.1f}, {max(times):.1f}] | "
            f"{exact} / {n_instances} | {np.median(gaps):.4f} [{min(gaps):.4f}, {max(gaps):.4f}] |"
        )


if __name__ == "__main__":
    main()
