"""Evaluation during training (clean and certified), adversarial examples, and centering recalibration."""

from __future__ import annotations

import numpy as np
import torch
from deel import torchlip
from torch import nn

from ..attacks import project
from ..certify import certify_logits
from ..core.aggregate import macro_mean
from ..core.model_state import eval_mode
from ..lipschitz import export_plain, lipschitz_bound
from ..worst_case.confusion import confusion_matrix, iou_from_confusion, pixel_accuracy_from_confusion


def pgd_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, norm: str, ignore_index: int
) -> torch.Tensor:
    """PGD on the cross-entropy from x (no random start), in eval mode (restored); returns x + delta."""
    step = 2.5 * eps / steps
    x_adv = x.clone()
    with eval_mode(model):
        for _ in range(steps):
            z = x_adv.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(z), y, ignore_index=ignore_index)
            (g,) = torch.autograd.grad(loss, z)
            if norm == "l2":
                g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            else:
                g = g.sign()
            x_adv = project(x, x_adv + step * g, eps, norm).detach()
    return x_adv


def evaluate(
    model: nn.Module,
    dataset,
    *,
    eps: float | None = None,
    lipschitz: float | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    ignore_index: int = 255,
) -> dict:
    """Clean pixel accuracy (micro), per-class IoU and mIoU (pooled), and certified accuracy.

    The certified pixel accuracy is the joint certificate, macro (mean over images), at ``eps`` with
    ``lipschitz`` (computed with :func:`lipschitz_bound` on the exported model when None and the model
    is not a "plain" twin).

    Returns:
        dict with ``pixel_accuracy_micro``, ``iou`` (K,), ``miou_pooled``, and when certified
        ``certified_pixel_accuracy_macro``, ``lipschitz``.

    Examples:
        >>> from lipcert.data import DigitScenes
        >>> from lipcert.models import LipUNet
        >>> ev = evaluate(LipUNet(11, widths=[(8, 1)], stem=8, gain=8.0), DigitScenes("test", n=2), eps=0.1)
        >>> sorted(k for k in ev if k != "iou")[:3]
        ['certified_pixel_accuracy_macro', 'eps', 'lipschitz']
    """
    frozen = export_plain(model)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    k = getattr(dataset, "num_classes", None)
    image0, _ = dataset[0]
    certify_now = eps is not None and (lipschitz is not None or getattr(model, "parametrization", "") != "plain")
    if certify_now and lipschitz is None:
        lipschitz = lipschitz_bound(frozen, tuple(image0.shape))
    cm, cert = None, []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            items = [dataset[i] for i in range(start, min(n, start + batch_size))]
            x = torch.stack([a for a, _ in items])
            y = torch.stack([b for _, b in items])
            logits = frozen(x)
            k = k or logits.shape[1]
            part = confusion_matrix(logits.argmax(1).numpy(), y.numpy(), k, ignore_index)
            cm = part if cm is None else cm + part
            if certify_now:
                cert.append(
                    certify_logits(
                        logits, eps, "pixel_accuracy", y, lipschitz=lipschitz, ignore_index=ignore_index
                    ).worst[:, 0]
                )
    iou = iou_from_confusion(cm)
    out = {
        "pixel_accuracy_micro": pixel_accuracy_from_confusion(cm),
        "iou": iou.tolist(),
        "miou_pooled": macro_mean(iou),  # mean over classes of the pooled IoU
        "n_images": n,
    }
    if certify_now:
        out.update(certified_pixel_accuracy_macro=macro_mean(np.concatenate(cert)), eps=eps, lipschitz=float(lipschitz))
    return out


def recalibrate_centering(model: nn.Module, dataset, *, n_images: int = 1024, batch_size: int = 32) -> nn.Module:
    """Re-estimate every BatchCentering mean from data with the final weights (in place).

    deel-torchlip's BatchCentering keeps a running average of batch means accumulated while the weights
    were still moving, so after training it is stale. Here only the centering layers run in training
    mode (no gradient, every other layer in eval mode) over ``n_images`` training images, then the model
    returns to eval mode with the fresh means. Centering is a shift, so the Lipschitz bound is unchanged.

    Returns:
        The model, in eval mode.

    Examples:
        >>> from lipcert.data import DigitScenes
        >>> from lipcert.models import LipUNet
        >>> net = recalibrate_centering(LipUNet(11, widths=[(8, 1)], stem=8), DigitScenes(n=4), n_images=4)
        >>> net.training
        False
    """
    model.eval()
    centering = [m for m in model.modules() if isinstance(m, torchlip.BatchCentering)]
    if not centering:
        return model
    for m in centering:
        m.reset_states()
        m.train()
    n = min(n_images, len(dataset))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            model(torch.stack([dataset[i][0] for i in range(start, min(n, start + batch_size))]))
    return model.eval()
