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

import math

import numpy as np
import torch

from ..core.errors import LipschitzBoundError

_SAFE_PADDING = ("zeros", "circular", "replicate")
# Blocks whose cheap bound is within this relative margin of the largest exact eigenvalue found are not
# refined: their cheap bound enters the maximum instead (still an upper bound, at most this much looser).
# Near-orthogonal (AOC) blocks have cheap bounds about 1e-5 above their exact value in float32 weights.
_REFINE_REL_TOL = 1e-4
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


def _alias_weights(fh, fw, parts, sign: float) -> torch.Tensor:
    """(F, D) weights ``w`` with ``Gram block(f') = sum_D w[f', D] A_D`` (mean of the phases over aliases)."""
    total = None
    for oh, ow, nh, nw, di, dj, _ in parts:
        phase = torch.exp(sign * -2j * math.pi * ((fh + oh)[:, None] * di / nh + (fw + ow)[:, None] * dj / nw))
        total = phase if total is None else total + phase
    return total / len(parts)


def _cheap_bounds(fh, fw, parts, sign: float) -> torch.Tensor:
    """The shifted-Frobenius bound of every block, without forming the blocks.

    ``lambda_max(G) <= rho + ||G - rho I||_F`` for Hermitian G, ``rho = tr G / n`` (``||G - rho I||_2 <=
    ||G - rho I||_F`` and ``lambda_max(G) = rho + lambda_max(G - rho I)``); exact when ``G = rho I``.

    With ``A_D = T_D + (tr A_D / n) I`` (T_D traceless), a block is ``G = sum_D w_D A_D``, so
    ``rho = tr G / n = sum_D w_D tr A_D / n`` and ``G - rho I = sum_D w_D T_D``, whose squared Frobenius
    norm is ``w^T M conj(w)`` with the (D, D) Gram matrix ``M = [<T_D, T_E>]`` computed once. No
    cancellation: for near-orthogonal kernels every term is as small as the T_D themselves.
    """
    coef = parts[0][-1]
    n = coef.shape[-1]
    trace = torch.diagonal(coef, dim1=-2, dim2=-1).sum(-1)  # (D,)
    traceless = coef - (trace / n)[:, None, None] * torch.eye(n, dtype=coef.dtype)
    gram_t = torch.einsum("dij,eij->de", traceless, traceless.conj())
    w = _alias_weights(fh, fw, parts, sign)
    rho = (w @ (trace / n)).real
    spread = torch.einsum("fd,de,fe->f", w, gram_t, w.conj()).real.clamp(min=0.0)
    return rho + torch.sqrt(spread)


def _tap_offsets(kh: int, kw: int, dh: int, dw: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.arange(kh).repeat_interleave(kw) * dh, torch.arange(kw).repeat(kh) * dw)


def _autocorrelation(taps: torch.Tensor, ti: torch.Tensor, tj: torch.Tensor, adjoint: bool):
    """Autocorrelation coefficients of the Gram symbol.

    Coefficients of the Gram symbol: ``W(f) W(f)^H = sum_D A_D e^{-i f.D}`` with
    ``A_D = sum_{t - u = D} W_t W_u^T`` (or ``W^H W`` with ``W_t^T W_u`` and the conjugate phase).
    """
    coeffs: dict[tuple[int, int], torch.Tensor] = {}
    for t in range(taps.shape[0]):
        for u in range(taps.shape[0]):
            d = (int(ti[t] - ti[u]), int(tj[t] - tj[u]))
            term = taps[t].T @ taps[u] if adjoint else taps[t] @ taps[u].T
            coeffs[d] = coeffs[d] + term if d in coeffs else term
    keys = sorted(coeffs)
    di = torch.tensor([k[0] for k in keys], dtype=torch.float64)
    dj = torch.tensor([k[1] for k in keys], dtype=torch.float64)
    return di, dj, torch.stack([coeffs[k] for k in keys]).to(torch.complex128)


