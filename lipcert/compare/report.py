"""Tables, CSV, JSON and the plot of a comparison (see :mod:`lipcert.compare`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .figure import comparison_figure


def _f(x, digits=4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _range(q) -> str:
    return f"{q[0]:.3f}-{q[1]:.3f}"


def markdown(res: dict) -> str:
    """The comparison as markdown tables (every number names macro or micro).

    Args:
        res: the results dict of :func:`lipcert.compare.run_compare`.

    Returns:
        The certificate table, the timing table and the ratios, as markdown.
    """
    return "\n".join(_certificate_lines(res) + _timing_lines(res) + _ratio_lines(res))


def _certificate_lines(res: dict) -> list[str]:
    lip = res["lipschitz"]
    lines = [
        f"## Lipschitz certificate vs SegCertify ({res['n_images']} images; {res['hardware']})",
        "",
        f"Lipschitz model: guaranteed L = {lip['lipschitz']:.4f} ({lip['lipschitz_source']}); clean pixel "
        f"accuracy {_f(lip['clean_pixel_accuracy']['micro'])} (micro) / "
        f"{_f(lip['clean_pixel_accuracy']['macro'])} (macro); clean mIoU {_f(lip['clean_miou']['micro'])} "
        f"(pooled, micro) / {_f(lip['clean_miou']['macro'])} (macro); its certificate is deterministic. Its "
        "certified pixel accuracy and foreground recall are exact for the relaxed attacker (any change of the "
        "logits of l2 norm <= L eps, the joint certificate); its worst-case mIoU values are sound bounds "
        "(budget split over classes).",
        "",
    ]
    for s in res["segcertify"]:
        lines.append(
            f"{_sc_name(s)}: smooths the noise-trained twin (clean pixel accuracy "
            f"{_f(s['twin_clean_pixel_accuracy']['micro'])} micro / {_f(s['twin_clean_pixel_accuracy']['macro'])} "
            f"macro; clean mIoU {_f(s['twin_clean_miou']['micro'])} pooled / {_f(s['twin_clean_miou']['macro'])} "
            f"macro); n0 = {s['n0']}, n = {s['n']}, {s['correction'].capitalize()} correction, alpha = {s['alpha']}: "
            "every value holds with probability 1 - alpha; radius R = sigma Phi^-1(tau)."
        )
    lines += [
        "",
        "| eps | method | certified pixel acc (macro) | certified pixel acc (micro) | per-pixel cert. acc "
        "(macro) | abstain rate (micro) | worst-case mIoU (macro) | worst-case mIoU (micro, pooled) | "
        "certified-map mIoU (micro, clean input, not a worst case) | certified foreground recall "
        "(micro, mean of the foreground classes) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for j, e in enumerate(res["eps"]):
        lines.append(_lipschitz_row(lip, j, e))
        lines += [_segcertify_row(s, s["results"][j], e) for s in res["segcertify"]]
    return lines


def _sc_name(s: dict) -> str:
    return f"SegCertify sigma={s['sigma']}, n0={s['n0']}, n={s['n']}"


def _lipschitz_row(lip: dict, j: int, e: float) -> str:
    fg = lip["certified_foreground_recall_micro"]
    return (
        f"| {e:g} | Lipschitz (deterministic, 1 forward pass) | "
        f"{_f(lip['certified_pixel_accuracy_joint']['macro'][j])}"
        f" | {_f(lip['certified_pixel_accuracy_joint']['micro'][j])} | "
        f"{_f(lip['certified_pixel_accuracy_per_pixel']['macro'][j])} | 0 (none) | "
        f"{_f(lip['worst_miou_bound']['macro'][j])} (sound bound, budget split) | "
        f"{_f(lip['worst_miou_bound']['micro'][j])} (sound bound, pooled budget split) | - | "
        f"{_f(fg[j]) if fg else 'n/a'} |"
    )


def _segcertify_row(s: dict, row: dict, e: float) -> str:
    name = f"{_sc_name(s)}, alpha={s['alpha']}, {s['correction']}"
    if not row["reachable"]:
        return (
            f"| {e:g} | {name} | unreachable (tau {row['tau']:.4f} > ceiling {row['tau_ceiling']:.4f}) | | | | | | | |"
        )
    per_pixel = row["certified_pixel_accuracy_macro"]  # per pixel by construction: the same certificate
    return (
        f"| {e:g} | {name}; tau {row['tau']:.4f}, R {row['radius']:.4f} | "
        f"{_f(row['certified_pixel_accuracy_macro'])} | "
        f"{_f(row['certified_pixel_accuracy_micro'])} | {_f(per_pixel)} (per pixel by construction) | "
        f"{_f(row['abstain_rate_micro'])} | "
        f"{_f(row['worst_case_miou_macro'])} (abstained adversarial) | "
        f"{_f(row['worst_case_miou_micro'])} (abstained adversarial) | "
        f"{_f(row['certified_map_miou_micro'])} | {_f(row.get('certified_foreground_recall_micro'))} |"
    )


def _timing_lines(res: dict) -> list[str]:
    eps = res["eps"]
    t = res["timing"]
    lines = [
        "",
        "| method | forward passes per image | median s/image | min | max | speed-up of the certificate |",
        "|---|---|---|---|---|---|",
    ]
    lt = t["lipschitz_total"]
    lines.append(
        f"| Lipschitz (forward + certificate at {len(eps)} radii; batches of {res['lip_batch']} images) "
        f"| 1 | {lt['median']:.5f} | "
        f"{lt['min']:.5f} | {lt['max']:.5f} | 1x |"
    )
    for s, (name, sp) in zip(res["segcertify"], res["ratios"]["speedup_vs_segcertify"].items(), strict=True):
        st = s["seconds_per_image"]
        lines.append(
            f"| SegCertify {name} (batches of {res['sample_batch']} noisy samples) | "
            f"{s['forward_passes_per_image']} | {st['median']:.4f} | "
            f"{st['min']:.4f} | {st['max']:.4f} | {sp:.0f}x |"
        )
    return lines


def _ratio_lines(res: dict) -> list[str]:
    r = res["ratios"]
    return [
        "",
        f"Ratios: overhead (forward + certificate) / forward = {r['overhead']:.3f}; "
        + "; ".join(f"speed-up vs SegCertify {k} = {v:.0f}x" for k, v in r["speedup_vs_segcertify"].items())
        + f"; 64-radius curve / 1 radius (forward included) = {r['curve_64_vs_1']:.3f} (quartiles over repeats "
        f"{_range(r['curve_64_vs_1_quartiles'])}; certification alone {r['curve_64_vs_1_certification_only']:.3f}, "
        f"quartiles {_range(r['curve_64_vs_1_certification_only_quartiles'])}; ratios of medians)."
        + (
            f" Same model on one {r['overhead_at_size']['size'][0]}x{r['overhead_at_size']['size'][1]} image: "
            f"forward {r['overhead_at_size']['forward_seconds']:.3f} s, overhead "
            f"{r['overhead_at_size']['overhead']:.3f}."
            if "overhead_at_size" in r
            else ""
        ),
    ]


def write_outputs(res: dict, out_dir) -> dict:
    """Write results.json, results.csv, comparison.png and figure.pdf / figure.png into ``out_dir``; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in res.items() if not k.startswith("_")}
    (out / "results.json").write_text(json.dumps(public, indent=2))
    rows = _csv_rows(res)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    paths = {"json": str(out / "results.json"), "csv": str(out / "results.csv")}
    paths["plot"] = _plot(res, out / "comparison.png")
    figure = comparison_figure(res, out / "figure")
    paths["figure_pdf"], paths["figure_png"] = figure["pdf"], figure["png"]
    return paths


