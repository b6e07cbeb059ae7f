"""Certificates and attacks on the same images with the same aggregation: soundness and tightness."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attacks import SEA
from ..attacks.apgd import check_within
from ..attacks.sea import confusions_of, worst_case_miou
from ..certify import certify_logits
from ..core.aggregate import macro_mean
from ..core.checks import check_eps, check_ignore_index, check_images, check_lipschitz
from ..core.distributed import gather_objects
from ..core.errors import LipcertError
from ..lipschitz import export_plain, lipschitz_bound
from ..metrics.certified import CertifiedMetric


@dataclass
class AuditReport:
    """Per eps: certified and attacked values of every audited metric, with the same aggregation.

    ``metrics[m]`` for m in pixel_accuracy, recall (FNR = 1 - recall), iou, miou: ``certified`` /
    ``attacked`` ``{"macro": (E,), "micro": (E,)}`` (macro: mean over images of per-image values, mean
    over classes for per-class metrics; micro: pooled over images, the certificate from
    :class:`lipcert.CertifiedMetric`, the attack from the best attack output per image) and
    ``violations``: per image (and class), and pooled, the values where the attack went below the
    certificate. Each is a broken certificate (a wrong Lipschitz constant, or a bug), never expected.
    ``certified`` / ``attacked`` / ``gap`` / ``rows`` repeat the pixel accuracy (one row per image and eps).
    """

    eps: list[float]
    lipschitz: float
    lipschitz_source: str
    certified: dict = field(default_factory=dict)
    attacked: dict = field(default_factory=dict)
    gap: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    violations: int = 0
    metrics: dict = field(default_factory=dict)

    def markdown(self) -> str:
        """The report as a markdown table (one row per metric and eps)."""
        lines = [
            f"L = {self.lipschitz:.6f} ({self.lipschitz_source}); {len({r['image'] for r in self.rows})} images; "
            f"soundness violations: {self.violations}",
            "",
            "| metric | eps | certified (macro) | attacked (macro) | gap (macro) | certified (micro) | "
            "attacked (micro) | gap (micro) | violations |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m, entry in self.metrics.items():
            c, a = entry["certified"], entry["attacked"]
            for j, e in enumerate(self.eps):
                lines.append(
                    f"| {_LABELS[m]} | {e:g} | {c['macro'][j]:.4f} | {a['macro'][j]:.4f} | "
                    f"{a['macro'][j] - c['macro'][j]:.4f} | {c['micro'][j]:.4f} | {a['micro'][j]:.4f} | "
                    f"{a['micro'][j] - c['micro'][j]:.4f} | {entry['violations'] if j == 0 else ''} |"
                )
        return "\n".join(lines)


_LABELS = {
    "pixel_accuracy": "pixel accuracy",
    "recall": "recall (mean of classes; FNR = 1 - recall)",
    "iou": "per-class IoU (mean of classes)",
    "miou": "mIoU (macro: budget split per image; micro: pooled budget split)",
}


def _batch_pair(item, n_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader item as (images float (B, C, H, W) in [0, 1], labels int (B, H, W)), or a clear error."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise LipcertError(
            f"Expected every loader item to be an (images, labels) pair, but batch {n_batch} is a "
            f"{type(item).__name__}{'' if not hasattr(item, 'shape') else ' of shape ' + str(tuple(item.shape))}."
        )
    x, y = item
    x = check_images(x)
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.shape != (x.shape[0], *x.shape[2:]):
        raise LipcertError(
            f"Expected the labels of batch {n_batch} to be an integer tensor of shape {(x.shape[0], *x.shape[2:])}, "
            f"but got {getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}."
        )
    return x, y


def _pooled_lists(items: list) -> list:
    """Every process's list, concatenated in rank order (the list itself in one process)."""
    return [item for part in gather_objects(items) for item in part]


