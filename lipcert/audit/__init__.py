"""Audits: attack a model and check that no attack beats its certificates."""

from .run import AUDITED, AuditReport, audit

__all__ = ["AUDITED", "AuditReport", "audit"]
