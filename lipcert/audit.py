"""Certificates and attacks on the same images with the same aggregation: soundness and tightness."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checks import check_eps, check_ignore_index, check_images, check_lipschitz
from .attacks import SEA, pixel_accuracy
from .certify import certify_logits
from .errors import LipcertError
from .lipschitz import export_plain, lipschitz_bound


@dataclass
class AuditReport:
    """Per eps: certified and attacked pixel accuracy (macro = mean over images, micro = pooled pixels).

    ``rows`` holds one entry per (image, eps): ``certified``, ``attacked``, ``gap``. ``violations`` counts
    the (image, eps) pairs where the attacked accuracy is below the certified one: each is a broken
    certificate (a wrong Lipschitz constant, or a bug), never expected.
    """

    eps: list[float]
    lipschitz: float
    lipschitz_source: str
    certified: dict = field(default_factory=dict)
    attacked: dict = field(default_factory=dict)
    gap: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    violations: int = 0

    def markdown(self) -> str:
        lines = [
            f"L = {self.lipschitz:.6f} ({self.lipschitz_source}); {len({r['image'] for r in self.rows})} images; "
            f"soundness violations: {self.violations}",
            "",
            "| eps | certified (macro) | attacked (macro) | gap (macro) | certified (micro) | attacked (micro) |",
            "|---|---|---|---|---|---|",
        ]
        for j, e in enumerate(self.eps):
            lines.append(
                f"| {e:g} | {self.certified['macro'][j]:.4f} | {self.attacked['macro'][j]:.4f} | "
                f"{self.gap['macro'][j]:.4f} | {self.certified['micro'][j]:.4f} | "
                f"{self.attacked['micro'][j]:.4f} |"
            )
        return "\n".join(lines)


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
        L, source = lipschitz_bound(frozen, tuple(first[0].shape[1:])), "computed"
    else:
        L, source = check_lipschitz(lipschitz), "declared"
    if attack_factory is None:

        def attack_factory(m, e):
            return SEA(m, e, norm="l2", steps=steps, lipschitz=L)

    rep = AuditReport(eps=eps, lipschitz=L, lipschitz_source=source)
    sums = {k: np.zeros((len(eps), 2)) for k in ("certified", "attacked")}  # micro: correct, valid
    per_image = {k: [[] for _ in eps] for k in ("certified", "attacked")}
    index = 0
    for n_batch, item in enumerate(tqdm(itertools.chain([first], batches), desc="audit", disable=not progress)):
        x, y = _batch_pair(item, n_batch)
        with torch.no_grad():
            logits = frozen(x)
        cert = certify_logits(logits, eps, "pixel_accuracy", y, lipschitz=L, ignore_index=ignore_index)
        valid = (y != ignore_index).flatten(1).sum(1).double().numpy()
        for j, e in enumerate(eps):
            adv = attack_factory(frozen, e)(x, y, ignore_index=ignore_index)
            with torch.no_grad():
                acc = pixel_accuracy(frozen(adv), y, ignore_index).numpy()
            c = cert.worst[:, j]
            for b in range(x.shape[0]):
                rep.rows.append(
                    {
                        "image": index + b,
                        "eps": e,
                        "certified": float(c[b]),
                        "attacked": float(acc[b]),
                        "gap": float(acc[b] - c[b]),
                    }
                )
                if acc[b] < c[b] - tol:
                    rep.violations += 1
            per_image["certified"][j] += c.tolist()
            per_image["attacked"][j] += acc.tolist()
            sums["certified"][j] += [np.nansum(c * valid), valid.sum()]
            sums["attacked"][j] += [np.nansum(acc * valid), valid.sum()]
        index += x.shape[0]
    for key in ("certified", "attacked"):
        getattr(rep, key)["macro"] = [float(np.nanmean(v)) for v in per_image[key]]
        getattr(rep, key)["micro"] = [float(s[0] / s[1]) if s[1] else float("nan") for s in sums[key]]
    rep.gap = {
        avg: [a - c for a, c in zip(rep.attacked[avg], rep.certified[avg], strict=True)] for avg in ("macro", "micro")
    }
    return rep
