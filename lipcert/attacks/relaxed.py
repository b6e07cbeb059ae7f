"""The relaxed attacker in logit space: how far a logit-only certificate could still rise.

Every lipcert certificate uses only the clean logits ``z`` and the Lipschitz constant L, so it must hold
for every logit map ``z'`` with ``||z' - z||_2 <= L * eps`` per image: for any such ``z'`` the map
``y -> z + (z' - z) <(y - x), delta> / eps**2`` is L-Lipschitz and reaches ``z'`` at ``x + delta`` (over
a dataset, with the images far apart, Kirszbraun's theorem joins the images' maps into one; see
docs/math.md). An explicit ``z'`` of that kind is therefore a *witness*: its pooled mIoU is an upper
bound on the relaxed worst case, hence on what any sound certificate computed from ``(z, L)`` alone can
ever certify. It is
not a certificate (an attacker's solution never is) and not an attack on the network either: the real
network need not be able to produce ``z'``.

The witness is built greedily: a flip of pixel p to class k is priced by the exact squared norm of the
smallest logit change that makes k the strict argmax (water-filling: raise ``z_k`` and lower every
logit above the common level), and valued by the exact change of the pooled mIoU at the current counts;
each image spends its budget in rounds, best value per cost first.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.aggregate import macro_mean
from ..core.checks import (
    check_choice,
    check_eps,
    check_ignore_index,
    check_lipschitz,
    check_logits,
    check_positive,
    check_target,
)
from ..core.errors import LipcertError
from ..worst_case.confusion import confusion_matrix, iou_from_confusion
from ..worst_case.costs import top2

_STRICT = 1e-9  # the new top logit is above the level by this relative gap (strict argmax, first-index ties)


def _level_costs(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cost, level), each (K, P): the least ``||dz||**2`` making class k the strict argmax, and its level."""
    k_n, p_n = z.shape
    cost = np.zeros((k_n, p_n))
    level = np.empty((k_n, p_n))
    for k in range(k_n):
        others = -np.sort(-np.delete(z, k, axis=0), axis=0)  # descending
        csum = np.cumsum(others, axis=0)
        best_t = np.full(p_n, np.nan)
        for m in range(1, k_n):
            t = (z[k] + csum[m - 1]) / (m + 1)
            lower = others[m] if m < k_n - 1 else np.full(p_n, -np.inf)
            ok = np.isnan(best_t) & (others[m - 1] > t) & (lower <= t)
            best_t[ok] = t[ok]
        top = z[k] >= others[0]
        best_t[top] = z[k][top]
        t = best_t + _STRICT * np.maximum(1.0, np.abs(best_t))
        level[k] = best_t
        # a tie with an earlier class still pays for the strict gap (the prediction itself gains nothing)
        cost[k] = (t - z[k]) ** 2 + (np.maximum(z - best_t, 0.0) ** 2).sum(0) - np.maximum(z[k] - best_t, 0) ** 2
    return cost, level


def _miou(cm: np.ndarray) -> float:
    return macro_mean(iou_from_confusion(cm))


def _drops(cm: np.ndarray, t, j, k):
    """Drop of the pooled mIoU when one pixel of true class t moves from prediction j to k (ints or arrays).

    Only classes j and k change: ``I_j -= [t == j]``, ``U_j += [t == j] - 1``, ``I_k += [t == k]``,
    ``U_k += 1 - [t == k]``; a class enters or leaves the mean when its union leaves or reaches 0.
    """
    inter = np.diag(cm).astype(np.float64)
    union = (cm.sum(0) + cm.sum(1)).astype(np.float64) - inter

    def iou(i, u):
        return np.where(u > 0, i / np.where(u > 0, u, 1.0), 0.0)

    total, present = iou(inter, union).sum(), float((union > 0).sum())
    if present == 0:
        return np.zeros(np.broadcast(t, j, k).shape)  # no labelled pixel: nothing to lower
    tj, tk = np.equal(t, j).astype(np.float64), np.equal(t, k).astype(np.float64)
    ij, uj, ik, uk = inter[j] - tj, union[j] + tj - 1, inter[k] + tk, union[k] + 1 - tk
    new_total = total - iou(inter[j], union[j]) - iou(inter[k], union[k]) + iou(ij, uj) + iou(ik, uk)
    new_present = present - (union[j] > 0) - (union[k] > 0) + (uj > 0) + (uk > 0)
    return total / present - new_total / np.maximum(new_present, 1.0)


