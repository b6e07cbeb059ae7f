"""The comparison of lipcert with SegCertify on the same images, and its reports."""

from .config import CompareConfig, hardware, provenance
from .report import CSV_COLUMNS, markdown, write_outputs
from .run import run_compare

__all__ = ["CSV_COLUMNS", "CompareConfig", "hardware", "markdown", "provenance", "run_compare", "write_outputs"]
