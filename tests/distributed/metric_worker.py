"""Run by torch.distributed.run from test_torchrun.py: every metric and average on this rank's shard."""

import json
import sys

import numpy as np
import torch
import torch.distributed as dist

from lipcert import METRICS, CertifiedMetric
from lipcert.core.distributed import init_from_env, rank_and_size, shard
from lipcert.metrics import AbstainMetrics

EPS = [0.0, 0.1, 0.4]


def dataset(n=7, k=3, h=5, w=6):
    """The same images in every process: logits (K, H, W) and labels (H, W), with some ignored pixels."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        logits = torch.randn(k, h, w, generator=g, dtype=torch.float64) * 1.5
        target = torch.randint(0, k, (h, w), generator=g)
        target[0, 0] = 255
        out.append((logits, target))
    return out


def certify_all(items, batch_size=2):
    """{metric_average: (worst, naive, clean)} of the items, in batches."""
    results = {}
    for metric in METRICS:
        for average in ("macro", "micro"):
            acc = CertifiedMetric(metric, EPS, lipschitz=1.3, average=average)
            for start in range(0, len(items), batch_size):
                part = items[start : start + batch_size]
                acc.update(torch.stack([a for a, _ in part]), torch.stack([b for _, b in part]))
            cert = acc.compute()
            parts = (cert.worst, cert.naive, cert.clean)
            results[f"{metric}_{average}"] = [np.asarray(v, dtype=float).tolist() for v in parts]
    abstain = AbstainMetrics(3)
    for logits, target in items:
        labels = logits.argmax(0)
        labels[logits.max(0).values < 0.5] = -1  # abstain where unsure
        abstain.update(labels[None].numpy(), target[None].numpy())
    results["abstain"] = {k: np.asarray(v, dtype=float).tolist() for k, v in abstain.compute().items()}
    return results


if __name__ == "__main__":
    assert init_from_env(), "expected to run under torch.distributed.run with 2 processes"
    items = dataset()
    mine = [items[i] for i in shard(len(items))]
    results = certify_all(mine)
    rank, size = rank_and_size()
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump({"world_size": size, "results": results}, f)
    dist.destroy_process_group()