CSV_COLUMNS = ["method", "setting", "eps", "metric", "average", "value", "status", "alpha", "clean"]


def _csv_rows(res: dict) -> list[list]:
    """The CSV rows of a comparison.

    One row per (method, setting, eps, metric, average): numeric ``value`` (empty when unreachable),
    ``status`` (exact / bound / unreachable; SegCertify values hold with probability 1 - alpha), the
    ``alpha`` of SegCertify (empty for the deterministic Lipschitz certificate) and the clean value.
    """
    lip, rows = res["lipschitz"], []
    lip_metrics = (
        ("certified_pixel_accuracy_joint", "exact", lip["clean_pixel_accuracy"]),
        ("certified_pixel_accuracy_per_pixel", "exact", lip["clean_pixel_accuracy"]),
        ("worst_miou_bound", "bound", lip["clean_miou"]),
    )
    for j, e in enumerate(res["eps"]):
        for avg in ("macro", "micro"):
            for name, status, clean in lip_metrics:
                rows.append(["lipschitz", "deterministic", e, name, avg, lip[name][avg][j], status, "", clean[avg]])
        fg = lip["certified_foreground_recall_micro"]
        if fg:
            rows.append(
                ["lipschitz", "deterministic", e, "certified_foreground_recall", "micro", fg[j], "exact", "", ""]
            )
        for s in res["segcertify"]:
            rows += _segcertify_csv_rows(s, s["results"][j], e)
    return rows


