"""Detection over a case on disk: each rule reads only the rows and columns it can use.

:func:`run_rules` needs every table in memory, which at tens of millions of events
is more than a laptop has.  :func:`case_findings` gives the same findings while
holding one narrow slice at a time:

* every declarative (YAML) rule's condition is translated into a DuckDB ``WHERE``
  (:func:`condition_sql`) that lets through at least the rows the condition
  matches; the rules over one table are read together (the ``OR`` of their
  conditions, the union of the columns they name) and the rule itself then runs
  on that slice, so the translation only has to be wide enough, never exact;
* every Python rule declares what it reads (:class:`~kubeforensics.detect.pyrule.Load`:
  columns and a condition, possibly an aggregate sub-query) and gets exactly that;
* the audit table's stages are merged as the case's queries merge them, by a
  window over only the requests logged at several stages
  (:meth:`~kubeforensics.case.query.CaseQuery.whole_sql`).

Each condition is translated twice, into a ``pos`` condition (at least the rows
that match) and a ``neg`` one (at least the rows that do not: what ``not`` takes).
Translated exactly: ``equals``, ``in``, ``startswith``, ``endswith``, ``contains``,
``isnull`` and numeric comparisons, on plain and list columns and on
``binary_name``/``parent_name``.  ``regex`` and ``in_config`` (globs as regular
expressions) run in RE2, which agrees with Python's ``re`` on printable ASCII
text; any other text (Unicode digits and spaces, case folding, a newline before
which Python's ``$`` matches) passes both ``pos`` and ``neg`` so the rule decides
in Python.  Patterns with Python-only syntax (look-arounds, back-references) or
that RE2 refuses, the other derived columns and values whose type does not match
the column are left out: that widens an ``all``, and an ``any`` over them reads
every row.  A rule that fails on its slice (a column it did not
declare) is run again on the whole table with every column, logged.

Sigma rules read the whole audit table.  Memory: the largest slice, not the case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.detect.conditions import DERIVED, EAGER, derive, globs_regex, is_list_column
from kubeforensics.detect.declarative import _PLACEHOLDER, YamlRule
from kubeforensics.detect.engine import evaluate_rule, finish, selected_rules
from kubeforensics.detect.frames import empty_frame
from kubeforensics.detect.model import Rule
from kubeforensics.detect.pyrule import Load, PyRule, basename_sql, sql_in, sql_literal
from kubeforensics.detect.sigma import columns_read
from kubeforensics.detect.tuning import TuningConfig
from kubeforensics.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.case.query import CaseQuery

log = logging.getLogger(__name__)

#: ``(pos, neg)``: conditions letting through at least the rows that match (``pos``) and at least
#: the rows that do not (``neg``); None means "every row".
Pred = tuple[str | None, str | None]
ANY: Pred = (None, None)

#: Base columns each derived column is computed from.
DERIVED_FROM: dict[str, dict[str, tuple[str, ...]]] = {
    "processes": {"binary_name": ("binary",), "parent_name": ("parent_binary",), "cmdline": ("binary", "args"),
                  "location": ("container_id", "namespace", "pod")},
    "flows": {f"{side}_endpoint": (f"{side}_ip", f"{side}_pod", f"{side}_namespace", f"{side}_labels")
              for side in ("src", "dst")},
}
_SQL_EXPR = {"binary_name": basename_sql("binary"), "parent_name": basename_sql("parent_binary")}
_TEXT_TYPES = ("str", "json")
_NUM_TYPES = ("int64", "int32", "float64")
#: Text on which Python ``re`` and RE2 agree for the patterns we pass (printable ASCII, tab, CR):
#: no Unicode digits/spaces/case folding, no newline before which Python's ``$`` also matches.
_SAFE_TEXT = "[\\t\\r -~]*"
#: Python-only regex syntax, or syntax RE2 reads differently: such a pattern is not translated.
_PY_ONLY = re.compile(r"\(\?[=!<]|\(\?\(|\\[1-9]|\(\?P=|\\Z|\{,|[*+?}][+]")


class Frames(dict[str, pd.DataFrame]):
    """Table slices handed to the rules, with the full tables' row counts (``full_rows``)."""

    full_rows: dict[str, int]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _all(sqls: Iterable[str | None]) -> str | None:
    known = [p for p in sqls if p is not None]
    return "(" + " AND ".join(known) + ")" if known else None


def _any(sqls: Iterable[str | None]) -> str | None:
    parts = list(sqls)
    if not parts or any(p is None for p in parts):
        return None
    return "(" + " OR ".join(p for p in parts if p is not None) + ")"


def _exact(sql: str) -> Pred:
    """A never-NULL condition that is exactly the predicate."""
    return sql, f"(NOT {sql})"


def _value_ok(kind: str, value: Any) -> bool:
    if kind in _TEXT_TYPES or kind == "list<str>":
        return isinstance(value, str)
    if kind in _NUM_TYPES:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return False


