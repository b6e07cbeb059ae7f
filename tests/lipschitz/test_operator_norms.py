import pytest
import torch
import torch.nn.functional as F

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
    assert circular_strided_norm(w, (s, s), (d, d), (8, 8)) == pytest.approx(exact, rel=1e-9)
    assert _explicit_strided_norm(w, (s, s), (d, d), (8, 8)) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("c_out,c_in,s,d,k", [(8, 2, 2, 1, 3), (8, 4, 1, 1, 3), (3, 6, 1, 2, 3), (4, 4, 2, 1, 2)])
def test_cheap_bounds_equal_the_matrix_shifted_frobenius_bound(c_out, c_in, s, d, k):
    from lipcert.lipschitz import operator_norms as on

    torch.manual_seed(c_out + 10 * c_in)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    taps = w.permute(2, 3, 0, 1).reshape(k * k, c_out, c_in)
    ti, tj = on._tap_offsets(k, k, d, d)
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

    from lipcert.lipschitz.operator_norms import _REFINE_REL_TOL

    torch.manual_seed(0)
    layer = AdaptiveOrthoConv2d(4, 4, 3, stride=1, padding=1, bias=False)
    w = layer.weight.detach().to(torch.float64)  # orthogonal up to float32 rounding: cheap bounds ~ exact
    exact = _dense_circular_norm(w, 1, 8, 1)
    bound = circular_strided_norm(w, (1, 1), (1, 1), (8, 8))
    assert exact * (1 - 1e-12) <= bound <= exact * (1 + _REFINE_REL_TOL)
