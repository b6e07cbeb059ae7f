"""Speed-up of ``lipcert compare`` with 2 processes (torchrun, gloo, one thread each) against 1.

Runs the same comparison (the same images, settings and seed) with 1 and 2 processes, alternating,
``--repeats`` times each, and prints a markdown table of wall seconds (median, min-max) and the ratio of
the medians, measured in this one run. The certified numbers of both are checked to be the same.

    .venv/bin/python benchmarks/distributed_speedup.py --limit 96 --repeats 3 \
        --out benchmarks/results/distributed_speedup.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(processes: int, args: list[str], out: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "lipcert.cli", *args, "--out", str(out)]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        cmd = [*launcher, "-m", "lipcert.cli", *args, "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0


def _micro(res: dict) -> list:
    """SegCertify's pooled (micro) numbers: bit-identical for any number of processes."""
    return [{k: v for k, v in row.items() if k.endswith("micro")} for s in res["segcertify"] for row in s["results"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    a = ap.parse_args()
    args = ["compare", "--lip", "digits-lipunet", "--twin", "digits-twin-sigma025", "--limit", str(a.limit),
            "--no-progress", "--threads", "1", "--overhead-size", "0", "0", "--num-samples", "100"]  # fmt: skip
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for p in (1, 2):
                times[p].append(run(p, args, Path(tmp, f"p{p}-{r}")))
        one = json.loads(Path(tmp, "p1-0", "results.json").read_text())
        two = json.loads(Path(tmp, "p2-0", "results.json").read_text())
    key = "certified_pixel_accuracy_joint"
    same = one["lipschitz"][key]["micro"] == two["lipschitz"][key]["micro"] and _micro(one) == _micro(two)
    med = {p: statistics.median(v) for p, v in times.items()}
    from lipcert.compare import hardware

    lines = [
        f"Machine: {hardware()}.",
        "",
        f"`lipcert compare` on {a.limit} digit scenes (digits-lipunet vs digits-twin-sigma025, n0 = 10, n = 100, "
        f"{a.repeats} alternating repeats, one thread per process; certified numbers identical: {same})",
        "",
        "| processes | wall seconds (median) | min - max | speed-up (ratio of medians) |",
        "|---|---|---|---|",
    ]
    for p in (1, 2):
        lines.append(f"| {p} | {med[p]:.1f} | {min(times[p]):.1f} - {max(times[p]):.1f} | {med[1] / med[p]:.2f} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        Path(a.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