def miou_drop_table(cm: np.ndarray) -> np.ndarray:
    """(K, K, K) drop of the pooled mIoU when one pixel of true class t moves from prediction j to k.

    0 where no such pixel exists (``cm[t, j] == 0``) or ``j == k``.
    """
    t, j, k = np.meshgrid(*(np.arange(cm.shape[0]),) * 3, indexing="ij")
    return np.where((j != k) & (cm[t, j] > 0), _drops(cm, t, j, k), 0.0)


def move_drop(cm: np.ndarray, t: int, j: int, k: int) -> float:
    """Exact drop of the pooled mIoU when one pixel of true class t moves from prediction j to k (j != k)."""
    return float(_drops(cm, t, j, k))


def _image_round(i, priced, z0, z, pred, y, cm, spent, done, allowance) -> int:
    """Flips of image i, best mIoU drop per cost first, until it has spent ``allowance``; updates in place.

    The order comes from the drops at the counts when the round starts; each flip is then taken only if
    its exact drop at the current counts is positive, so every flip lowers the mIoU (drops do not add up:
    a class a first flip brings into the mean changes what later flips are worth).
    """
    cost, level = priced
    gain = miou_drop_table(cm)[y[i][None, :], pred[i][None, :], np.arange(cost.shape[0])[:, None]]  # (K, P)
    gain[:, y[i] < 0] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gain > 0, gain / np.maximum(cost, 1e-300), -np.inf)
    best_k = ratio.argmax(0)
    best = ratio[best_k, np.arange(ratio.shape[1])]
    order = np.argsort(-best, kind="stable")
    order = order[np.isfinite(best[order])]
    flips = 0
    for p, k in zip(order.tolist(), best_k[order].tolist(), strict=True):
        if done[i, p] or spent[i] + cost[k, p] > allowance or move_drop(cm, y[i, p], pred[i, p], k) <= 0:
            continue
        spent[i] += cost[k, p]
        done[i, p] = True
        cm[y[i, p], pred[i, p]] -= 1
        cm[y[i, p], k] += 1
        pred[i, p] = k
        lv = level[k, p]
        z[i, :, p] = np.minimum(z0[i, :, p], lv)
        z[i, k, p] = lv + _STRICT * max(1.0, abs(lv))
        flips += 1
    return flips


def _revert(i, p, z0, z, pred, y, cm) -> None:
    cm[y[i, p], pred[i, p]] -= 1
    z[i, :, p] = z0[i, :, p]
    pred[i, p] = int(z0[i, :, p].argmax())
    cm[y[i, p], pred[i, p]] += 1


def _revert_until_valid(z0, z, pred, y, cm, limit: float) -> int:
    """Undo flips whose argmax is not the one counted, then each image's largest until its norm <= limit.

    The costs are exact up to rounding; with logits far larger than ``limit`` that rounding can matter, and
    the witness must hold as built, so it is checked on the actual logits. Returns the flips undone.
    """
    undone = 0
    for i, p in zip(*np.nonzero(z.argmax(1) != pred), strict=True):
        _revert(i, p, z0, z, pred, y, cm)
        undone += 1
    for i in range(z.shape[0]):
        change = ((z[i] - z0[i]) ** 2).sum(0)
        for p in np.argsort(-change, kind="stable"):
            if np.sqrt(((z[i] - z0[i]) ** 2).sum()) <= limit or change[p] == 0:
                break
            _revert(i, p, z0, z, pred, y, cm)
            undone += 1
    return undone


