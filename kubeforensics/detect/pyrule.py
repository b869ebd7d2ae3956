"""Base for rules written in Python (correlations and statistics over one or more tables)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from kubeforensics.detect.conditions import DERIVED, derive
from kubeforensics.detect.declarative import _PLACEHOLDER, hits_frame, render
from kubeforensics.detect.model import RuleMeta, Severity, empty_hits

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

Frames = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Load:
    """What a Python rule reads of one table when the case pushes detection down to storage
    (:mod:`kubeforensics.detect.pushdown`).

    ``columns``: column names, or ``"<SQL expression> AS <name>"`` to narrow a wide column to
    the rows that use it.  ``where``: a DuckDB condition every row :meth:`PyRule.find` can use
    satisfies (it may let more rows through, never fewer); None reads every row.  ``distinct``:
    the rule only needs the distinct values of ``columns`` (no ``time``/``event_id`` added).
    The columns the summary, entity and key name are added automatically.
    """

    columns: tuple[str, ...] = ()
    where: str | None = None
    distinct: bool = False


def sql_literal(value: Any) -> str:
    """A DuckDB literal for a string, number or boolean (strings quoted, quotes doubled)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def sql_in(expr: str, values: Any) -> str:
    """``expr IN (...)`` over literal values (FALSE for none)."""
    vals = list(values)
    return f"{expr} IN ({', '.join(sql_literal(v) for v in vals)})" if vals else "FALSE"


def basename_sql(column: str) -> str:
    """The SQL of :func:`kubeforensics.detect.conditions.basename`: the last path component."""
    return f"regexp_extract(\"{column}\", '[^/]*$')"


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
    #: Per table, what :meth:`find` reads (see :class:`Load`); tables not named are not read.
    loads: ClassVar[dict[str, Load]] = {}

    def plan(self, config: TuningConfig) -> dict[str, Load]:
        """The :class:`Load` of each table this rule reads (override when it depends on the tuning)."""
        return dict(self.loads)

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

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        raise NotImplementedError

    def evaluate(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        """Hits: the rows :meth:`find` returns, keyed by :attr:`key` (default: the entity columns)."""
        # A pushed-down run hands over only the rows find() can use: whether a source has data
        # at all is then told by the full tables' row counts.
        sizes: Mapping[str, int] | None = getattr(tables, "full_rows", None)

        def empty(s: str) -> bool:
            if sizes is not None:
                return not sizes.get(s, 0)
            return tables.get(s) is None or tables[s].empty

        if any(empty(s) for s in (self.requires or self.sources)):
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
