"""The case store: evidence, manifest, normalised tables, quarantine and the analyst's log."""

from kubeforensics.case.log import Bookmark, CaseLog
from kubeforensics.case.manifest import VerifyReport
from kubeforensics.case.query import Filters
from kubeforensics.case.store import Case, IngestReport, open_case

__all__ = ["Bookmark", "Case", "CaseLog", "Filters", "IngestReport", "VerifyReport", "open_case"]
