"""The certified-training frontier of the digits: clean pooled mIoU against certified digit recall.

Reads the JSON that ``frontier_eval.py`` writes beside its table and draws, for each setting, the clean
pooled mIoU (x) against the certified digit recall (micro, mean of the 10 digits) at each radius (y), with
the quality bars as dashed lines; PNG and PDF.

    python benchmarks/frontier_plot.py benchmarks/results/frontier_digits.json --out benchmarks/results/frontier_digits
"""

from __future__ import annotations

import argparse
import itertools
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EPS = (0.1, 0.25)
BARS = {"clean": 0.75, 0.1: 0.60, 0.25: 0.35}
CHOSEN = "shipped digits-lipunet"  # the checkpoint shipped as digits-lipunet (ringed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out", required=True, help="path without extension (.png and .pdf are written)")
    args = ap.parse_args()
    rows = json.loads(open(args.results).read())
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), sharey=True, constrained_layout=True)
    left = min(0.4, min(r["clean_pooled_miou"] for r in rows.values()) - 0.03)  # every point in the frame
    for j, (ax, eps) in enumerate(zip(axes, EPS, strict=True)):
        for (name, r), marker in zip(rows.items(), itertools.cycle("osD^vP*Xph"), strict=False):
            x, y = r["clean_pooled_miou"], r["certified_digit_recall_micro"][j]
            ax.scatter(x, y, s=22, marker=marker, label=name + (" (chosen)" if name == CHOSEN else ""))
            if name == CHOSEN:
                ax.scatter(x, y, s=90, facecolors="none", edgecolors="black", lw=0.8)
        ax.axvline(BARS["clean"], ls="--", lw=0.8, color="grey")
        ax.axhline(BARS[eps], ls="--", lw=0.8, color="grey")
        ax.fill_between([BARS["clean"], 0.85], BARS[eps], 0.7, color="green", alpha=0.08, lw=0)  # every bar met
        ax.set_title(f"eps = {eps} (L computed per checkpoint)", fontsize=8)
        ax.set_xlabel("clean pooled mIoU (micro)", fontsize=8)
        ax.set_xlim(left, 0.85)
        ax.set_ylim(0.0, 0.7)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("certified digit recall\n(micro, mean of 10 digits)", fontsize=8)
    axes[1].legend(fontsize=6, loc="upper left", frameon=False)
    for ext in ("png", "pdf"):
        fig.savefig(f"{args.out}.{ext}", dpi=200)
    print(f"{args.out}.png, {args.out}.pdf")


if __name__ == "__main__":
    main()
