"""Thread settings: lipcert never changes the caller's; the CLI sets both pools on request."""

from __future__ import annotations

import numba
import numpy as np
import torch


def start_numba_threads() -> None:
    """Start numba's thread pool now, keeping torch's thread count as it was.

    numba's OpenMP threading layer resets the OpenMP thread count when it starts (on the first parallel
    kernel call), which torch reads as its own: ``torch.get_num_threads()`` would change under the
    caller's feet. Starting it once at import, with torch's count restored, keeps every later call clean.
    """
    from .margins import top2_margin

    before = torch.get_num_threads()
    try:
        top2_margin(np.zeros((1, 2, 1), dtype=np.float64))
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def set_threads(n: int) -> None:
    """Use ``n`` threads in both torch and the numba kernels (what ``lipcert ... --threads N`` does).

    Examples:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> set_threads(1)
        >>> torch.get_num_threads()
        1
        >>> set_threads(before)
    """
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