def relaxed_miou_witness(logits, target, eps: float, lipschitz: float, ignore_index: int | None = 255,
                         rounds: int = 1, average: str = "micro") -> dict:  # fmt: skip
    """A logit map within ``L * eps`` of each image's logits that lowers the pooled (micro) or mean mIoU.

    Args:
        logits: (B, K, H, W) float clean logits.
        target: (B, H, W) int labels (``ignore_index`` left out).
        eps: l2 radius in [0,1] pixel units, > 0.
        lipschitz: the l2 Lipschitz constant L the certificates use.
        ignore_index: label left out of the metric, or None.
        rounds: budget rounds per image (gains are recomputed after each image and round; on the shipped
            model one round gave the lowest witness, 32 rounds 0.5 points higher).
        average: ``"micro"`` (lower the mIoU of the pooled counts) or ``"macro"`` (lower each image's own
            mIoU; the value is their mean, images without labelled pixels left out).

    Returns:
        ``{"logits": float64 (B, K, H, W) witness, "miou": its mIoU (pooled for micro, the mean over images
        for macro), "clean_miou": float (same aggregation), "norms": float64 (B,) l2 norm of each image's
        logit change, "flips": int}``, and for macro ``"per_image"``: float64 (B,) mIoU of each image; every
        norm is at most ``L * eps``.

    Raises:
        LipcertError: on bad logits (non-finite or beyond the certified range), targets, radius or L.

    Examples:
        >>> import torch
        >>> z = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])
        >>> w = relaxed_miou_witness(z, torch.tensor([[[0, 1]]]), eps=1.0, lipschitz=1.5)
        >>> round(w["clean_miou"], 3), round(w["miou"], 3), bool(w["norms"][0] <= 1.5)
        (1.0, 0.25, True)
    """
    L = check_lipschitz(lipschitz)
    radius = check_eps(eps)
    if radius.size != 1 or radius[0] == 0:
        raise LipcertError(f"Expected `eps` to be one radius > 0, but got {eps!r}.")
    t = check_logits(logits, finite=False)
    top2(t)  # finiteness and the range every certificate checks (|logit| < LOGIT_LIMIT)
    ignore_index = check_ignore_index(ignore_index)
    y = check_target(target, t, ignore_index).numpy()
    z0 = t.to(torch.float64).numpy()
    b, k_n, h, w = z0.shape
    y = y.reshape(b, h * w)
    y = np.where(y != ignore_index, y, -1) if ignore_index is not None else y
    rounds = check_positive(rounds, "rounds", integer=True)
    average = check_choice(average, ("micro", "macro"), "average")
    z0 = z0.reshape(b, k_n, h * w)
    if average == "micro":
        out = _witness(z0, y, L * float(radius[0]), rounds)
    else:
        parts = [_witness(z0[i : i + 1], y[i : i + 1], L * float(radius[0]), rounds) for i in range(b)]
        per_image = np.array([p["miou"] for p in parts])
        out = {"logits": np.concatenate([p["logits"] for p in parts]), "miou": macro_mean(per_image),
               "clean_miou": macro_mean(np.array([p["clean_miou"] for p in parts])),
               "norms": np.concatenate([p["norms"] for p in parts]), "flips": sum(p["flips"] for p in parts),
               "per_image": per_image}  # fmt: skip
    out["logits"] = out["logits"].reshape(b, k_n, h, w)
    return out


def _witness(z0: np.ndarray, y: np.ndarray, limit: float, rounds: int) -> dict:
    """The greedy witness for float64 (B, K, P) logits and (B, P) labels (-1: left out), norms <= limit."""
    b, k_n, _ = z0.shape
    z, pred = z0.copy(), z0.argmax(1)
    cm = sum(confusion_matrix(pred[i], y[i], k_n, -1) for i in range(b))
    clean = _miou(cm)
    budget = limit**2 * (1 - 1e-12)
    spent, done, flips = np.zeros(b), np.zeros(y.shape, dtype=bool), 0
    priced = [_level_costs(z0[i]) for i in range(b)]
    for r in range(rounds):
        for i in range(b):
            flips += _image_round(i, priced[i], z0, z, pred, y, cm, spent, done, budget * (r + 1) / rounds)
    flips -= _revert_until_valid(z0, z, pred, y, cm, limit)
    norms = np.sqrt(((z - z0) ** 2).sum((1, 2)))
    return {"logits": z, "miou": _miou(cm), "clean_miou": clean, "norms": norms, "flips": flips}
