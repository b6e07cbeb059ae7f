"""Guaranteed operator-norm bounds of convolutions, from the weights that run.

Two bounds are computed for a convolution and the smaller one is used; both are upper bounds:

1. **Receptive-field bound** (any input size): ``||W_mat||_2 * sqrt(c_h * c_w)``, where ``W_mat`` is the
   (C_out, C_in * k_h * k_w) reshaped kernel and ``c`` is the largest number of output positions whose
   patch contains one input pixel (``ceil(k / s)`` without dilation). ``||A x||^2 = sum_o ||W_mat P_o x||^2
   <= ||W_mat||^2 sum_o ||P_o x||^2 <= ||W_mat||^2 c_h c_w ||x||^2``, since each pixel lies in at most
   ``c_h c_w`` patches (zero padding adds zeros; circular padding and replicate padding of width <= 1 repeat
   no pixel more often than that; reflect padding can, and is refused).
2. **Fourier bound** (needs the layer's input size): a zero-padded convolution on an n-pixel input is a
   "valid" convolution on the padded input; embedding that input in a periodic grid of size N >= n + pads
   (a multiple of the stride) turns it into a crop of a circular convolution, so its norm is at most the
   circular one. A circular strided convolution is block-diagonalised by the DFT: for each output
   frequency f', the block is ``(s_h s_w)^(-1/2) [W(f' + q N / s)]_q`` (the s_h s_w aliased input
   frequencies side by side), and the operator norm is the largest singular value over all blocks,
   computed exactly by LAPACK in float64. A transposed convolution is the adjoint of a strided valid
   convolution (same norm), followed by a crop. This bound is tight for orthogonal (AOC) convolutions,
   where the receptive-field bound overshoots by up to ``sqrt(k_h k_w)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import LipschitzBoundError

_SAFE_PADDING = ("zeros", "circular", "replicate")
_CHUNK_BYTES = 64 * 2**20


def _overlap_count(k: int, s: int, d: int) -> int:
    """Largest number of taps of a (k, stride s, dilation d) kernel that can land on one input pixel."""
    counts = [0] * s
    for i in range(k):
        counts[(i * d) % s] += 1
    return max(counts)


def dense_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, C_in/groups, kh, kw) grouped kernel -> (C_out, C_in, kh, kw) block-diagonal float64 kernel."""
    w = weight.detach().to(torch.float64)
    if groups == 1:
        return w
    c_out, c_in_g = w.shape[:2]
    out_g = c_out // groups
    full = torch.zeros(c_out, c_in_g * groups, *w.shape[2:], dtype=torch.float64)
    for g in range(groups):
        full[g * out_g : (g + 1) * out_g, g * c_in_g : (g + 1) * c_in_g] = w[g * out_g : (g + 1) * out_g]
    return full


def receptive_field_bound(weight: torch.Tensor, stride, dilation) -> float:
    """Bound 1 above: spectral norm of the reshaped kernel times sqrt(overlap count). Any input size."""
    w = weight.detach().to(torch.float64)
    mat_norm = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()
    count = _overlap_count(w.shape[2], stride[0], dilation[0]) * _overlap_count(w.shape[3], stride[1], dilation[1])
    return mat_norm * math.sqrt(count)


