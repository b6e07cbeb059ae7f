"""A margin attack aimed at the joint certificate: spend the whole budget on the cheapest pixels."""

from __future__ import annotations

import math

import torch

from ..core.errors import LipcertError
from ..core.model_state import eval_mode
from .apgd import batch_norms, check_within, project
from .losses import pixel_accuracy


class MarginAttack:
    """Drive the margins of the cheapest correctly classified pixels below zero with one l2 perturbation.

    The joint certificate says which pixels are cheapest to flip (smallest margin); this attack targets
    exactly such a set, minimising ``sum_p relu(z_y - max_{j != y} z_j + kappa)`` over the set with
    normalised-gradient l2 steps and a cosine step schedule, for several set sizes around the number the
    certificate allows (when ``lipschitz`` is given), plus half and all of the correct pixels, keeping the
    lowest pixel accuracy per image.

    Args:
        model: (B, C, H, W) images in [0,1] -> (B, K, H, W) logits (eval mode, restored).
        eps: l2 radius ([0,1] pixel units); steps: iterations per set size.
        lipschitz: L used to size the target sets (optional).
        kappa: margin to aim below zero; seed: seeds the attack's own generator.

    Examples:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 2, 1)
        >>> x, y = torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)
        >>> adv = MarginAttack(net, eps=0.3, steps=5)(x, y)
        >>> bool((adv - x).norm() <= 0.3 + 1e-6)
        True
    """

    def __init__(
        self, model, eps: float, steps: int = 100, lipschitz: float | None = None, kappa: float = 0.05, seed: int = 0
    ) -> None:
        if not eps >= 0 or steps < 1:
            raise LipcertError(f"Expected eps >= 0 and steps >= 1, but got eps={eps}, steps={steps}.")
        self.model, self.eps, self.steps, self.lipschitz, self.kappa, self.seed = (
            model,
            float(eps),
            steps,
            lipschitz,
            kappa,
            seed,
        )

    def _margins(self, logits, y):
        z_y = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return z_y - other

    def _sizes(self, margins_sorted: torch.Tensor) -> list[int]:
        n = margins_sorted.numel()
        if n == 0:
            return [0]
        if self.lipschitz is not None:
            cum = torch.cumsum(margins_sorted.double() ** 2 / (2 * self.lipschitz**2), 0)
            k = int((cum <= self.eps**2).sum())
        else:
            k = max(1, n // 20)
        return sorted({min(n, max(1, v)) for v in (k // 2, k, 2 * k + 1, 4 * k + 2, n // 2, n)})

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
        """Adversarial images (B, C, H, W) within the radius, aimed at each image's cheapest pixels."""
        x = images.detach()
        with eval_mode(self.model):
            out = x.clone() if self.eps == 0 else self._attack(x, labels, ignore_index)
        check_within(x, out, self.eps, "l2")
        return out

    def _attack(self, x, y, ignore_index):
        """All images at once, each with its own target set.

        All images at once: image b targets its own cheapest set; losses are summed per image, and in
        eval mode the images do not interact, so each gradient is the image's own.
        """
        b = x.shape[0]
        valid = y != ignore_index
        y0 = torch.where(valid, y, torch.zeros_like(y))
        with torch.no_grad():
            logits = self.model(x)
            m = self._margins(logits, y0).flatten(1)
        correct = valid.flatten(1) & (m > 0)
        order = torch.argsort(m.masked_fill(~correct, float("inf")), dim=1)
        sizes = [self._sizes(m[i][correct[i]].sort().values) for i in range(b)]
        n_sizes = max(len(s) for s in sizes)
        sizes = [s + [s[-1]] * (n_sizes - len(s)) for s in sizes]  # pad by repeating the largest
        best, best_acc = x.clone(), pixel_accuracy(logits, y, ignore_index)
        for j in range(n_sizes):
            target = torch.zeros_like(correct)
            for i in range(b):
                target[i, order[i, : sizes[i][j]]] = True
            target &= correct
            x_adv = x.clone()
            for it in range(self.steps):
                z = x_adv.clone().requires_grad_(True)
                margins = self._margins(self.model(z), y0).flatten(1)
                loss = (torch.relu(margins + self.kappa) * target).sum()
                if loss.item() == 0:
                    break
                (g,) = torch.autograd.grad(loss, z)
                step = self.eps * 0.5 * (1 + math.cos(math.pi * it / self.steps)) * 0.5 + 1e-3 * self.eps
                g = g / batch_norms(g, "l2").clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
                x_adv = project(x, x_adv - step * g, self.eps, "l2").detach()
            with torch.no_grad():
                acc = pixel_accuracy(self.model(x_adv), y, ignore_index)
            better = acc <= best_acc
            best[better], best_acc[better] = x_adv[better], acc[better]
        return best
