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