def _gram_blocks(fh, fw, parts, sign: float) -> torch.Tensor:
    """Gram matrices of the blocks at the given output frequencies.

    Gram matrices (F, n, n) of the blocks at output frequencies (fh, fw): the mean over aliases of the
    stride-1 Gram symbol, evaluated from its autocorrelation coefficients.
    """
    return torch.einsum("fd,dab->fab", _alias_weights(fh, fw, parts, sign), parts[0][-1])


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

    Args:
        weight: (C_out, C_in, kh, kw) dense kernel (groups already expanded).
        stride: (s_h, s_w).
        dilation: (d_h, d_w).
        grid: (N_h, N_w) periodic input size, each divisible by its stride.
    """
    w = weight.detach().to(torch.float64)
    c_out, c_in, kh, kw = w.shape
    (sh, sw), (dh, dw), (nh, nw) = stride, dilation, grid
    if nh % sh or nw % sw:
        raise LipschitzBoundError(f"Fourier bound needs a grid divisible by the stride, got {grid} / {stride}.")
    n_alias = sh * sw
    if c_out > c_in * n_alias and n_alias > 1:
        # a strided isometry (rare: few input channels): evaluate M^H M from the blocks themselves
        return _explicit_strided_norm(w, stride, dilation, grid)
    taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in)
    ti, tj = _tap_offsets(kh, kw, dh, dw)
    adjoint = n_alias == 1 and c_out > c_in  # W^H W is only used without stride
    di, dj, coef = _autocorrelation(taps, ti, tj, adjoint)
    mh, mw = nh // sh, nw // sw
    parts = [(qh * mh, qw * mw, nh, nw, di, dj, coef) for qh in range(sh) for qw in range(sw)]
    sign = -1.0 if adjoint else 1.0
    fo_h, fo_w = torch.meshgrid(torch.arange(mh // 2 + 1), torch.arange(mw), indexing="ij")
    fo_h, fo_w = fo_h.reshape(-1).double(), fo_w.reshape(-1).double()
    side = coef.shape[-1]
    chunk = max(1, _CHUNK_BYTES // (16 * side * side * 3))
    cheap_chunk = max(1, _CHUNK_BYTES // (16 * coef.shape[0] * 3))
    cheap = torch.cat(
        [
            _cheap_bounds(fo_h[s : s + cheap_chunk], fo_w[s : s + cheap_chunk], parts, sign)
            for s in range(0, fo_h.numel(), cheap_chunk)
        ]
    )
    exact_best, unrefined = 0.0, 0.0  # largest exact eigenvalue; largest cheap bound of a block left as is
    order = torch.argsort(cheap, descending=True)
    for start in range(0, order.numel(), chunk):  # refine in batches, largest cheap bounds first
        idx = order[start : start + chunk]
        enough = exact_best * (1.0 + _REFINE_REL_TOL)
        if cheap[idx[0]].item() <= enough:
            unrefined = max(unrefined, cheap[idx[0]].item())  # the largest of every remaining cheap bound
            break
        close = cheap[idx] <= enough
        if bool(close.any()):
            unrefined = max(unrefined, cheap[idx][close].max().item())
        gram = _gram_blocks(fo_h[idx[~close]], fo_w[idx[~close]], parts, sign)
        exact_best = max(exact_best, torch.linalg.eigvalsh(gram)[:, -1].max().item())
    return math.sqrt(max(exact_best, unrefined, 0.0))


def _explicit_strided_norm(w: torch.Tensor, stride, dilation, grid) -> float:
    c_out, c_in, kh, kw = w.shape
    (sh, sw), (dh, dw), (nh, nw) = stride, dilation, grid
    taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in).to(torch.complex128)
    ti, tj = (t.double() for t in _tap_offsets(kh, kw, dh, dw))
    mh, mw = nh // sh, nw // sw
    fo_h, fo_w = torch.meshgrid(torch.arange(mh // 2 + 1), torch.arange(mw), indexing="ij")
    fo_h, fo_w = fo_h.reshape(-1).double(), fo_w.reshape(-1).double()
    chunk = max(1, _CHUNK_BYTES // (16 * c_out * c_in * sh * sw * 3))
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


def conv2d_bound(module: torch.nn.Conv2d, in_hw: tuple[int, int] | None) -> float:
    """Guaranteed bound on the operator norm of a (bias-free) Conv2d, from ``module.weight`` as it runs."""
    pads = list(module._reversed_padding_repeated_twice)  # (left, right, top, bottom)
    _check_padding(module.padding_mode, pads)
    weight = dense_weight(module.weight, module.groups)
    bound = receptive_field_bound(weight, module.stride, module.dilation)
    single_tap = weight.shape[2] == weight.shape[3] == 1
    if in_hw is not None and module.padding_mode == "zeros" and not single_tap:  # a 1x1 bound is already exact
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
