"""Logits -> margins -> flip costs, in float64.

A network that is L-Lipschitz from the input image (l2, [0,1] pixel units) to its whole logit map moves
the logits by at most ``L * eps`` in l2 under a perturbation of norm ``eps``. Changing the argmax of
pixel p needs a logit change of at least ``m_p / sqrt(2)`` at that pixel (lower the top logit and raise
the runner-up by ``m_p / 2`` each), where ``m_p`` is the top-1 minus runner-up logit. In squared budget
units (compared with ``eps**2``) the **flip cost** is ``c_p = m_p**2 / (2 L**2)``. Making pixel p
predict a *given* class k costs at least ``(z_pred - z_k)**2 / (2 L**2)`` (a lower bound: other classes
may sit in between), which is what the IoU certificates use. Ties (``m_p = 0``) cost 0: flippable.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.checks import check_lipschitz, check_logits, raise_not_finite
from ..kernels import pair_costs, top2_margin


def top2(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Prediction (first argmax, int64) and margin top1 - top2 (float64), (B, H, W) each.

    ``logits`` has passed ``check_logits(..., finite=False)``; finiteness is checked in the same pass.
    """
    b, k, h, w = logits.shape
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # float16 / bfloat16 -> float32 is exact
    pred, margin, finite = top2_margin(np.ascontiguousarray(logits.numpy().reshape(b, k, h * w)))
    if not finite:
        raise_not_finite(logits)
    return pred.reshape(b, h, w), margin.reshape(b, h, w)


def margins(logits) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and top-1 minus runner-up margin of every pixel.

    Args:
        logits: (B, K, H, W) float logits (torch or numpy, any float dtype).

    Returns:
        ``(pred, margin)``: int64 (B, H, W) argmax (first maximum on ties) and float64 (B, H, W) margins
        in logit units, >= 0 (0 on ties).

    Examples:
        >>> import numpy as np
        >>> pred, m = margins(np.array([[[[2.0]], [[0.5]]]]))
        >>> int(pred[0, 0, 0]), float(m[0, 0, 0])
        (0, 1.5)
    """
    return top2(check_logits(logits, finite=False))


def flip_costs(logits, lipschitz: float) -> np.ndarray:
    """Squared-budget cost ``m**2 / (2 L**2)`` of changing each pixel's prediction.

    Args:
        logits: (B, K, H, W) float logits.
        lipschitz: the l2 Lipschitz constant L of input ([0,1] pixels) -> whole logit map.

    Returns:
        float64 (B, H, W), compared against ``eps**2`` (eps in l2 [0,1] pixel units).

    Examples:
        >>> import numpy as np
        >>> float(flip_costs(np.array([[[[2.0]], [[0.0]]]]), lipschitz=1.0)[0, 0, 0])
        2.0
    """
    L = check_lipschitz(lipschitz)
    _, m = top2(check_logits(logits, finite=False))
    return pair_costs(m, 1.0 / L)


def targeted_costs(logits, lipschitz: float) -> np.ndarray:
    """Lower bound ``(z_pred - z_k)**2 / (2 L**2)`` on the cost of making each pixel predict class k.

    Args:
        logits: (B, K, H, W) float logits.
        lipschitz: the l2 Lipschitz constant L.

    Returns:
        float64 (B, K, H, W); 0 for k = the predicted class (and for tied classes).

    Examples:
        >>> import numpy as np
        >>> targeted_costs(np.array([[[[3.0]], [[1.0]]]]), lipschitz=2.0)[0, :, 0, 0].tolist()
        [0.0, 0.5]
    """
    L = check_lipschitz(lipschitz)
    t = check_logits(logits, finite=False)
    top2(t)  # the same range check as every certificate
    z = t.to(torch.float64)
    top = z.max(dim=1, keepdim=True).values
    return pair_costs(np.ascontiguousarray((top - z).numpy()), 1.0 / L)


def pixel_radius(logits, lipschitz: float) -> np.ndarray:
    """Per-pixel certified radius ``m / (sqrt(2) L)``: no perturbation with a smaller l2 norm flips it.

    This is the naive, one-pixel-at-a-time view; the joint certificates are stronger because one
    perturbation must pay for every pixel it flips.

    Args:
        logits: (B, K, H, W) float logits.
        lipschitz: the l2 Lipschitz constant L.

    Returns:
        float64 (B, H, W) radii in l2 [0,1] pixel units (0 on ties).

    Examples:
        >>> import numpy as np
        >>> round(float(pixel_radius(np.array([[[[1.0]], [[0.0]]]]), 1.0)[0, 0, 0]), 4)
        0.7071
    """
    L = check_lipschitz(lipschitz)
    _, m = top2(check_logits(logits, finite=False))
    return m / (np.sqrt(2.0) * L)
