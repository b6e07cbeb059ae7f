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
   bounded from above per block in float64 (shifted-Frobenius and Gram-iteration bounds on the Gram
   matrix, exact for orthogonal blocks). A transposed convolution is the adjoint of a strided valid
   convolution (same norm), followed by a crop. This bound is tight for orthogonal (AOC) convolutions,
   where the receptive-field bound overshoots by up to ``sqrt(k_h k_w)``.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import numpy as np
import torch

from ..core.errors import LipschitzBoundError
from .gram_blocks import (
    CHUNK_BYTES,
    coarse_points,
    gram_symbol,
    largest_block_eigenvalue,
    tap_offsets,
    torus_eigenvalue,
)

_SAFE_PADDING = ("zeros", "circular", "replicate")
# Grids with more output frequencies than this also get the coarse whole-torus bound (gram_blocks.torus_eigenvalue), and
# their fine refinement (only tried when the coarse one refined at most _FINE_BUDGET blocks, i.e. when the
# cheap bounds are tight) stops after _FINE_BUDGET blocks.
_COARSE_BLOCKS = 4096
_FINE_BUDGET = 512
_COARSE_PER_DEGREE = 16  # points per unit of degree of the cheap whole-torus bound (full_support_bound(coarse=True))


# Norms already computed, keyed by the kernel's bytes (a 256-bit digest), shape, geometry and grid: the
# bounds across activations ask again for kernels and grids the layer bounds have seen.
_MEMO: OrderedDict = OrderedDict()
_MEMO_SIZE = 256


def _memo_key(kind: str, w: torch.Tensor, geometry: tuple) -> tuple:
    digest = hashlib.blake2b(w.detach().cpu().contiguous().numpy().tobytes(), digest_size=32).digest()
    return (kind, digest, tuple(w.shape), str(w.dtype), geometry)


def _memoised(kind: str, w: torch.Tensor, geometry: tuple, compute):
    key = _memo_key(kind, w, geometry)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    value = compute()
    _MEMO[key] = value
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


def clear_norm_cache() -> None:
    """Forget the memoised norms (for cold timings; the results never depend on the cache).

    Examples:
        >>> clear_norm_cache()
    """
    _MEMO.clear()


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
    """Guaranteed upper bound on the operator norm of the circular, strided convolution on a grid.

    The DFT block-diagonalises it: for each output frequency f' the block is
    ``M(f') = (s_h s_w)^(-1/2) [W(f' + q N / s)]_q``; the norm is ``max_f' sigma_max(M(f'))``. When
    C_out <= C_in s_h s_w, ``M M^H`` is the mean over the aliases q of the stride-1 Gram symbol
    ``W(f) W(f)^H``, a trigonometric polynomial whose coefficients (the kernel's autocorrelation) are
    computed once; for stride 1 and C_out > C_in, ``W^H W`` likewise. Its largest eigenvalue is bounded per
    block by the shifted-Frobenius bound (exact for orthogonal blocks), and blocks are refined with exact
    Hermitian eigenvalues (LAPACK), largest bound first, until no unrefined bound exceeds the largest
    exact value by more than a relative 1e-4 (branch and bound); the result is the maximum of the exact
    values and of the unrefined blocks' bounds. Frequencies -f' give conjugate blocks: half of them
    suffice.

    On a large grid, when the cheap bounds are loose (non-orthogonal kernels), refining would take
    many exact eigenvalues: the symbol's supremum over the whole torus is then bounded from a coarse
    grid (:func:`torus_eigenvalue`, within 0.5 % of it), every block's bound is capped by it, and
    the fine refinement stops after a few hundred exact blocks.

    Args:
        weight: (C_out, C_in, kh, kw) dense kernel (groups already expanded).
        stride: (s_h, s_w).
        dilation: (d_h, d_w).
        grid: (N_h, N_w) periodic input size, each divisible by its stride.
    """
    w = weight.detach().to(torch.float64)
    (sh, sw), (nh, nw) = stride, grid
    if nh % sh or nw % sw:
        raise LipschitzBoundError(f"Fourier bound needs a grid divisible by the stride, got {grid} / {stride}.")
    geometry = (tuple(stride), tuple(dilation), tuple(grid))
    return _memoised("circular", w, geometry, lambda: _circular_strided_norm(w, stride, dilation, grid))


