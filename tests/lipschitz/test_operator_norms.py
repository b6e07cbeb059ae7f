import math

import pytest
import torch
import torch.nn.functional as F

from lipcert.lipschitz import operator_norms
from lipcert.lipschitz.gram_blocks import _REFINE_REL_TOL
from lipcert.lipschitz.operator_norms import _explicit_strided_norm, circular_strided_norm


def _dense_circular_norm(w, s, n, d):
    """Exact norm of the circular strided convolution, from its dense matrix (tiny sizes only)."""
    c_in = w.shape[1]
    eye = torch.eye(c_in * n * n, dtype=torch.float64).reshape(-1, c_in, n, n)
    e = (w.shape[2] - 1) * d
    xp = torch.cat([eye, eye[..., :e, :]], 2)
    xp = torch.cat([xp, xp[..., :e]], 3)
    out = F.conv2d(xp, w, stride=s, dilation=d)[:, :, : n // s, : n // s]
    return torch.linalg.matrix_norm(out.reshape(eye.shape[0], -1).T, ord=2).item()


@pytest.mark.parametrize(
    "c_out,c_in,s,d,k",
    [
        (8, 2, 2, 1, 3),
        (4, 1, 2, 1, 3),
        (8, 4, 1, 1, 3),
        (3, 6, 1, 1, 3),
        (5, 2, 2, 2, 3),
        (6, 3, 1, 2, 3),
        (4, 4, 2, 1, 2),
        (7, 2, 1, 1, 2),
        (9, 2, 2, 1, 3),
    ],
)
def test_fourier_norm_equals_the_dense_operator_norm(c_out, c_in, s, d, k):
    torch.manual_seed(c_out * 100 + c_in)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    exact = _dense_circular_norm(w, s, 8, d)
    bound = circular_strided_norm(w, (s, s), (d, d), (8, 8))  # exact up to the refinement tolerance
    assert exact * (1 - 1e-12) <= bound <= exact * (1 + _REFINE_REL_TOL)
    assert _explicit_strided_norm(w, (s, s), (d, d), (8, 8)) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("c_out,c_in,s,d,k", [(8, 2, 2, 1, 3), (8, 4, 1, 1, 3), (3, 6, 1, 2, 3), (4, 4, 2, 1, 2)])
def test_cheap_bounds_equal_the_matrix_shifted_frobenius_bound(c_out, c_in, s, d, k):
    from lipcert.lipschitz import gram_blocks as on

    torch.manual_seed(c_out + 10 * c_in)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    taps = w.permute(2, 3, 0, 1).reshape(k * k, c_out, c_in)
    ti, tj = on.tap_offsets(k, k, d, d)
    for adjoint in [False, True] if s == 1 else [False]:
        di, dj, coef = on._autocorrelation(taps, ti, tj, adjoint)
        n = 12
        parts = [(qh * n // s, qw * n // s, n, n, di, dj, coef) for qh in range(s) for qw in range(s)]
        fh, fw = torch.meshgrid(torch.arange(n // s), torch.arange(n // s), indexing="ij")
        fh, fw = fh.reshape(-1).double(), fw.reshape(-1).double()
        sign = -1.0 if adjoint else 1.0
        gram = on._gram_blocks(fh, fw, parts, sign)  # the blocks themselves, then the bound on each matrix
        rho = torch.diagonal(gram, dim1=-2, dim2=-1).real.sum(-1) / gram.shape[-1]
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
        matrix = rho + torch.linalg.matrix_norm(gram - rho[:, None, None] * eye, ord="fro")
        exact = torch.linalg.eigvalsh(gram)[:, -1]
        cheap = on._cheap_bounds(fh, fw, parts, sign)
        torch.testing.assert_close(cheap, matrix, rtol=1e-10, atol=1e-10)
        assert bool((cheap >= exact - 1e-10).all())  # an upper bound of every block's largest eigenvalue


def test_orthogonal_convolution_bound_is_sound_and_within_the_refinement_tolerance():
    from orthogonium.layers.conv.AOC import AdaptiveOrthoConv2d

    torch.manual_seed(0)
    layer = AdaptiveOrthoConv2d(4, 4, 3, stride=1, padding=1, bias=False)
    w = layer.weight.detach().to(torch.float64)  # orthogonal up to float32 rounding: cheap bounds ~ exact
    exact = _dense_circular_norm(w, 1, 8, 1)
    bound = circular_strided_norm(w, (1, 1), (1, 1), (8, 8))
    assert exact * (1 - 1e-12) <= bound <= exact * (1 + _REFINE_REL_TOL)


def _grid_max_eigenvalue(w, s, d, grid):
    """max over a grid's blocks of the largest Gram eigenvalue, every block exact (no shortcuts)."""
    from lipcert.lipschitz import gram_blocks as on

    parts, sign, out_grid = on.gram_symbol(w, (s, s), (d, d), grid)
    fh, fw = torch.meshgrid(torch.arange(out_grid[0]), torch.arange(out_grid[1]), indexing="ij")
    gram = on._gram_blocks(fh.reshape(-1).double(), fw.reshape(-1).double(), parts, sign)
    return torch.linalg.eigvalsh(gram)[:, -1].max().item()


_COS_FACTOR = (1 / math.cos(math.pi / 32)) ** 2  # the two cos factors of the van der Corput bound (M = 32 d)


@pytest.mark.parametrize(
    "c_out,c_in,s,d,k",
    [(6, 3, 1, 1, 3), (3, 6, 1, 2, 3), (8, 4, 2, 1, 3), (4, 4, 2, 1, 2), (4, 4, 1, 3, 3), (5, 2, 2, 2, 3)],
)
def test_whole_torus_bound_is_above_every_grid_and_close_to_a_fine_one(c_out, c_in, s, d, k):
    from lipcert.lipschitz import gram_blocks as on

    torch.manual_seed(7 * c_out + c_in)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    bound, _ = on.torus_eigenvalue(w, (s, s), (d, d))
    finest = 0.0
    for n in (6, 10, 16, 34, 96, 250):  # grids off and on the coarse one, divisible by the stride
        finest = _grid_max_eigenvalue(w, s, d, (n - n % s, n - n % s))
        assert finest <= bound * (1 + 1e-12)
    assert bound <= finest * _COS_FACTOR * 1.002  # 1.002: the 250-grid is itself a little below the supremum


def test_large_grids_take_the_whole_torus_bound_and_stay_sound_and_tight():

    torch.manual_seed(3)
    w = torch.randn(16, 16, 3, 3, dtype=torch.float64)
    grid = (130, 260)  # more output frequencies than the fine-grid limit
    assert (grid[0] // 2 + 1) * grid[1] > operator_norms._COARSE_BLOCKS
    bound = circular_strided_norm(w, (1, 1), (1, 1), grid)
    exact = _grid_max_eigenvalue(w, 1, 1, grid) ** 0.5
    assert exact * (1 - 1e-12) <= bound <= exact * _COS_FACTOR**0.5 * 1.001
    realised = _dense_power_norm(w, grid)  # a realised ||A x|| / ||x||, independent of the Fourier code
    assert realised <= bound and realised >= 0.99 * exact


def _dense_power_norm(w, grid):
    """A lower bound on the circular convolution's norm on the grid: power iteration on A^T A (float64)."""
    torch.manual_seed(0)
    x = torch.randn(1, w.shape[1], *grid, dtype=torch.float64)
    e = w.shape[2] - 1
    for _ in range(40):
        y = F.conv2d(F.pad(x, (0, e, 0, e), mode="circular"), w)
        x = F.conv_transpose2d(F.pad(y, (e, 0, e, 0), mode="circular"), w)[..., e:-e, e:-e]
        x = x / x.norm()
    return F.conv2d(F.pad(x, (0, e, 0, e), mode="circular"), w).norm().item()


def test_cholesky_level_test_proves_only_blocks_below_it():
    from lipcert.lipschitz import gram_blocks as on

    torch.manual_seed(11)
    a = torch.randn(200, 12, 20, dtype=torch.complex128)
    gram = a @ a.mH
    top = torch.linalg.eigvalsh(gram)[:, -1]
    for level in (top.median().item(), top.max().item() * (1 + 1e-12), top.min().item(), top.max().item() * 2):
        below, proven = on._below_level(gram, level)
        assert bool((top[below] <= proven).all())
        assert bool(below[top > level].logical_not().all())  # a block above the level is never "proven"
        if bool(below.any()):
            assert level <= proven <= level * (1 + 1e-12)


@pytest.mark.parametrize("exponent", [-1000, -300, 0, 300, 1000])
@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.nn.Conv2d(4, 4, 3, padding=1, bias=False),
        lambda: torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
        lambda: torch.nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, bias=False),
        lambda: torch.nn.Linear(12, 5, bias=False),
    ],
)
def test_bounds_scale_exactly_with_the_weights_at_the_ends_of_float64(make, exponent):
    """Weights 2^-1000 (whose Gram underflows to 0) or 2^1000 (overflows) give 2^e times the unit bound."""
    from lipcert import lipschitz_bound

    torch.manual_seed(0)
    layer = make().double()
    shape = (1, 3, 12) if isinstance(layer, torch.nn.Linear) else (4, 9, 8)
    unit = lipschitz_bound(layer, shape, progress=False)
    with torch.no_grad():
        layer.weight.mul_(2.0**exponent)  # exact in float64 (no entry leaves the normal range)
    assert lipschitz_bound(layer, shape, progress=False) == unit * 2.0**exponent


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("coarse", [False, True])
def test_the_whole_plane_bound_is_above_the_exact_norm_of_every_output_of_a_boxed_input(seed, coarse):
    """``F E_box``: all non-zero outputs (a "full" convolution, padding e - 1), any stride and dilation."""
    gen = torch.Generator().manual_seed(seed)
    c_out, c_in, kh, kw, s, d = (int(v) for v in torch.randint(1, 4, (6,), generator=gen))
    if seed % 4 == 0:  # more outputs than the strided blocks have columns (C_out > C_in s^2)
        c_out, c_in, s = 9, 1, 2
    n = (int(torch.randint(3, 8, (1,), generator=gen)), int(torch.randint(3, 8, (1,), generator=gen)))
    w = torch.randn(c_out, c_in, kh, kw, generator=gen, dtype=torch.float64)
    pads = ((kh - 1) * d, (kw - 1) * d)
    eye = torch.eye(c_in * n[0] * n[1], dtype=torch.float64).reshape(-1, c_in, *n)
    out = F.conv2d(eye, w, stride=s, dilation=d, padding=pads)
    exact = torch.linalg.matrix_norm(out.reshape(eye.shape[0], -1).T, ord=2).item()
    got = operator_norms.full_support_bound(w, (s, s), (d, d), n, coarse=coarse)
    assert got >= exact * (1 - 1e-9)
    assert got <= operator_norms.receptive_field_bound(w, (s, s), (d, d)) * (1 + 1e-12)
