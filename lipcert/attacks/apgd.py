"""APGD for segmentation (l2 and linf), with SEA's losses and radius reduction, torchattacks-style."""

from __future__ import annotations

import math

import torch

from ..core.errors import LipcertError
from ..core.model_state import eval_mode
from .losses import get_loss, pixel_accuracy

NORMS = ("l2", "linf")


def batch_norms(d: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norms (B,) of a (B, ...) tensor: ``"l2"`` or ``"linf"``."""
    flat = d.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Map onto the eps-ball around x intersected with [0,1]: scale (l2) or clip (linf), then clamp.

    Clamping moves every coordinate towards x (x is in [0,1]), so the result stays inside the ball.
    """
    d = x_adv - x
    if norm == "l2":
        n = batch_norms(d, "l2").clamp_min(1e-12)
        d = d * torch.clamp(eps / n, max=1.0).view(-1, *([1] * (d.ndim - 1)))
    else:
        d = d.clamp(-eps, eps)
    return (x + d).clamp(0.0, 1.0)


def _random_start(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        d = (2 * torch.rand(x.shape, generator=gen) - 1) * eps
    else:  # a uniformly random direction at a uniformly random radius in [0, eps]
        d = torch.randn(x.shape, generator=gen)
        d = (
            d
            / batch_norms(d, "l2").view(-1, *([1] * (x.ndim - 1)))
            * eps
            * torch.rand(x.shape[0], generator=gen).view(-1, *([1] * (x.ndim - 1)))
        )
    return project(x, x + d, eps, norm)


def _checkpoints(n_iter: int) -> list[int]:
    """AutoAttack's step-size checkpoints: 0.22 N, then shrinking by 0.03 N, at least 0.06 N apart."""
    p = [0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(v * n_iter) for v in p if v <= 1})


def apgd_run(
    model,
    x,
    labels,
    eps,
    norm,
    loss_name,
    n_iter,
    ignore_index,
    gen,
    x_init=None,
    class_weights=None,
    momentum: float = 0.75,
    rho: float = 0.75,
):
    """One APGD run; returns (lowest-accuracy iterate per image, its accuracy)."""
    loss_fn = get_loss(loss_name)
    kw = {"class_weights": class_weights} if loss_name == "mce_bal" else {}
    x_adv = _random_start(x, eps, norm, gen) if x_init is None else project(x, x_init, eps, norm)
    step = torch.full((x.shape[0],), 2.0 * eps)
    shape = (-1, *([1] * (x.ndim - 1)))

    def loss_and_grad(z):
        z = z.clone().requires_grad_(True)
        logits = model(z)
        per_image = loss_fn(logits, labels, ignore_index, **kw)
        (grad,) = torch.autograd.grad(per_image.sum(), z)
        return per_image.detach(), grad, pixel_accuracy(logits.detach(), labels, ignore_index)

    loss, grad, acc = loss_and_grad(x_adv)
    best_adv, best_acc = x_adv.clone(), acc.clone()
    best_loss, x_best_loss = loss.clone(), x_adv.clone()
    x_prev = x_adv.clone()
    checkpoints = _checkpoints(n_iter)
    improved = torch.zeros(x.shape[0])
    last_ckpt_loss, last_ckpt_step, ck = best_loss.clone(), step.clone(), 1
    for it in range(n_iter):
        if norm == "l2":
            g = grad / batch_norms(grad, "l2").clamp_min(1e-12).view(shape)
        else:
            g = grad.sign()
        z = project(x, x_adv + step.view(shape) * g, eps, norm)
        a = momentum if it > 0 else 1.0
        x_new = project(x, x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev), eps, norm)
        x_prev, x_adv = x_adv, x_new
        loss, grad, acc = loss_and_grad(x_adv)
        better_acc = acc <= best_acc  # the returned point: lowest pixel accuracy (ties update, as SEA)
        best_adv[better_acc], best_acc[better_acc] = x_adv[better_acc], acc[better_acc]
        better = loss > best_loss
        improved += better.float()
        best_loss[better], x_best_loss[better] = loss[better], x_adv[better]
        if ck < len(checkpoints) and it + 1 == checkpoints[ck]:
            span = checkpoints[ck] - checkpoints[ck - 1]
            halve = (improved < rho * span) | ((last_ckpt_step == step) & (last_ckpt_loss == best_loss))
            last_ckpt_step, last_ckpt_loss = step.clone(), best_loss.clone()
            step = torch.where(halve, step / 2, step)
            x_adv = torch.where(halve.view(shape), x_best_loss, x_adv)  # restart from the best-loss point
            if halve.any():
                loss, grad, acc = loss_and_grad(x_adv)
            improved.zero_()
            ck += 1
    return best_adv, best_acc


