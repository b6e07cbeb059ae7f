"""The one home for numerical settings of lipcert, each with the reason it is sound.

``COST_REL_SLACK``: every budget comparison ``sum(costs) <= eps**2`` is made against
``eps**2 * (1 + COST_REL_SLACK)``. A cost ``(d / L)**2 / 2`` is computed in float64 with at most
a few roundings (relative error below ``8 * 2**-53``), and the rounding error of a sum of ``n``
non-negative terms is at most ``n * 2**-53`` relative: below 1e-9 for up to 9 million pixels per image.
Inflating the attacker's budget by that much keeps every certificate on the safe side of float rounding
(it can only make the certified value lower and radii smaller).

The certified range (outside it lipcert refuses the input, naming the value; see docs/certificates.md):

``LIPSCHITZ_RANGE``: L in [1e-40, 1e40]. ``EPS_RANGE``: every radius is 0 or in [1e-100, 1e100].
``LOGIT_LIMIT``: every logit is below 2**161 (about 2.9e48) in magnitude. Within these, a margin is at
most 2**162, ``1 / L`` is a normal float, a cost is at most about 2e177 and a sum of costs
cannot overflow; a cost that underflows is rounded up to the smallest positive float (so a pixel is free
exactly on a tie), an error below 1e-308 per pixel that the slack absorbs at every radius >= 1e-100
(``eps**2 * COST_REL_SLACK >= 1e-209``); and ``eps**2`` and the histogram scales of the kernels are
normal floats, so no index computed from a float leaves its array.
"""

from __future__ import annotations

COST_REL_SLACK: float = 1e-9
LIPSCHITZ_RANGE: tuple[float, float] = (1e-40, 1e40)
EPS_RANGE: tuple[float, float] = (1e-100, 1e100)
LOGIT_LIMIT: float = 2.0**161
SOLVER_COST_RESOLUTION: int = 10**6
"""CP-SAT models measure costs in units of budget / SOLVER_COST_RESOLUTION, rounded down (the capacity is
exactly SOLVER_COST_RESOLUTION): every truly affordable set stays affordable, so any resolution is sound;
a finer one only tightens bounds (and slows the solver). A status is "exact" only after the solution is
checked with the float costs."""
SOLVER_VALUE_RESOLUTION: int = 10**6
"""Non-integral knapsack values are scaled so the largest is SOLVER_VALUE_RESOLUTION and rounded up: the
solver's optimum of the rounded values is at least the true optimum, so the damage is never understated
(the certificate only gets lower); such answers are labelled "bound", never "exact"."""
JOINT_EXACT_GAP: float = 1e-9
"""joint_miou reports its proven lower bound; it is labelled "exact" when a truly affordable reassignment
reaches that bound within JOINT_EXACT_GAP (mIoU units): coefficients may have been rounded down when the
common multiple of the unions is too large. The value reported is the bound either way (sound)."""
LEVEL_COUNT_TOLERANCE: float = 1e-9
"""Q2 turns a metric level into a number of flips, ceil(level * valid - tolerance * valid): the tolerance
absorbs float rounding of ``level * valid``; rounding the count down can only make a radius smaller."""
LIPSCHITZ_REL_SLACK: float = 1e-6
"""Every computed Lipschitz bound is multiplied by 1 + LIPSCHITZ_REL_SLACK: it covers LAPACK's rounding of
singular values (relative error a small multiple of 2**-53 times the dimension) and float32 weights read
as float64, so the bound stays above the true constant of the weights that run."""
NUMBA_FLAGS: dict = {"cache": True, "nogil": True}