@cache
def _re2_ok(pattern: str) -> bool:
    if _PY_ONLY.search(pattern):
        return False
    import duckdb

    try:
        duckdb.connect().execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
    except duckdb.Error:
        return False
    return True


def _regex(x: str, pattern: str) -> Pred:
    """``re.search(pattern, x)`` (pandas ``str.contains``): RE2 decides on safe text, the rest goes through."""
    if not _re2_ok(pattern):
        return ANY
    unsafe = f"NOT regexp_full_match({x}, '{_SAFE_TEXT}')"
    hit = f"regexp_matches({x}, {sql_literal(pattern)})"
    return f"coalesce({hit} OR {unsafe}, FALSE)", f"coalesce(NOT {hit} OR {unsafe}, TRUE)"


def _op(x: str, kind: str, op: str, value: Any, config: TuningConfig) -> Pred:
    """One op on the scalar expression ``x`` of type ``kind``."""
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if op in ("gte", "gt", "lte", "lt"):
        if kind not in _NUM_TYPES:
            return ANY
        sym = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[op]
        return _exact(f"coalesce({x} {sym} {sql_literal(value)}, FALSE)")
    if op == "in_config":
        values = config.list(value)
        if kind in _NUM_TYPES:
            return _exact(f"coalesce({sql_in(x, [v for v in values if _value_ok(kind, v)])}, FALSE)")
        return _regex(x, globs_regex(values)) if kind in _TEXT_TYPES else ANY
    if op in ("equals", "in"):
        vals = vals if op == "in" else [value]
        if not vals or not all(_value_ok(kind, v) for v in vals):
            return ANY
        return _exact(f"coalesce({sql_in(x, vals)}, FALSE)")
    if kind not in _TEXT_TYPES or not all(isinstance(v, str) for v in vals):
        return ANY
    if op == "regex":
        return _regex(x, str(value))
    fn = {"startswith": "starts_with", "endswith": "ends_with", "contains": "contains"}[op]
    return _exact("coalesce(" + " OR ".join(f"{fn}({x}, {sql_literal(v)})" for v in vals) + ", FALSE)")


def _leaf(cond: Mapping[str, Any], table: str, config: TuningConfig) -> Pred:
    name = cond["field"]
    spec = TABLES[table]
    if name in spec.names:
        expr, kind = _ident(name), spec.column(name).type
    elif name in _SQL_EXPR and name in DERIVED.get(table, {}):
        expr, kind = _SQL_EXPR[name], "str"
    else:
        return ANY
    listy = is_list_column(table, name)
    parts: list[Pred] = []
    for op, value in cond.items():
        if op == "field":
            continue
        if op == "isnull":
            null = f"({expr} IS NULL OR len({expr}) = 0)" if listy else f"({expr} IS NULL)"
            parts.append(_exact(null if value else f"(NOT {null})"))
        elif listy:  # any element: the element's own translation, inside list_filter
            pos, neg = _op("x", "str", op, value, config)
            some = f"coalesce(len(list_filter({expr}, lambda x: {pos})) > 0, FALSE)" if pos else None
            if pos is not None and neg is not None and neg == f"(NOT {pos})":
                parts.append(_exact(some or "TRUE"))
            else:
                parts.append((some, None))
        else:
            parts.append(_op(expr, kind, op, value, config))
    return _all(p for p, _ in parts), _any(n for _, n in parts)


def condition_sql(cond: Any, table: str, config: TuningConfig) -> Pred:
    """Conditions letting through at least the rows ``cond`` matches (``pos``) and at least the rows it
    does not (``neg``; what ``not`` uses); None = every row.  See the module doc."""
    if "all" in cond:
        parts = [condition_sql(c, table, config) for c in cond["all"]]
        return _all(p for p, _ in parts), _any(n for _, n in parts)
    if "any" in cond:
        parts = [condition_sql(c, table, config) for c in cond["any"]]
        return _any(p for p, _ in parts), _all(n for _, n in parts)
    if "not" in cond:
        pos, neg = condition_sql(cond["not"], table, config)
        return neg, pos
    return _leaf(cond, table, config)


def _base_columns(table: str, names: Iterable[str]) -> set[str]:
    spec = TABLES[table]
    out: set[str] = set()
    for n in names:
        if n in spec.names:
            out.add(n)
        out.update(DERIVED_FROM.get(table, {}).get(n, ()))
    return out


def _yaml_load(rule: YamlRule, config: TuningConfig) -> Load:
    names = set(rule.reads) | set(rule.entity.values()) | set(rule.key) | set(_PLACEHOLDER.findall(rule.summary))
    names |= {c for k in rule.allow for c in k.split("/")}
    names |= set(DERIVED_FROM.get(rule.table, {}))  # the rule derives them all for its summary
    return Load(tuple(sorted(_base_columns(rule.table, names))), condition_sql(rule.condition, rule.table, config)[0])


def _py_loads(rule: PyRule, config: TuningConfig) -> dict[str, Load]:
    out = {}
    extra = set(_PLACEHOLDER.findall(rule.summary)) | set(rule.entity.values()) | set(rule.key)
    for table, load in rule.plan(config).items():
        if load.distinct:
            out[table] = load
            continue
        cols = list(load.columns) + sorted(_base_columns(table, extra) - set(load.columns))
        out[table] = Load(tuple(cols), load.where)
    return out


