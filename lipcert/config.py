"""The one home for numerical settings of lipcert.

``COST_REL_SLACK``: every budget comparison ``sum(costs) <= eps**2`` is made against
``eps**2 * (1 + COST_REL_SLACK)``. Costs are computed and summed in float64; the rounding error of a
sum of ``n`` non-negative terms is at most ``n * 2**-53`` relative, i.e. below 1e-9 for up to
9 million pixels per image. Inflating the attacker's budget by that much keeps every certificate on the
safe side of float rounding (it can only make the certified value lower and radii smaller).
"""

from __future__ import annotations

COST_REL_SLACK: float = 1e-9
NUMBA_FLAGS: dict = {"cache": True, "nogil": True}
