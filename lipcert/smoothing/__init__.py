"""The randomized-smoothing baseline SegCertify (Fischer et al., ICML 2021)."""

from ..metrics.abstain import AbstainMetrics
from .segcertify import SmoothingResult, certify_counts, sample_counts, segcertify, segcertify_from_samples
from .stats import (
    check_reachable,
    min_samples,
    pvalue_table,
    pvalues,
    radius,
    reject,
    tau_ceiling,
    tau_for_radius,
)

__all__ = [
    "AbstainMetrics",
    "SmoothingResult",
    "certify_counts",
    "check_reachable",
    "min_samples",
    "pvalue_table",
    "pvalues",
    "radius",
    "reject",
    "sample_counts",
    "segcertify",
    "segcertify_from_samples",
    "tau_ceiling",
    "tau_for_radius",
]