class _AuditState:
    """Certified values (per image, and pooled by the accumulators) and attacked confusions of an audit."""

    def __init__(self, eps: list[float], lipschitz: float, ignore_index) -> None:
        self.eps, self.L, self.ignore = eps, lipschitz, ignore_index
        self.per_image = {m: [] for m in AUDITED}
        self.pooled = {m: CertifiedMetric(m, eps, lipschitz=lipschitz, ignore_index=ignore_index) for m in AUDITED}
        self.confusions: list[list[np.ndarray]] = [[] for _ in eps]  # per eps: (A, B, K, K) per batch

    def certify(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        for m in AUDITED:
            self.per_image[m].append(
                certify_logits(logits, self.eps, m, y, lipschitz=self.L, ignore_index=self.ignore).worst
            )
            self.pooled[m].update(logits, y)

    def report(self, rep: AuditReport, tol: float) -> None:
        """Fill the report: every metric, per image (macro) and pooled (micro), violations counted."""
        # under torchrun: every process's images, in rank order (= image order), and the gathered states
        certified = {m: np.concatenate(_pooled_lists(v)) for m, v in self.per_image.items()}  # (N, E[, K])
        pooled = {m: self.pooled[m].compute().worst for m in AUDITED}  # (E[, K])
        for j, e in enumerate(self.eps):
            cms = np.concatenate(_pooled_lists(self.confusions[j]), axis=1)  # (A, N, K, K)
            attacked = _attacked_values(cms)
            for m in AUDITED:
                c, a = certified[m][:, j], attacked[m]
                bad = ~np.isnan(c) & ~np.isnan(a) & (a < c - tol)
                entry = rep.metrics.setdefault(m, {"certified": {}, "attacked": {}, "violations": 0})
                entry["violations"] += int(bad.sum())
                for key, value in (("certified", c), ("attacked", a)):
                    entry[key].setdefault("macro", []).append(macro_mean(value))
                pooled_attack = _pooled_attack(cms, m)
                bad_pooled = ~np.isnan(pooled[m][j]) & ~np.isnan(pooled_attack) & (pooled_attack < pooled[m][j] - tol)
                entry["violations"] += int(np.sum(bad_pooled))
                entry["certified"].setdefault("micro", []).append(macro_mean(pooled[m][j]))
                entry["attacked"].setdefault("micro", []).append(macro_mean(pooled_attack))
            acc = certified["pixel_accuracy"][:, j]
            for b in range(acc.shape[0]):
                hit = float(attacked["pixel_accuracy"][b])
                row = {"image": b, "eps": e, "certified": float(acc[b]), "attacked": hit}
                rep.rows.append({**row, "gap": hit - float(acc[b])})
        rep.violations = sum(entry["violations"] for entry in rep.metrics.values())
        pa = rep.metrics["pixel_accuracy"]
        rep.certified, rep.attacked = pa["certified"], pa["attacked"]
        rep.gap = {avg: [a - c for a, c in zip(rep.attacked[avg], rep.certified[avg], strict=True)] for avg in
                   ("macro", "micro")}  # fmt: skip


AUDITED = ("pixel_accuracy", "recall", "iou", "miou")


def _per_image_values(cms: np.ndarray) -> dict:
    """Per (attack, image) values of every audited metric from confusions (A, N, K, K)."""
    diag = np.diagonal(cms, axis1=-2, axis2=-1).astype(np.float64)  # (A, N, K)
    rows, cols = cms.sum(-1), cms.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = diag.sum(-1) / cms.sum((-1, -2))
        recall = np.where(rows > 0, diag / np.where(rows > 0, rows, 1), np.nan)
        union = rows + cols - diag
        iou = np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)
    defined = ~np.isnan(iou)
    miou = np.where(defined.any(-1), np.nansum(iou, -1) / np.maximum(defined.sum(-1), 1), np.nan)
    return {"pixel_accuracy": acc, "recall": recall, "iou": iou, "miou": miou}


def _attacked_values(cms: np.ndarray) -> dict:
    """Per image the lowest value over the attacks (the best attack output for each metric and class)."""
    values = _per_image_values(cms)
    out = {}
    for m, v in values.items():
        filled = np.where(np.isnan(v), np.inf, v)
        best = filled.min(0)
        out[m] = np.where(np.isinf(best), np.nan, best)
    return out


