"""The Gram blocks of a circular convolution's Fourier symbol and proven bounds on their eigenvalues.

The DFT block-diagonalises a circular (strided) convolution; its operator norm is the square root of the
largest eigenvalue over the blocks' Gram matrices. This module evaluates those Gram matrices from the
kernel's autocorrelation, bounds every block cheaply (shifted Frobenius), refines the largest ones
(exact eigenvalues, or Cholesky tests that prove a block below a level), and bounds the supremum over
the whole frequency torus from a coarse grid (van der Corput-Schaake). Used by
:mod:`lipcert.lipschitz.operator_norms`; docs/models.md states the bounds.
"""

from __future__ import annotations

import math

import torch

# Blocks whose cheap bound is within this relative margin of the largest exact eigenvalue found are not
# refined: their cheap bound enters the maximum instead (still an upper bound, at most this much looser).
# Near-orthogonal (AOC) blocks have cheap bounds about 1e-5 above their exact value in float32 weights.
_REFINE_REL_TOL = 1e-4
CHUNK_BYTES = 64 * 2**20
_FIRST_BATCH = 8  # blocks given exact eigenvalues first, and at a time once Cholesky tests run
# Level of the Cholesky tests above the best exact eigenvalue: tighter than the refinement tolerance, so
# that proven blocks loosen the result less than the cheap bounds left unrefined may.
_LEVEL_REL_TOL = 1e-5


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


def tap_offsets(kh: int, kw: int, dh: int, dw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column offsets (int64 (kh * kw,)) of a kernel's taps, row-major, with dilation (dh, dw)."""
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


def gram_symbol(w: torch.Tensor, stride, dilation, grid):
    """The autocorrelation terms (``parts``), phase sign and output-frequency grid size of a conv's Gram."""
    c_out, c_in, kh, kw = w.shape
    (sh, sw), (dh, dw), (nh, nw) = stride, dilation, grid
    taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in)
    ti, tj = tap_offsets(kh, kw, dh, dw)
    adjoint = sh * sw == 1 and c_out > c_in  # W^H W is only used without stride
    di, dj, coef = _autocorrelation(taps, ti, tj, adjoint)
    mh, mw = nh // sh, nw // sw
    parts = [(qh * mh, qw * mw, nh, nw, di, dj, coef) for qh in range(sh) for qw in range(sw)]
    return parts, (-1.0 if adjoint else 1.0), (mh, mw)


def largest_block_eigenvalue(parts, sign: float, out_grid, cap: float = math.inf, budget: int | None = None):
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
    chunk = max(1, CHUNK_BYTES // (16 * side * side * 3))
    cheap_chunk = max(1, CHUNK_BYTES // (16 * coef.shape[0] * 3))
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


def coarse_points(w: torch.Tensor, stride, dilation, per_degree: int = 32) -> list[int]:
    """Coarse grid size per axis for the whole-torus bound: ``32 d`` points (0.24 % per axis on the norm)."""
    dilation = _torus_dilation(stride, dilation)
    return [max(1, per_degree * _symbol_degree(k, s, d)) for k, s, d in zip(w.shape[2:], stride, dilation, strict=True)]


def torus_eigenvalue(w: torch.Tensor, stride, dilation, per_degree: int = 32) -> tuple[float, int]:
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
    points = coarse_points(w, stride, dilation, per_degree)
    degrees = [_symbol_degree(k, s, d) for k, s, d in zip(w.shape[2:], stride, dilation, strict=True)]
    grid = tuple(m * s for m, s in zip(points, stride, strict=True))
    parts, sign, out_grid = gram_symbol(w, stride, dilation, grid)
    value, refined = largest_block_eigenvalue(parts, sign, out_grid)
    factor = math.prod(math.cos(deg * math.pi / m) for deg, m in zip(degrees, points, strict=True))
    return value / factor, refined
