"""The certified-training frontier of the digits: clean pooled mIoU against the certified numbers.

Reads the JSON that ``frontier_eval.py`` writes beside its table and draws, for each setting, the clean
pooled mIoU (x) against (a) the certified pooled mIoU at eps 0.1 (lipcert's best sound bound: the pooled
budget split), (b) the certified digit recall (micro, mean of the 10 digits) at eps 0.1 and (c) at 0.25
(y), with the quality bars as dashed lines and the region meeting both shaded; PNG and PDF.

    python benchmarks/frontier_plot.py benchmarks/results/frontier_digits.json --out benchmarks/results/frontier_digits
"""

from __future__ import annotations

import argparse
import itertools
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (key in the JSON, radius index, label, bar)
PANELS = (
    ("certified_pooled_miou_micro", 0, "certified pooled mIoU, eps = 0.1\n(micro, pooled budget split)", 0.50),
    ("certified_digit_recall_micro", 0, "certified digit recall, eps = 0.1\n(micro, mean of 10 digits)", 0.60),
    ("certified_digit_recall_micro", 1, "certified digit recall, eps = 0.25\n(micro, mean of 10 digits)", 0.35),
)
CLEAN_BAR = 0.75
CHOSEN = "shipped digits-lipunet"  # the checkpoint shipped as digits-lipunet (ringed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out", required=True, help="path without extension (.png and .pdf are written)")
    args = ap.parse_args()
    rows = json.loads(open(args.results).read())
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.6), sharey=True, constrained_layout=True)
    left = min(0.4, min(r["clean_pooled_miou"] for r in rows.values()) - 0.03)  # every point in the frame
    for ax, (key, j, label, bar) in zip(axes, PANELS, strict=True):
        for (name, r), marker in zip(rows.items(), itertools.cycle("osD^vP*Xph"), strict=False):
            x, y = r["clean_pooled_miou"], r[key][j]
            ax.scatter(x, y, s=18, marker=marker, label=name + (" (chosen)" if name == CHOSEN else ""))
            if name == CHOSEN:
                ax.scatter(x, y, s=80, facecolors="none", edgecolors="black", lw=0.8)
        ax.axvline(CLEAN_BAR, ls="--", lw=0.8, color="grey")
        ax.axhline(bar, ls="--", lw=0.8, color="grey")
        ax.fill_between([CLEAN_BAR, 0.85], bar, 0.7, color="green", alpha=0.08, lw=0)  # both bars met
        ax.set_title(label, fontsize=7)
        ax.set_xlabel("clean pooled mIoU (micro)", fontsize=7)
        ax.set_xlim(left, 0.85)
        ax.set_ylim(0.0, 0.7)
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("certified value (L computed per checkpoint)", fontsize=7)
    axes[2].legend(fontsize=5, loc="upper left", frameon=False)
    for ext in ("png", "pdf"):
        fig.savefig(f"{args.out}.{ext}", dpi=200)
    print(f"{args.out}.png, {args.out}.pdf")


if __name__ == "__main__":
    main()