def _pooled_attack(cms: np.ndarray, metric: str):
    """A pooled value the attacks reach.

    A pooled value the attacks reach: per image the output lowest on that metric (per class for
    recall / IoU), the counts pooled; for mIoU SEA's greedy search over per-image choices.
    """
    n_img, k = cms.shape[1], cms.shape[-1]
    if metric == "miou":
        value, _ = worst_case_miou(cms)
        return value
    values = _per_image_values(cms)[metric]
    if metric == "pixel_accuracy":
        pick = np.where(np.isnan(values), np.inf, values).argmin(0)  # (N,)
        total = cms[pick, np.arange(n_img)].sum(0)
        return np.trace(total) / total.sum() if total.sum() else np.nan
    out = np.full(k, np.nan)
    for c in range(k):
        pick = np.where(np.isnan(values[..., c]), np.inf, values[..., c]).argmin(0)
        total = cms[pick, np.arange(n_img)].sum(0)
        den = total[c].sum() if metric == "recall" else total[c].sum() + total[:, c].sum() - total[c, c]
        out[c] = total[c, c] / den if den else np.nan
    return out


def audit(
    model: torch.nn.Module,
    loader,
    eps,
    lipschitz: float | None = None,
    *,
    attack_factory=None,
    steps: int = 100,
    ignore_index: int = 255,
    progress: bool = False,
    tol: float = 1e-9,
) -> AuditReport:
    """Certify and attack the same images; report certified, attacked, gap and soundness violations.

    Args:
        model: segmentation model on [0,1] images (frozen with export_plain; eval mode).
        loader: an iterable of (images float (B,C,H,W), labels int (B,H,W)) batches.
        eps: radii (l2, [0,1] pixel units).
        lipschitz: declared L; None computes the guaranteed bound from the weights.
        attack_factory: ``f(model, eps) -> callable attack``; default: :class:`lipcert.attacks.SEA` in l2
            with the margin attack, ``steps`` iterations per loss.
        steps: iterations per loss of the default attack.
        ignore_index: label excluded from every count.
        progress: show a progress bar.
        tol: a violation is ``attacked < certified - tol``.

    Returns:
        :class:`AuditReport`.

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 2, 1, bias=False)
        >>> batch = (torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
        >>> audit(net, [batch], [0.1], steps=3).violations
        0
    """
    eps = check_eps(eps).tolist()
    ignore_index = check_ignore_index(ignore_index)
    if not isinstance(model, torch.nn.Module):
        raise LipcertError(f"Expected `model` to be a torch.nn.Module, but got {type(model).__name__}.")
    frozen = export_plain(model)
    batches = iter(loader)  # consumed lazily: only the first batch is read ahead, for the input shape
    first = next(batches, None)
    if first is None:
        raise LipcertError("audit needs at least one (images, labels) batch.")
    first = _batch_pair(first, 0)
    if lipschitz is None:
        L, source = lipschitz_bound(frozen, tuple(first[0].shape[1:]), progress=progress), "computed"
    else:
        L, source = check_lipschitz(lipschitz), "declared"
    if attack_factory is None:

        def attack_factory(m, e):
            return SEA(m, e, norm="l2", steps=steps, lipschitz=L)

    rep = AuditReport(eps=eps, lipschitz=L, lipschitz_source=source)
    state = _AuditState(eps, L, ignore_index)
    total = len(loader) if hasattr(loader, "__len__") else None  # a list or DataLoader: a bar with a total
    bar = tqdm(itertools.chain([first], batches), desc="audit batches", total=total, disable=not progress)
    for n_batch, item in enumerate(bar):
        x, y = _batch_pair(item, n_batch)
        with torch.no_grad():
            logits = frozen(x)
        k = logits.shape[1]
        state.certify(logits, y)
        for j, e in enumerate(eps):
            attack = attack_factory(frozen, e)
            runner = getattr(attack, "run_all", attack)  # an ensemble's every output, or the attack's one
            candidates = runner(x, y, ignore_index=ignore_index)
            candidates = candidates if isinstance(candidates, list) else [candidates]
            for adv in candidates:
                check_within(x, adv, e, "l2")
            state.confusions[j].append(confusions_of(frozen, candidates, y, k, ignore_index))
    state.report(rep, tol)
    return rep