def plan(rules: Sequence[Rule], config: TuningConfig) -> list[tuple[list[Rule], dict[str, Load] | None]]:
    """Groups of rules and what they read: the YAML rules of one table share one read;
    each Python rule has its own; ``None`` means "every table, every column" (Sigma rules, others)."""
    by_table: dict[str, list[YamlRule]] = {}
    groups: list[tuple[list[Rule], dict[str, Load] | None]] = []
    whole: list[Rule] = []
    sigma: list[Rule] = []
    for r in rules:
        if isinstance(r, YamlRule):
            by_table.setdefault(r.table, []).append(r)
        elif isinstance(r, PyRule) and r.plan(config):
            groups.append(([r], _py_loads(r, config)))
        elif r.meta.sources == ("audit",) and not isinstance(r, PyRule):  # Sigma: the audit table
            sigma.append(r)
        else:
            whole.append(r)
    if sigma:  # one read for them all, of the columns they read (every column if one may read others)
        read = columns_read(sigma) or tuple(TABLES["audit"].names)
        groups.append((sigma, {"audit": Load(read)}))
    for table, rs in by_table.items():
        loads = [_yaml_load(r, config) for r in rs]
        cols = sorted(set().union(*(set(ld.columns) for ld in loads)))
        where = None if any(ld.where is None for ld in loads) else " OR ".join(f"({ld.where})" for ld in loads)
        groups.insert(0, (list(rs), {table: Load(tuple(cols), where)}))
    if whole:
        groups.append((whole, None))
    return groups


def _name(col: str) -> str:
    m = re.search(r"\s+AS\s+(\w+)\s*$", col, flags=re.IGNORECASE)
    return m.group(1) if m else col


class _Reader:
    """Reads slices of one case's tables (audit de-duplicated by stage, as the case's queries do)."""

    def __init__(self, query: CaseQuery) -> None:
        self.q = query
        self.full_rows = {t: query.count(t) for t in TABLES}
        self.sources = {t: query.source(t) for t in TABLES}
        if self.full_rows.get("audit"):
            # Stages merged by a window over only the requests logged at several stages.
            self.sources["audit"] = query.whole_sql("audit", [])

    def read(self, table: str, load: Load | None) -> pd.DataFrame:
        from kubeforensics.case.query import arrow_to_frame

        spec = TABLES[table]
        if not self.full_rows.get(table):
            return empty_frame(table)
        src = self.sources[table]
        if load is None:
            sql = f"SELECT * FROM {src} ORDER BY time, event_id"
        else:
            cols = [c if _name(c) != c else _ident(c) for c in load.columns]
            if not load.distinct:
                cols = [_ident(c) for c in ("time", "event_id") if c not in load.columns] + cols
                if table == "processes":
                    cols += [_ident(c) for c in ("binary", "parent_binary") if c not in load.columns]
            where = (load.where or "TRUE").replace("{audit}", self.sources["audit"])
            sql = f"SELECT {'DISTINCT ' if load.distinct else ''}{', '.join(cols)} FROM {src} WHERE {where}"
            if not load.distinct:
                sql += " ORDER BY time, event_id"
        df = arrow_to_frame(self.q.arrow(sql), spec)
        if table in EAGER and "binary" in df.columns and "parent_binary" in df.columns:
            df = derive(table, df, EAGER[table])
        return df

    def frames(self, loads: Mapping[str, Load] | None) -> Frames:
        out = Frames()
        out.full_rows = self.full_rows
        for t in TABLES:
            out[t] = self.read(t, None if loads is None else loads[t]) if loads is None or t in loads else empty_frame(t)
        return out


def case_findings(
    query: CaseQuery,
    *,
    rules: Iterable[Rule | str] | Mapping[str, Rule] | None = None,
    sigma: str | Path | None = None,
    config: TuningConfig | None = None,
) -> pd.DataFrame:
    """The findings :func:`~kubeforensics.detect.engine.run_rules` gives for the case's tables,
    reading one slice at a time from storage (see the module doc)."""
    cfg = config or TuningConfig.defaults()
    selected = selected_rules(rules, sigma, cfg)
    groups = plan(selected, cfg)
    errors: dict[str, str] = {}
    parts: list[pd.DataFrame] = []
    reader = _Reader(query)
    for rs, loads in groups:
        frames = reader.frames(loads)
        for rule in rs:
            errs: dict[str, str] = {}
            found = evaluate_rule(rule, frames, cfg, errs)
            if errs and loads is not None:
                log.warning("rule %s failed on its slice (%s); running it on the whole tables",
                            rule.meta.id, errs[rule.meta.id])
                errs = {}
                found = evaluate_rule(rule, reader.frames(None), cfg, errs)
            errors.update(errs)
            parts.append(found)
        del frames
    return finish(parts, errors)