def _segcertify_csv_rows(s: dict, row: dict, e: float) -> list[list]:
    """CSV rows of one SegCertify setting at one eps (``clean``: the twin's own clean value)."""
    setting = f"sigma={s['sigma']};n0={s['n0']};n={s['n']};correction={s['correction']}"
    clean_of = {"certified_pixel_accuracy": s["twin_clean_pixel_accuracy"], "worst_case_miou": s["twin_clean_miou"]}
    clean_of["certified_map_miou"] = clean_of["worst_case_miou"]
    rows = []
    for metric in ("certified_pixel_accuracy", "abstain_rate", "worst_case_miou", "certified_map_miou"):
        for avg in ("macro", "micro"):
            reachable = row["reachable"]
            status = ("bound" if metric != "abstain_rate" else "measured") if reachable else "unreachable"
            value = row.get(f"{metric}_{avg}") if reachable else ""
            clean = clean_of[metric][avg] if metric in clean_of else ""
            rows.append(["segcertify", setting, e, metric, avg, value, status, s["alpha"], clean])
    recall = row.get("certified_foreground_recall_micro") if row["reachable"] else ""
    status = "bound" if row["reachable"] else "unreachable"
    rows.append(["segcertify", setting, e, "certified_foreground_recall", "micro", recall, status, s["alpha"], ""])
    return rows


def _plot(res: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lip, ex = res["lipschitz"], res["_example"]
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    ax = axes[0]
    ax.plot(lip["curve_eps"], lip["curve_certified_pixel_accuracy_macro"], label="Lipschitz, joint (macro)")
    ax.plot(res["eps"], lip["certified_pixel_accuracy_per_pixel"]["macro"], "s--", label="Lipschitz, per-pixel (macro)")
    for s in res["segcertify"]:
        pts = [(r["eps"], r["certified_pixel_accuracy_macro"]) for r in s["results"] if r["reachable"]]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=f"SegCertify s={s['sigma']} n={s['n']} (macro)")
    ax.set_xlabel("eps (l2, [0,1] pixels)")
    ax.set_ylabel("certified pixel accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("certified accuracy vs eps")
    axes[1].imshow(np.clip(ex["image"].transpose(1, 2, 0), 0, 1))
    axes[1].set_title("image")
    axes[2].imshow(ex["pred"], cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
    axes[2].set_title("Lipschitz prediction")
    im = axes[3].imshow(ex["radius"], cmap="magma")
    axes[3].set_title("per-pixel certified radius")
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    abst = ex.get("abstain", {})
    if abst:
        e = sorted(abst)[len(abst) // 2]
        labels = abst[e]
        axes[4].imshow(np.where(labels < 0, -1, labels), cmap="tab20", vmin=-1, vmax=19, interpolation="nearest")
        axes[4].imshow(np.ma.masked_where(labels >= 0, labels), cmap="gray", interpolation="nearest")
        axes[4].set_title(f"SegCertify labels, eps={e:g} (black = abstain)")
    for a in axes[1:]:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
