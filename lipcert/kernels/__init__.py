"""numba kernels: pure functions over numpy arrays, compiled with ``cache=True``.

Each kernel has a numpy twin of the same name in :mod:`reference`, used by the tests to
check that both give identical numbers. Segments ("CSR" layout): group ``g`` owns
``values[offsets[g]:offsets[g + 1]]``.
"""

from .flip_counts import grouped_flip_counts
from .greedy import unit_candidates, unit_certificate
from .iou import iou_hulls, iou_worst
from .iou_costs import iou_costs
from .knapsack import dantzig_bound
from .margins import PIXELS_PER_BLOCK, pair_costs, top2_margin
from .prefix import grouped_sorted_prefix, segment_value_at
from .sampling import mode_and_count

__all__ = [
    "dantzig_bound",
    "iou_costs",
    "iou_hulls",
    "iou_worst",
    "mode_and_count",
    "pair_costs",
    "top2_margin",
    "grouped_flip_counts",
    "grouped_sorted_prefix",
    "segment_value_at",
    "unit_candidates",
    "unit_certificate",
    "PIXELS_PER_BLOCK",
]