class APGD:
    """APGD for segmentation, called like a torchattacks attack: ``atk(images, labels, ignore_index=255)``.

    Args:
        model: (B, C, H, W) images in [0,1] -> (B, K, H, W) logits (put in eval mode, then restored).
        eps: radius in the ``norm`` (l2: [0,1] pixel units, as the certificates).
        norm: ``"l2"`` or ``"linf"``.
        loss: ``"mce"`` (masked CE), ``"mce_bal"`` (balanced masked CE, class weights from the data or
            ``class_weights``) or ``"js"`` (Jensen-Shannon to the one-hot label).
        steps: iterations in total.
        reduction: radius reduction: stages at 2 eps, 1.5 eps and eps over 30/30/40 % of the steps, each
            started from the previous stage's lowest-accuracy point projected onto the smaller ball.
        seed: seeds this attack's own generator (never the global one).

    Returns from a call: adversarial images, each with the lowest pixel accuracy found; every delta is
    checked to lie within eps (a violation raises).

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 2, 1)
        >>> x, y = torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)
        >>> adv = APGD(net, eps=0.5, steps=5)(x, y)
        >>> bool(((adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
        True
    """

    def __init__(
        self,
        model,
        eps: float,
        norm: str = "l2",
        loss: str = "mce",
        steps: int = 100,
        reduction: bool = True,
        seed: int = 0,
        class_weights=None,
    ) -> None:
        if norm not in NORMS:
            raise LipcertError(f"Expected `norm` in {NORMS}, but got {norm!r}.")
        if not eps >= 0 or steps < 1:
            raise LipcertError(f"Expected eps >= 0 and steps >= 1, but got eps={eps}, steps={steps}.")
        get_loss(loss)
        self.model, self.eps, self.norm, self.loss, self.steps = model, float(eps), norm, loss, steps
        self.reduction, self.seed, self.class_weights = reduction, seed, class_weights

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
        """Adversarial images (B, C, H, W) within the radius of the labels (B, H, W); the model's mode is kept."""
        gen = torch.Generator().manual_seed(self.seed)
        x = images.detach()
        with eval_mode(self.model):
            if self.eps == 0:
                return x.clone()
            if self.reduction:
                splits = [int(0.3 * self.steps), int(0.3 * self.steps)]
                splits.append(self.steps - sum(splits))
                radii = [2.0 * self.eps, 1.5 * self.eps, self.eps]
            else:
                splits, radii = [self.steps], [self.eps]
            x_adv = None
            for n_it, r in zip(splits, radii, strict=True):
                if n_it <= 0:
                    continue
                x_adv, _ = apgd_run(
                    self.model,
                    x,
                    labels,
                    r,
                    self.norm,
                    self.loss,
                    n_it,
                    ignore_index,
                    gen,
                    x_init=x_adv,
                    class_weights=self.class_weights,
                )
            x_adv = project(x, x_adv, self.eps, self.norm)
        check_within(x, x_adv, self.eps, self.norm)
        return x_adv.detach()


def check_within(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> None:
    """Raise unless every perturbation lies within eps (float slack 1e-5 relative) and inside [0,1]."""
    n = batch_norms(x_adv - x, norm)
    if bool((n > eps * (1 + 1e-5) + 1e-7).any()) or bool(((x_adv < 0) | (x_adv > 1)).any()):
        raise LipcertError(f"Attack produced a perturbation outside the {norm} ball of radius {eps} or [0,1].")
