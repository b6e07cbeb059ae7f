"""SEA ported to l2: an ensemble of APGD runs with SEA's losses (plus the margin attack), per-image worst case."""

from __future__ import annotations

import numpy as np
import torch

from ..core.aggregate import macro_mean
from ..core.model_state import eval_mode
from ..worst_case.confusion import confusion_matrix, iou_from_confusion
from .apgd import APGD, check_within
from .losses import pixel_accuracy
from .margin import MarginAttack


class SEA:
    """Segmentation Ensemble Attack (Croce et al.; ECCV version: Mask-CE-Balanced, Mask-CE, JS), in l2 or linf.

    Each image gets, across the attacks, the point with the lowest pixel accuracy. With ``margin=True``
    (l2 only) the margin attack aimed at the joint certificate joins the ensemble.

    Args:
        model: as in :class:`APGD`.
        eps: as in :class:`APGD`.
        norm: as in :class:`APGD`.
        steps: iterations per loss (SEA uses 300 with radius reduction).
        losses: APGD losses; margin: add :class:`MarginAttack`; lipschitz: sizes the margin attack's sets.

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 2, 1)
        >>> x, y = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
        >>> adv = SEA(net, eps=0.5, steps=4)(x, y)
        >>> adv.shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        model,
        eps: float,
        norm: str = "l2",
        steps: int = 300,
        losses=("mce_bal", "mce", "js"),
        margin: bool = True,
        lipschitz: float | None = None,
        seed: int = 0,
    ) -> None:
        self.model, self.eps, self.norm = model, float(eps), norm
        self.attacks = [APGD(model, eps, norm, loss, steps, reduction=True, seed=seed) for loss in losses]
        if margin and norm == "l2":
            self.attacks.append(MarginAttack(model, eps, steps, lipschitz=lipschitz, seed=seed))

    def run_all(self, images: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> list[torch.Tensor]:
        """The adversarial images of every attack of the ensemble."""
        return [atk(images, labels, ignore_index=ignore_index) for atk in self.attacks]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
        """The ensemble's best adversarial images (B, C, H, W) for pixel accuracy, within the radius."""
        with eval_mode(self.model):
            candidates = self.run_all(images, labels, ignore_index)
            with torch.no_grad():
                accs = torch.stack([pixel_accuracy(self.model(a), labels, ignore_index) for a in candidates])
        pick = torch.nan_to_num(accs, nan=1.0).argmin(0)
        out = torch.stack([candidates[int(pick[i])][i] for i in range(images.shape[0])])
        check_within(images, out, self.eps, self.norm)
        return out


def worst_case_miou(confusions: np.ndarray, rounds: int = 1000, seed: int = 0) -> tuple[float, np.ndarray]:
    """SEA's greedy search for the attack choice per image that minimises the pooled mIoU.

    Args:
        confusions: int (A, N, K, K) confusion matrices of N images under A attacks.
        rounds: at most this many passes over the images (it stops when a pass gains less than 1e-6).
        seed: seed of the random order of the images in each pass.

    Returns:
        (mIoU, choice (N,)): the lowest pooled mIoU found and the attack chosen per image.
    """
    rng = np.random.default_rng(seed)
    n_att, n_img = confusions.shape[:2]
    choice = np.zeros(n_img, dtype=np.int64)
    total = confusions[0].sum(0).astype(np.int64)

    def miou(cm):
        iou = iou_from_confusion(cm)
        return macro_mean(iou)

    current = miou(total)
    for _ in range(rounds):
        start = current
        for i in rng.permutation(n_img):
            for a in range(n_att):
                if a == choice[i]:
                    continue
                cand = total - confusions[choice[i], i] + confusions[a, i]
                value = miou(cand)
                if value < current:
                    total, current, choice[i] = cand, value, a
        if start - current <= 1e-6:
            break
    return current, choice


def confusions_of(model, images_list, labels, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(A, N, K, K) confusion matrices of the model on each attack's images."""
    out = []
    with torch.no_grad():
        for imgs in images_list:
            pred = model(imgs).argmax(1).numpy()
            out.append(
                [confusion_matrix(p, t, num_classes, ignore_index) for p, t in zip(pred, labels.numpy(), strict=True)]
            )
    return np.asarray(out)
