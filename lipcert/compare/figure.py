"""The publication figure of a comparison: certificates against eps and one certified scene.

Column width (3.5 in), 7 pt fonts. (a) certified pixel accuracy and (b) worst-case mIoU against eps for
both methods, clean values at eps = 0, unreachable radii marked; (c) one scene: image, ground truth,
Lipschitz prediction, SegCertify's certified map (abstained pixels grey) and the per-pixel certified
radius of the Lipschitz certificate, one class legend shared by every label panel. Legends sit
below the curves (never over data); a radius SegCertify cannot certify is a dotted vertical line.
Written as PDF (vector) and PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH_IN = 3.5  # one column of a two-column paper
_ABSTAIN_GREY, _IGNORE_WHITE = (0.6, 0.6, 0.6, 1.0), (1.0, 1.0, 1.0, 1.0)
_LIP, _SC = "tab:blue", "tab:orange"


def comparison_figure(res: dict, stem) -> dict:
    """Write the comparison figure as ``<stem>.pdf`` and ``<stem>.png``.

    Args:
        res: the results dict of :func:`lipcert.compare.run_compare` (with its ``_example`` scene).
        stem: path without suffix; its folder must exist.

    Returns:
        ``{"pdf": path, "png": path, "panels": [titles of the panels], "unreachable_marked": [eps],
        "legends_clear_of_data": bool}`` (True when no legend box overlaps the plotting area of its panel).

    Examples:
        >>> comparison_figure.__name__
        'comparison_figure'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": 7, "axes.titlesize": 7, "legend.fontsize": 5.5, "axes.linewidth": 0.6}):
        fig = plt.figure(figsize=(WIDTH_IN, 5.2), layout="constrained")
        grid = fig.add_gridspec(4, 3, height_ratios=[2.0, 1.0, 1.0, 0.42])
        curves = fig.add_subfigure(grid[0, :]).subplots(1, 2)
        _accuracy_panel(curves[0], res)
        _miou_panel(curves[1], res)
        scene = [fig.add_subplot(grid[r, c]) for r in (1, 2) for c in range(3)] + [fig.add_subplot(grid[3, :])]
        _scene_panels(fig, scene, res)
        titles = [a.get_title(loc="left") for a in (*curves, *scene) if a.get_title(loc="left")]
        marked = sorted({float(line.get_xdata()[0]) for a in curves for line in a.get_lines()
                         if line.get_gid() == "unreachable"})  # fmt: skip
        out = Path(stem)
        paths = {"pdf": str(out.with_suffix(".pdf")), "png": str(out.with_suffix(".png"))}
        fig.savefig(paths["pdf"])
        fig.savefig(paths["png"], dpi=300)
        clear = all(not a.get_legend().get_window_extent().overlaps(a.get_window_extent()) for a in curves)
        plt.close(fig)
    return {**paths, "panels": titles, "unreachable_marked": marked, "legends_clear_of_data": clear}


def _sc_points(s: dict, key: str) -> tuple[list, list, list]:
    """(reachable eps, values, unreachable eps) of one SegCertify setting."""
    ok = [(r["eps"], r[key]) for r in s["results"] if r["reachable"] and r.get(key) is not None]
    far = [r["eps"] for r in s["results"] if not r["reachable"]]
    return [e for e, _ in ok], [v for _, v in ok], far


def _mark_unreachable(ax, far: list, color: str, label: bool) -> None:
    """A dotted vertical line at each radius SegCertify cannot certify (no value there, not a zero)."""
    for i, e in enumerate(far):
        ax.axvline(e, color=color, ls=(0, (1, 1.5)), lw=0.8, gid="unreachable",
                   label="SegCertify unreachable" if label and i == 0 else None)  # fmt: skip


def _style(ax, ylabel: str, title: str) -> None:
    ax.set_xlabel(r"$\varepsilon$ ($\ell_2$, [0,1] pixels)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.0)
    ax.set_xlim(left=0)
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3, lw=0.4)
    # below the axes, so that no data is ever hidden behind it whatever the curves do
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False, handlelength=1.6, borderaxespad=0)


def _accuracy_panel(ax, res: dict) -> None:
    lip, eps = res["lipschitz"], res["eps"]
    clean = lip["clean_pixel_accuracy"]["macro"]
    ax.plot(lip["curve_eps"], lip["curve_certified_pixel_accuracy_macro"], color=_LIP, lw=1.0, label="Lipschitz, joint")
    ax.plot([0, *eps], [clean, *lip["certified_pixel_accuracy_per_pixel"]["macro"]], "s:", color=_LIP, ms=2.5,
            lw=0.8, label="Lipschitz, per pixel")  # fmt: skip
    for i, s in enumerate(res["segcertify"]):
        xs, ys, far = _sc_points(s, "certified_pixel_accuracy_macro")
        start = s["twin_clean_pixel_accuracy"]["macro"]
        ax.plot([0, *xs], [start, *ys], "o-", color=_SC, ms=2.5, lw=0.8,
                label=f"SegCertify $\\sigma$={s['sigma']:g}, n={s['n']}")  # fmt: skip
        _mark_unreachable(ax, far, _SC, i == 0)
    _style(ax, "certified pixel acc. (macro)", "(a)")