def circular_strided_norm(weight: torch.Tensor, stride, dilation, grid) -> float:
    """Exact operator norm of the circular, strided convolution with this dense kernel on a grid.

    Args:
        weight: (C_out, C_in, kh, kw) dense kernel (groups already expanded).
        stride, dilation: (s_h, s_w), (d_h, d_w).
        grid: (N_h, N_w) periodic input size, each divisible by its stride.
    """
    w = weight.detach().to(torch.float64)
    c_out, c_in, kh, kw = w.shape
    (sh, sw), (dh, dw), (nh, nw) = stride, dilation, grid
    if nh % sh or nw % sw:
        raise LipschitzBoundError(f"Fourier bound needs a grid divisible by the stride, got {grid} / {stride}.")
    taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in).to(torch.complex128)
    ti = torch.arange(kh, dtype=torch.float64).repeat_interleave(kw) * dh
    tj = torch.arange(kw, dtype=torch.float64).repeat(kh) * dw
    mh, mw = nh // sh, nw // sw
    fo_h, fo_w = torch.meshgrid(torch.arange(mh), torch.arange(mw), indexing="ij")
    fo_h, fo_w = fo_h.reshape(-1).double(), fo_w.reshape(-1).double()
    per_freq = c_out * c_in * sh * sw * 16 * 3
    chunk = max(1, _CHUNK_BYTES // per_freq)
    best = 0.0
    for start in range(0, fo_h.numel(), chunk):
        fh, fw = fo_h[start : start + chunk], fo_w[start : start + chunk]
        blocks = []
        for qh in range(sh):
            for qw in range(sw):
                ph = (fh + qh * mh)[:, None] * ti[None, :] / nh
                pw = (fw + qw * mw)[:, None] * tj[None, :] / nw
                phase = torch.exp(-2j * math.pi * (ph + pw))  # (F, taps)
                blocks.append(torch.einsum("ft,toi->foi", phase, taps))
        mat = torch.cat(blocks, dim=2) / math.sqrt(sh * sw)
        best = max(best, torch.linalg.svdvals(mat)[:, 0].max().item())
    return best


def _check_padding(mode: str, pads) -> None:
    if mode not in _SAFE_PADDING or (mode == "replicate" and max(pads) > 1):
        raise LipschitzBoundError(
            f"Padding mode {mode!r} with pads {list(pads)} is refused: reflect padding and replicate padding "
            "wider than 1 repeat input pixels more often than the kernel size, which breaks the bound."
        )


def conv2d_bound(module: torch.nn.Conv2d, in_hw: tuple[int, int] | None) -> float:
    """Guaranteed bound on the operator norm of a (bias-free) Conv2d, from ``module.weight`` as it runs."""
    pads = list(module._reversed_padding_repeated_twice)  # (left, right, top, bottom)
    _check_padding(module.padding_mode, pads)
    weight = dense_weight(module.weight, module.groups)
    bound = receptive_field_bound(weight, module.stride, module.dilation)
    if in_hw is not None and module.padding_mode == "zeros":
        sizes = (in_hw[0] + pads[2] + pads[3], in_hw[1] + pads[0] + pads[1])
        grid = tuple(int(math.ceil(m / s) * s) for m, s in zip(sizes, module.stride, strict=True))
        bound = min(bound, circular_strided_norm(weight, module.stride, module.dilation, grid))
    return bound


def conv_transpose2d_bound(module: torch.nn.ConvTranspose2d, in_hw: tuple[int, int] | None) -> float:
    """Guaranteed bound on a (bias-free) ConvTranspose2d: the norm of its adjoint strided convolution."""
    if module.padding_mode != "zeros":
        raise LipschitzBoundError(f"ConvTranspose2d padding mode {module.padding_mode!r} is not supported.")
    weight = dense_weight(module.weight, module.groups)  # (C_in_T, C_out_T, kh, kw) = adjoint conv kernel
    bound = receptive_field_bound(weight, module.stride, module.dilation)
    if in_hw is not None:
        k_eff = [d * (k - 1) + 1 for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        full = [(n - 1) * s + k for n, s, k in zip(in_hw, module.stride, k_eff, strict=True)]
        grid = tuple(int(math.ceil(m / s) * s) for m, s in zip(full, module.stride, strict=True))
        bound = min(bound, circular_strided_norm(weight, module.stride, module.dilation, grid))
    return bound


def linear_bound(weight: torch.Tensor) -> float:
    """Spectral norm of a linear layer's weight (exact SVD, float64)."""
    return torch.linalg.matrix_norm(weight.detach().to(torch.float64), ord=2).item()


def max_abs(values) -> float:
    """Largest absolute value of a tensor or array (a diagonal operator's norm)."""
    return float(np.max(np.abs(np.asarray(values.detach().cpu() if torch.is_tensor(values) else values))))
