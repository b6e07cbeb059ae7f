"""lipcert: exact robustness certificates for Lipschitz semantic segmentation networks.

One forward pass of an L-Lipschitz network gives, for every radius eps, the worst value of a metric
over all l2 perturbations of norm <= eps (Q1) and the smallest eps reaching a metric level (Q2).
"""

from .certify import METRICS, certified_radius, certify, certify_logits
from .core.certificate import Certificate
from .core.errors import LipcertError, LipcertWarning, LipschitzBoundError, SolverError
from .lipschitz import lipschitz_bound, lipschitz_lower_bound
from .metrics.certified import CertifiedMetric
from .worst_case.costs import flip_costs, margins, pixel_radius, targeted_costs
from .worst_case.joint import joint_miou
from .worst_case.weighted import certify_weighted

__all__ = [
    "METRICS",
    "Certificate",
    "CertifiedMetric",
    "LipcertError",
    "LipcertWarning",
    "LipschitzBoundError",
    "SolverError",
    "certified_radius",
    "certify",
    "certify_logits",
    "certify_weighted",
    "joint_miou",
    "flip_costs",
    "lipschitz_bound",
    "lipschitz_lower_bound",
    "margins",
    "pixel_radius",
    "targeted_costs",
]
__version__ = "0.1.0"

from .kernels.threads import start_numba_threads as _start_numba_threads  # noqa: E402

_start_numba_threads()

# every subpackage is reachable after `import lipcert` (lipcert.models, lipcert.audit, ...)
from . import (  # noqa: E402, F401
    attacks,
    audit,
    compare,
    core,
    data,
    kernels,
    lipschitz,
    metrics,
    models,
    smoothing,
    solvers,
    training,
    worst_case,
)
