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
# Grids with more output frequencies than this also get the coarse whole-torus bound (see below), and
# their fine refinement (only tried when the coarse one refined at most _FINE_BUDGET blocks, i.e. when the
# cheap bounds are tight) stops after _FINE_BUDGET blocks.
_COARSE_BLOCKS = 4096
_FINE_BUDGET = 512
_FIRST_BATCH = 8  # blocks given exact eigenvalues first, and at a time once Cholesky tests run
# Level of the Cholesky tests above the best exact eigenvalue: tighter than the refinement tolerance, so
# that proven blocks loosen the result less than the cheap bounds left unrefined may.
_LEVEL_REL_TOL = 1e-5


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


def _gram_symbol(w: torch.Tensor, stride, dilation, grid):
    """The autocorrelation terms (``parts``), phase sign and output-frequency grid size of a conv's Gram."""
    c_out, c_in, kh, kw = w.shape
    (sh, sw), (dh, dw), (nh, nw) = stride, dilation, grid
    taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in)
    ti, tj = _tap_offsets(kh, kw, dh, dw)
    adjoint = sh * sw == 1 and c_out > c_in  # W^H W is only used without stride
    di, dj, coef = _autocorrelation(taps, ti, tj, adjoint)
    mh, mw = nh // sh, nw // sw
    parts = [(qh * mh, qw * mw, nh, nw, di, dj, coef) for qh in range(sh) for qw in range(sw)]
    return parts, (-1.0 if adjoint else 1.0), (mh, mw)


