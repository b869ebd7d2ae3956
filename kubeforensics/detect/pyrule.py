"""Base for rules written in Python (correlations and statistics over one or more tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import pandas as pd

from kubeforensics.detect.conditions import DERIVED, derive
from kubeforensics.detect.declarative import _PLACEHOLDER, hits_frame, render
from kubeforensics.detect.model import RuleMeta, Severity, empty_hits

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

Frames = dict[str, list[dict[str, Any]]]


class PyRule:
    """Subclasses set the class attributes and implement :meth:`find`.

    ``find`` returns the matching rows of one table (any index), with extra
    columns if it likes, plus the names of the columns giving the entity; the
    base class renders :attr:`summary` (``{column}`` placeholders) and builds
    the hit frame.  ``positive``/``negative`` are the test cases (frames dicts).
    """

    id: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    severity: ClassVar[Severity]
    techniques: ClassVar[tuple[str, ...]]
    tactic: ClassVar[str]
    sources: ClassVar[tuple[str, ...]]
    requires: ClassVar[tuple[str, ...]] = ()  # tables that must be non-empty (default: all sources)
    fields: ClassVar[tuple[str, ...]]
    false_positives: ClassVar[str] = ""
    summary: ClassVar[str]
    entity: ClassVar[dict[str, str]] = {}
    key: ClassVar[tuple[str, ...]] = ()
    positive: ClassVar[list[Frames]] = []
    negative: ClassVar[list[Frames]] = []

    @property
    def meta(self) -> RuleMeta:
        return RuleMeta(
            id=self.id,
            title=self.title,
            description=self.description,
            severity=self.severity,
            techniques=self.techniques,
            tactic=self.tactic,
            sources=self.sources,
            fields=self.fields,
            false_positives=self.false_positives,
            origin=f"python:{type(self).__module__}.{type(self).__name__}",
        )

    def find(self, tables: Mapping[str, pd.DataFrame], config: "TuningConfig") -> pd.DataFrame:
        raise NotImplementedError

    def evaluate(self, tables: Mapping[str, pd.DataFrame], config: "TuningConfig") -> pd.DataFrame:
        """Hits: the rows :meth:`find` returns, keyed by :attr:`key` (default: the entity columns)."""
        if any(tables.get(s) is None or tables[s].empty for s in (self.requires or self.sources)):
            return empty_hits()
        rows = self.find(tables, config)
        if rows is None or rows.empty:
            return empty_hits()
        rows = rows.reset_index(drop=True)
        placeholders = set(_PLACEHOLDER.findall(self.summary)) | set(self.entity.values()) | set(self.key)
        for table, cols in DERIVED.items():
            needed = [c for c in cols if c in placeholders and c not in rows.columns]
            if needed and table in self.sources:
                rows = derive(table, rows, needed)
        key_cols = self.key or tuple(self.entity.values())
        key = pd.Series([""] * len(rows), index=rows.index, dtype=object)
        for c in key_cols:
            key = key + "\x1f" + rows[c].astype(object).where(rows[c].notna(), "").astype(str)
        first = rows.assign(_k=key).sort_values("time", kind="stable").drop_duplicates("_k")
        details = {i: render(self.summary, r) for i, r in zip(first.index, first.to_dict("records"))}
        ent = {k: rows[c] for k, c in self.entity.items()}
        return hits_frame(rows, namespace=ent.get("namespace"), pod=ent.get("pod"), actor=ent.get("actor"), key=key, details=details)

    def examples(self) -> dict[str, list[Frames]]:
        return {"positive": list(self.positive), "negative": list(self.negative)}