def _miou_panel(ax, res: dict) -> None:
    lip, eps = res["lipschitz"], res["eps"]
    ax.plot([0, *eps], [lip["clean_miou"]["micro"], *lip["worst_miou_bound"]["micro"]], "s-", color=_LIP, ms=2.5,
            lw=1.0, label="Lipschitz, sound bound")  # fmt: skip
    for i, s in enumerate(res["segcertify"]):
        start = s["twin_clean_miou"]["micro"]
        xs, ys, far = _sc_points(s, "worst_case_miou_micro")
        ax.plot([0, *xs], [start, *ys], "o-", color=_SC, ms=2.5, lw=0.8, label="SegCertify, worst case")
        xs, ys, _ = _sc_points(s, "certified_map_miou_micro")
        ax.plot([0, *xs], [start, *ys], "o--", color=_SC, ms=2.0, lw=0.6, mfc="white",
                label="SegCertify, certified map" if i == 0 else None)  # fmt: skip
        _mark_unreachable(ax, far, _SC, i == 0)
    _style(ax, "worst-case mIoU (pooled)", "(b)")


def _label_rgba(labels: np.ndarray, k: int) -> np.ndarray:
    """RGBA image of a label map: class colours, abstain (< 0) grey, ignored (>= k) white."""
    colours = _class_colours(k)
    out = np.empty((*labels.shape, 4))
    out[:] = _IGNORE_WHITE
    valid = (labels >= 0) & (labels < k)
    out[valid] = colours[labels[valid]]
    out[labels < 0] = _ABSTAIN_GREY
    return out


def _class_colours(k: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if k <= 20 else colormaps["hsv"]
    # tab20 in a fixed order that avoids its greys (which mean "abstain" here)
    order = [0, 2, 4, 6, 8, 10, 16, 18, 1, 3, 5, 9, 11, 17, 19, 12, 13, 14, 7, 15]
    return np.array([cmap(order[i] if k <= 20 else i / k) for i in range(k)])


def _scene_panels(fig, axes, res: dict) -> None:
    from matplotlib.patches import Patch

    ex, names = res["_example"], res.get("class_names") or []
    k = len(names) if names else int(max(ex["pred"].max(), 0)) + 1
    image = np.clip(np.asarray(ex["image"]).transpose(1, 2, 0), 0, 1)
    axes[0].imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, interpolation="nearest")
    axes[0].set_title("(c) image", loc="left")
    axes[1].imshow(_label_rgba(np.asarray(ex["target"]), k), interpolation="nearest")
    axes[1].set_title("ground truth", loc="left")
    axes[2].imshow(_label_rgba(np.asarray(ex["pred"]), k), interpolation="nearest")
    axes[2].set_title("Lipschitz prediction", loc="left")
    abstain = ex.get("abstain") or {}
    if abstain:
        e = sorted(abstain)[0]
        axes[3].imshow(_label_rgba(np.asarray(abstain[e]), k), interpolation="nearest")
        axes[3].set_title(f"SegCertify, $\\varepsilon$={e:g}", loc="left")
    radius = axes[4].imshow(np.asarray(ex["radius"]), cmap="magma", interpolation="nearest")
    axes[4].set_title("Lipschitz radius", loc="left")
    # the colour bar in the next cell: the scene panels stay one size and aligned
    axes[5].axis("off")
    bar = fig.colorbar(radius, cax=axes[5].inset_axes([0.0, 0.0, 0.08, 1.0]))
    bar.set_label(r"$\ell_2$ radius", labelpad=1)
    bar.ax.tick_params(labelsize=5, length=2)
    for a in axes[:5]:
        a.set_xticks([])
        a.set_yticks([])
    colours = _class_colours(k)
    handles = [Patch(color=colours[c], label=names[c] if names else str(c)) for c in range(k)]
    handles.append(Patch(color=_ABSTAIN_GREY, label="abstain"))
    handles.append(Patch(facecolor=_IGNORE_WHITE, edgecolor="0.5", lw=0.5, label="ignored"))
    axes[6].axis("off")
    axes[6].legend(handles=handles, loc="center", ncol=5, frameon=False, fontsize=5, handlelength=0.9,
                   columnspacing=0.8, handletextpad=0.3, labelspacing=0.25, borderaxespad=0)  # fmt: skip
