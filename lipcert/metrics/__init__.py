"""Stateful metrics: accumulators of certificates over batches and datasets."""

from .abstain import AbstainMetrics
from .certified import CertifiedMetric

__all__ = ["AbstainMetrics", "CertifiedMetric"]