def _circular_strided_norm(w: torch.Tensor, stride, dilation, grid) -> float:
    c_out, c_in = w.shape[:2]
    sh, sw = stride
    if c_out > c_in * sh * sw and sh * sw > 1:
        # a strided isometry (rare: few input channels): evaluate M^H M from the blocks themselves
        return _explicit_strided_norm(w, stride, dilation, grid)
    parts, sign, out_grid = gram_symbol(w, stride, dilation, grid)
    fine_blocks = (out_grid[0] // 2 + 1) * out_grid[1]
    coarse = coarse_points(w, stride, dilation)
    cap, budget = math.inf, None
    if fine_blocks > max(_COARSE_BLOCKS, 2 * (coarse[0] // 2 + 1) * coarse[1]):
        geometry = (tuple(stride), tuple(dilation))
        cap, refined = _memoised("torus", w, geometry, lambda: torus_eigenvalue(w, stride, dilation))
        if refined > _FINE_BUDGET or coarse == [1, 1]:  # loose cheap bounds, or a constant symbol (exact)
            return math.sqrt(cap)
        budget = _FINE_BUDGET
    value, _ = largest_block_eigenvalue(parts, sign, out_grid, cap, budget)
    return math.sqrt(value)


def _explicit_strided_norm(w: torch.Tensor, stride, dilation, grid) -> float:
    c_out, c_in, kh, kw = w.shape
    (sh, sw), (dh, dw), (nh, nw) = stride, dilation, grid
    taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in).to(torch.complex128)
    ti, tj = (t.double() for t in tap_offsets(kh, kw, dh, dw))
    mh, mw = nh // sh, nw // sw
    fo_h, fo_w = torch.meshgrid(torch.arange(mh // 2 + 1), torch.arange(mw), indexing="ij")
    fo_h, fo_w = fo_h.reshape(-1).double(), fo_w.reshape(-1).double()
    chunk = max(1, CHUNK_BYTES // (16 * c_out * c_in * sh * sw * 3))
    best = 0.0
    for s in range(0, fo_h.numel(), chunk):
        fh, fw = fo_h[s : s + chunk], fo_w[s : s + chunk]
        blocks = [
            torch.einsum(
                "ft,toi->foi",
                torch.exp(-2j * math.pi * (((fh + qh * mh)[:, None] * ti) / nh + ((fw + qw * mw)[:, None] * tj) / nw)),
                taps,
            )
            for qh in range(sh)
            for qw in range(sw)
        ]
        mat = torch.cat(blocks, dim=2) / math.sqrt(sh * sw)
        best = max(best, torch.linalg.eigvalsh(mat.mH @ mat)[..., -1].max().item())
    return math.sqrt(max(best, 0.0))


def _check_padding(mode: str, pads) -> None:
    if mode not in _SAFE_PADDING or (mode == "replicate" and max(pads) > 1):
        raise LipschitzBoundError(
            f"Padding mode {mode!r} with pads {list(pads)} is refused: reflect padding and replicate padding "
            "wider than 1 repeat input pixels more often than the kernel size, which breaks the bound."
        )


def _unit_scale(weight: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(weight / 2^e, 2^e)`` with the largest entry in [0.5, 1): exact, and the Gram never under/overflows.

    Products of weights of 1e-200 underflow to 0 in float64 (a zero bound) and of 1e200 overflow; a power
    of two rescales every entry exactly (entries 2^-1074 below the largest, which the operator norm is at
    least, may be lost: far below the final relative 1e-6 inflation). The norm scales back by ``2^e``.
    """
    top = weight.abs().max().item()
    if top == 0.0 or not math.isfinite(top):
        return weight, 1.0
    scale = math.ldexp(1.0, math.frexp(top)[1])
    return weight / scale, scale


def conv2d_bound(
    module: torch.nn.Conv2d,
    in_hw: tuple[int, int] | None,
    out_scale: torch.Tensor | None = None,
    in_channels: slice | None = None,
) -> float:
    """Guaranteed bound on the operator norm of a (bias-free) Conv2d, from ``module.weight`` as it runs.

    ``out_scale`` (C_out,): bound ``diag(out_scale) o conv`` instead, i.e. the convolution with each output
    channel's kernel scaled (an eval-mode BatchNorm after it, merged exactly). ``in_channels``: bound the
    map from those input channels only (the others held at 0), a part of a concatenated input.
    """
    pads = list(module._reversed_padding_repeated_twice)  # (left, right, top, bottom)
    _check_padding(module.padding_mode, pads)
    dense = dense_weight(module.weight, module.groups)
    if out_scale is not None:
        dense = dense * out_scale.detach().to(torch.float64).view(-1, 1, 1, 1)
    if in_channels is not None:
        dense = dense[:, in_channels]
    weight, scale = _unit_scale(dense)
    bound = receptive_field_bound(weight, module.stride, module.dilation)
    single_tap = weight.shape[2] == weight.shape[3] == 1
    if in_hw is not None and module.padding_mode == "zeros" and not single_tap:  # a 1x1 bound is already exact
        sizes = (in_hw[0] + pads[2] + pads[3], in_hw[1] + pads[0] + pads[1])
        grid = tuple(int(math.ceil(m / s) * s) for m, s in zip(sizes, module.stride, strict=True))
        bound = min(bound, circular_strided_norm(weight, module.stride, module.dilation, grid))
    return bound * scale


def full_support_bound(weight: torch.Tensor, stride, dilation, in_hw: tuple[int, int], coarse: bool = False) -> float:
    """Bound on the convolution over the whole plane of inputs supported in an ``in_hw`` box.

    ``(F x)[j] = sum_t W_t x[s j + d t]`` for every output position j in Z^2 (not only a layer's output
    window), x zero outside an (H, W) box: the norm of this map bounds the layer with any zero padding
    (which keeps a window of these outputs) and is what a chain of convolutions composes exactly. With
    the effective extent ``e = d (k - 1) + 1``, a circular grid of ``N >= n + e - 1`` (a multiple of s) per
    axis holds every non-zero output once and no tap wraps onto the box (docs/models.md), so the circular
    norm (:func:`circular_strided_norm`) and the receptive-field bound both bound it; the smaller is kept.

    Args:
        weight: (C_out, C_in, kh, kw) dense kernel (groups expanded, any output scaling applied).
        stride: (s_h, s_w).
        dilation: (d_h, d_w).
        in_hw: (H, W) of the box the input lives in.
        coarse: bound by the whole frequency torus (valid at every size) when that is cheaper: a torus
            bound already computed for this kernel, or one on 16 points per unit of the symbol's degree
            (within 2 % of its supremum) when the grid has more than twice as many blocks.

    Returns:
        The bound, a float.

    Examples:
        >>> round(full_support_bound(torch.ones(1, 1, 2, 1), (1, 1), (1, 1), (8, 8)), 6)  # the (1, 1) filter: at most 2
        2.0
    """
    unit, scale = _unit_scale(weight.detach().to(torch.float64))
    bound = receptive_field_bound(unit, stride, dilation)
    if unit.shape[2] * unit.shape[3] > 1:
        extent = [d * (k - 1) + 1 for k, d in zip(unit.shape[2:], dilation, strict=True)]
        grid = tuple(int(math.ceil((n + e - 1) / s) * s) for n, e, s in zip(in_hw, extent, stride, strict=True))
        exact = _torus_or_grid if coarse else circular_strided_norm
        bound = min(bound, exact(unit, stride, dilation, grid))
    return bound * scale


def _torus_or_grid(unit: torch.Tensor, stride, dilation, grid) -> float:
    """The cheapest of: a whole-torus bound already computed, a coarse one (16 points per degree), the grid's."""
    torus = (tuple(stride), tuple(dilation))
    key = _memo_key("torus", unit, torus)
    if key in _MEMO:
        return math.sqrt(_MEMO[key][0])
    points = coarse_points(unit, stride, dilation, per_degree=_COARSE_PER_DEGREE)
    if (grid[0] // stride[0]) * (grid[1] // stride[1]) > 2 * points[0] * points[1]:
        geometry = (*torus, _COARSE_PER_DEGREE)
        value, _ = _memoised("torus", unit, geometry, lambda: torus_eigenvalue(unit, stride, dilation, *geometry[2:]))
        return math.sqrt(value)
    return circular_strided_norm(unit, stride, dilation, grid)


def composed_extent(inner_shape, inner_geometry, outer_shape, outer_geometry) -> list[int]:
    """Extent (h, w) of the kernel :func:`compose_kernels` forms: ``s_1 d_2 (k_2 - 1) + d_1 (k_1 - 1) + 1``.

    Examples:
        >>> composed_extent((1, 1, 3, 3), ((2, 2), (1, 1)), (1, 1, 3, 3), ((1, 1), (18, 18)))
        [75, 75]
    """
    (s1, d1), (_, d2) = inner_geometry, outer_geometry
    return [s1[a] * d2[a] * (outer_shape[2 + a] - 1) + d1[a] * (inner_shape[2 + a] - 1) + 1 for a in (0, 1)]


def compose_kernels(inner: torch.Tensor, inner_geometry, outer: torch.Tensor, outer_geometry):
    """The one convolution ``F_outer o F_inner`` over the whole plane: its kernel and stride.

    With ``(F x)[j] = sum_t W_t x[s j + d t]`` per axis, ``(F_2 F_1 x)[i] = sum_u K_u x[s_1 s_2 i + u]`` with
    ``K_u = sum_{s_1 d_2 t_2 + d_1 t_1 = u} W2_{t_2} W1_{t_1}`` (channel matrices multiplied): a convolution
    of stride ``s_1 s_2``, dilation 1 and extent ``s_1 d_2 (k_2 - 1) + d_1 (k_1 - 1) + 1``, exactly.

    Args:
        inner: (M, C_in, k1h, k1w) dense float64 kernel applied first.
        inner_geometry: ``(stride, dilation)`` of the inner kernel, each an (h, w) pair.
        outer: (C_out, M, k2h, k2w) dense float64 kernel applied second.
        outer_geometry: ``(stride, dilation)`` of the outer kernel.

    Returns:
        ``(kernel (C_out, C_in, eh, ew) float64, stride (h, w))``.

    Raises:
        LipschitzBoundError: kernels that are not 4-D, or whose channels do not chain.

    Examples:
        >>> k, s = compose_kernels(torch.ones(1, 1, 2, 1), ((1, 1), (1, 1)), torch.ones(1, 1, 2, 1), ((2, 1), (1, 1)))
        >>> k.flatten().tolist(), s
        ([1.0, 2.0, 1.0], (2, 1))
    """
    if inner.dim() != 4 or outer.dim() != 4 or outer.shape[1] != inner.shape[0]:
        raise LipschitzBoundError(
            f"compose_kernels: the outer kernel reads {outer.shape[1] if outer.dim() == 4 else '?'} channels but "
            f"the inner one writes {inner.shape[0] if inner.dim() == 4 else '?'} (kernels must be (C_out, C_in, kh, "
            f"kw); got inner {tuple(inner.shape)}, outer {tuple(outer.shape)})."
        )
    (s1, d1), (s2, d2) = inner_geometry, outer_geometry
    k1h, k1w = inner.shape[2:]
    extent = composed_extent(inner.shape, inner_geometry, outer.shape, outer_geometry)
    kernel = torch.zeros(outer.shape[0], inner.shape[1], *extent, dtype=torch.float64)
    for th in range(outer.shape[2]):
        for tw in range(outer.shape[3]):
            oh, ow = s1[0] * d2[0] * th, s1[1] * d2[1] * tw
            rows = slice(oh, oh + d1[0] * (k1h - 1) + 1, d1[0])
            cols = slice(ow, ow + d1[1] * (k1w - 1) + 1, d1[1])
            kernel[:, :, rows, cols] += torch.einsum("om,mcij->ocij", outer[:, :, th, tw], inner)
    return kernel, (s1[0] * s2[0], s1[1] * s2[1])


def conv_transpose2d_bound(module: torch.nn.ConvTranspose2d, in_hw: tuple[int, int] | None) -> float:
    """Guaranteed bound on a (bias-free) ConvTranspose2d: the norm of its adjoint strided convolution."""
    if module.padding_mode != "zeros":
        raise LipschitzBoundError(f"ConvTranspose2d padding mode {module.padding_mode!r} is not supported.")
    weight, scale = _unit_scale(dense_weight(module.weight, module.groups))  # (C_in_T, C_out_T, kh, kw): adjoint
    bound = receptive_field_bound(weight, module.stride, module.dilation)
    if in_hw is not None:
        k_eff = [d * (k - 1) + 1 for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        full = [(n - 1) * s + k for n, s, k in zip(in_hw, module.stride, k_eff, strict=True)]
        grid = tuple(int(math.ceil(m / s) * s) for m, s in zip(full, module.stride, strict=True))
        bound = min(bound, circular_strided_norm(weight, module.stride, module.dilation, grid))
    return bound * scale


def linear_bound(weight: torch.Tensor) -> float:
    """Spectral norm of a linear layer's weight (exact SVD, float64, at a power-of-two scale)."""
    unit, scale = _unit_scale(weight.detach().to(torch.float64))
    return torch.linalg.matrix_norm(unit, ord=2).item() * scale


def max_abs(values) -> float:
    """Largest absolute value of a tensor or array (a diagonal operator's norm)."""
    return float(np.max(np.abs(np.asarray(values.detach().cpu() if torch.is_tensor(values) else values))))


def axis_matrix(apply, n: int, axis: int) -> np.ndarray:
    """The float64 (n_out, n) matrix of a linear map acting along one spatial axis only.

    Args:
        apply: a function of a (N, 1, H, W) float64 tensor, linear and acting on ``axis`` alone when the
            other spatial size is 1 (pooling or resizing with a 1-sized window across).
        n: the input size along ``axis``.
        axis: 2 (rows) or 3 (columns).

    Returns:
        The matrix whose column j is ``apply`` of the j-th basis vector.
    """
    eye = torch.eye(n, dtype=torch.float64)
    basis = eye.reshape(n, 1, n, 1) if axis == 2 else eye.reshape(n, 1, 1, n)
    with torch.no_grad():
        out = apply(basis)
    return out.reshape(n, -1).T.numpy()


def spectral_norm_upper(a: np.ndarray) -> float:
    """An upper bound on the spectral norm of a matrix.

    An upper bound on the spectral norm of a matrix: exact (SVD) up to 1024 columns, else the
    Schur bound ``sqrt(||A||_1 ||A||_inf)``, inflated by a relative 1e-9 for rounding.
    """
    if a.size == 0:
        return 0.0
    if max(a.shape) <= 1024:
        value = float(np.linalg.norm(a, 2))
    else:
        value = math.sqrt(float(np.abs(a).sum(0).max()) * float(np.abs(a).sum(1).max()))
    return value * (1.0 + 1e-9)