def _largest_block_eigenvalue(parts, sign: float, out_grid, cap: float = math.inf, budget: int | None = None):
    """Upper bound on the largest eigenvalue of the Gram blocks over an output-frequency grid.

    Branch and bound: the cheap (shifted-Frobenius) bound of every block, each also capped by ``cap``
    (an upper bound known for every block), then exact eigenvalues of the blocks with the largest bounds,
    until every remaining bound is within ``_REFINE_REL_TOL`` of the best exact value or ``budget`` blocks
    were refined. Returns ``(bound, refined block count)``; the bound is the largest of the exact values
    and the bounds of the blocks left unrefined.
    """
    mh, mw = out_grid
    fo_h, fo_w = torch.meshgrid(torch.arange(mh // 2 + 1), torch.arange(mw), indexing="ij")
    fo_h, fo_w = fo_h.reshape(-1).double(), fo_w.reshape(-1).double()
    coef = parts[0][-1]
    side = coef.shape[-1]
    chunk = max(1, _CHUNK_BYTES // (16 * side * side * 3))
    cheap_chunk = max(1, _CHUNK_BYTES // (16 * coef.shape[0] * 3))
    cheap = torch.cat(
        [
            _cheap_bounds(fo_h[s : s + cheap_chunk], fo_w[s : s + cheap_chunk], parts, sign)
            for s in range(0, fo_h.numel(), cheap_chunk)
        ]
    ).clamp(max=cap)
    exact_best, unrefined, refined = 0.0, 0.0, 0  # largest exact eigenvalue; largest bound left as is
    certified = 0.0  # largest level below which a Cholesky test proved some blocks' eigenvalues
    order = torch.argsort(cheap, descending=True)
    # refine in batches, largest cheap bounds first; the first batch is small: it only sets the level
    starts = [0, *range(min(_FIRST_BATCH, order.numel()), order.numel(), chunk)]
    for start, stop in zip(starts, [*starts[1:], order.numel()], strict=True):
        idx = order[start:stop]
        enough = exact_best * (1.0 + _REFINE_REL_TOL)
        if cheap[idx[0]].item() <= enough or (budget is not None and refined >= budget):
            unrefined = max(unrefined, cheap[idx[0]].item())  # the largest of every remaining bound
            break
        close = cheap[idx] <= enough
        if bool(close.any()):
            unrefined = max(unrefined, cheap[idx][close].max().item())
        gram = _gram_blocks(fo_h[idx[~close]], fo_w[idx[~close]], parts, sign)
        refined += gram.shape[0]
        exact_best, level = _refine(gram, exact_best)
        certified = max(certified, level)
    return max(exact_best, certified, unrefined, 0.0), refined


def _refine(gram: torch.Tensor, exact_best: float) -> tuple[float, float]:
    """Bound the largest eigenvalue of a batch of Gram blocks: ``(largest exact value, largest proven level)``.

    Blocks below the current level (``exact_best`` plus the tolerance) are proven so by a Cholesky test;
    of the others, a few get exact eigenvalues, which raises the level, and the rest are tested again.
    """
    certified = 0.0
    while gram.shape[0]:
        if exact_best > 0.0:
            below, level = _below_level(gram, exact_best * (1.0 + _LEVEL_REL_TOL))
            certified = max(certified, level)
            gram = gram[~below]
        few = gram.shape[0] <= _FIRST_BATCH or exact_best == 0.0
        sample, gram = (gram, gram[:0]) if few else (gram[:_FIRST_BATCH], gram[_FIRST_BATCH:])
        if sample.shape[0]:
            exact_best = max(exact_best, torch.linalg.eigvalsh(sample)[:, -1].max().item())
    return exact_best, certified


def _below_level(gram: torch.Tensor, level: float) -> tuple[torch.Tensor, float]:
    """Which Hermitian blocks provably have every eigenvalue below ``level`` (a Cholesky test), and the bound.

    A floating-point Cholesky factorisation ``R`` of ``A = level I - G`` that succeeds satisfies
    ``R^H R = A + dA`` with ``||dA||_2 <= gamma_{n+1} || |R|^H |R| ||_2 <= gamma_{n+1} tr(A + dA)``
    (Higham, Accuracy and Stability, Thm. 10.3; ``gamma_m = m u / (1 - m u)``), so ``A + dA`` is positive
    semi-definite and ``lambda_max(G) <= level + ||dA||_2``. Five times cheaper than eigenvalues.
    Returns the mask of proven blocks and the largest proven bound among them (0 if none).
    """
    n = gram.shape[-1]
    a = level * torch.eye(n, dtype=gram.dtype) - gram
    ok = torch.linalg.cholesky_ex(a).info == 0
    if not bool(ok.any()):
        return ok, 0.0
    unit = float(torch.finfo(torch.float64).eps) / 2
    gamma = (n + 1) * unit / (1 - (n + 1) * unit)
    trace = torch.diagonal(a[ok], dim1=-2, dim2=-1).real.sum(-1).max().item()
    return ok, level + 2.0 * gamma * abs(trace)  # factor 2: the trace of A + dA, and its own rounding


def _symbol_degree(k: int, s: int, d: int) -> int:
    """Degree, in the output frequency, of the alias-mean Gram symbol along one axis."""
    return ((k - 1) * d) // s  # only offsets that are multiples of the stride survive the alias mean


def _torus_dilation(stride, dilation) -> tuple[int, int]:
    """Dilation that gives the same symbol supremum: without stride, ``W_dil(phi) = W(dil phi)`` covers the torus."""
    return tuple(1 if s == 1 else d for s, d in zip(stride, dilation, strict=True))


def _coarse_points(w: torch.Tensor, stride, dilation) -> list[int]:
    """Coarse grid size per axis for the whole-torus bound: ``32 d`` points (0.24 % per axis on the norm)."""
    dilation = _torus_dilation(stride, dilation)
    return [max(1, 32 * _symbol_degree(k, s, d)) for k, s, d in zip(w.shape[2:], stride, dilation, strict=True)]


def _continuous_eigenvalue(w: torch.Tensor, stride, dilation) -> tuple[float, int]:
    """Upper bound on ``lambda_max`` of the Gram symbol over the whole frequency torus (any input size).

    For a unit vector u, ``p_u(phi) = u^H G(phi) u`` is a non-negative real trigonometric polynomial of
    degree ``d_h`` in ``phi_h`` and ``d_w`` in ``phi_w``. By the van der Corput-Schaake inequality
    ``p'^2 + d^2 p^2 <= d^2 ||p||^2``, ``p(phi* + t) >= ||p|| cos(d t)`` for ``|t| <= pi / d`` around a
    maximiser, so on an M-point equispaced grid (every point within ``pi / M`` of it)
    ``max_grid p >= ||p|| cos(d pi / M)``; applied along each axis in turn, ``sup lambda_max =
    sup_u ||p_u|| <= max_grid lambda_max / (cos(d_h pi / M_h) cos(d_w pi / M_w))``. ``M = 32 d`` costs a
    factor ``1 / cos(pi / 32) = 1.0048`` on the eigenvalue per axis (0.24 % on the norm). Without stride a
    dilated kernel has the supremum of the undilated one (its symbol is ``W(dil phi)``), which has a lower
    degree. Returns the bound and the number of blocks refined.
    """
    dilation = _torus_dilation(stride, dilation)
    points = _coarse_points(w, stride, dilation)
    degrees = [_symbol_degree(k, s, d) for k, s, d in zip(w.shape[2:], stride, dilation, strict=True)]
    grid = tuple(m * s for m, s in zip(points, stride, strict=True))
    parts, sign, out_grid = _gram_symbol(w, stride, dilation, grid)
    value, refined = _largest_block_eigenvalue(parts, sign, out_grid)
    factor = math.prod(math.cos(deg * math.pi / m) for deg, m in zip(degrees, points, strict=True))
    return value / factor, refined


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
    grid (:func:`_continuous_eigenvalue`, within 0.5 % of it), every block's bound is capped by it, and
    the fine refinement stops after a few hundred exact blocks.

    Args:
        weight: (C_out, C_in, kh, kw) dense kernel (groups already expanded).
        stride: (s_h, s_w).
        dilation: (d_h, d_w).
        grid: (N_h, N_w) periodic input size, each divisible by its stride.
    """
    w = weight.detach().to(torch.float64)
    c_out, c_in = w.shape[:2]
    (sh, sw), (nh, nw) = stride, grid
    if nh % sh or nw % sw:
        raise LipschitzBoundError(f"Fourier bound needs a grid divisible by the stride, got {grid} / {stride}.")
    if c_out > c_in * sh * sw and sh * sw > 1:
        # a strided isometry (rare: few input channels): evaluate M^H M from the blocks themselves
        return _explicit_strided_norm(w, stride, dilation, grid)
    parts, sign, out_grid = _gram_symbol(w, stride, dilation, grid)
    fine_blocks = (out_grid[0] // 2 + 1) * out_grid[1]
    coarse = _coarse_points(w, stride, dilation)
    cap, budget = math.inf, None
    if fine_blocks > max(_COARSE_BLOCKS, 2 * (coarse[0] // 2 + 1) * coarse[1]):
        cap, refined = _continuous_eigenvalue(w, stride, dilation)
        if refined > _FINE_BUDGET or coarse == [1, 1]:  # loose cheap bounds, or a constant symbol (exact)
            return math.sqrt(cap)
        budget = _FINE_BUDGET
    value, _ = _largest_block_eigenvalue(parts, sign, out_grid, cap, budget)
    return math.sqrt(value)


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


def conv2d_bound(module: torch.nn.Conv2d, in_hw: tuple[int, int] | None) -> float:
    """Guaranteed bound on the operator norm of a (bias-free) Conv2d, from ``module.weight`` as it runs."""
    pads = list(module._reversed_padding_repeated_twice)  # (left, right, top, bottom)
    _check_padding(module.padding_mode, pads)
    weight, scale = _unit_scale(dense_weight(module.weight, module.groups))
    bound = receptive_field_bound(weight, module.stride, module.dilation)
    single_tap = weight.shape[2] == weight.shape[3] == 1
    if in_hw is not None and module.padding_mode == "zeros" and not single_tap:  # a 1x1 bound is already exact
        sizes = (in_hw[0] + pads[2] + pads[3], in_hw[1] + pads[0] + pads[1])
        grid = tuple(int(math.ceil(m / s) * s) for m, s in zip(sizes, module.stride, strict=True))
        bound = min(bound, circular_strided_norm(weight, module.stride, module.dilation, grid))
    return bound * scale


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
