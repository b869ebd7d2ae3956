"""Declarative single-source rules, loaded from YAML (``yaml.safe_load`` only, never eval).

A rule file holds ``rules: [...]``; each rule::

    id, title, description, severity, techniques: [T....], tactic, source: <table>,
    false_positives, condition: <see kubeforensics.detect.conditions>,
    allow: {<column or "col_a/col_b">: [<tuning list>, ...]}   # hits matching are dropped
    entity: {namespace: <col>, pod: <col>, actor: <col>}        # defaults per source
    key: [<col>, ...]                                           # grouping (default: entity)
    summary: "{user} exec'd `{exec_command}` in {namespace}/{name}"   # {column} placeholders
    tests: {positive: [<row or {rows: [...]}>, ...], negative: [...]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kubeforensics.detect.conditions import (
    DERIVED,
    ConditionError,
    Mask,
    column,
    compile_condition,
    derive,
    globs_regex,
)
from kubeforensics.detect.model import HIT_COLUMNS, RuleMeta, Severity, empty_hits
from kubeforensics.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

DEFAULT_ENTITY: dict[str, dict[str, str]] = {
    "audit": {"namespace": "namespace", "actor": "user"},
    "processes": {"namespace": "namespace", "pod": "pod", "actor": "binary"},
    "flows": {"namespace": "src_namespace", "pod": "src_pod", "actor": "src_ip"},
    "alerts": {"namespace": "namespace", "pod": "pod", "actor": "proc_name"},
    "k8s_events": {"namespace": "namespace", "pod": "name", "actor": "component"},
    "objects": {"namespace": "namespace", "pod": "name"},
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
MAX_VALUE_CHARS = 160
REQUIRED = ("id", "title", "description", "severity", "techniques", "tactic", "source", "condition", "summary")


def _text(v: Any) -> str:
    if v is None:
        return "?"
    if isinstance(v, (list, tuple, np.ndarray)):
        s = ",".join(str(x) for x in v) or "?"
    elif isinstance(v, str):
        s = v
    elif pd.isna(v):
        return "?"
    elif isinstance(v, float) and v.is_integer():
        s = str(int(v))
    else:
        s = str(v)
    return s if len(s) <= MAX_VALUE_CHARS else s[: MAX_VALUE_CHARS - 1] + "…"


def render(template: str, row: Mapping[str, Any]) -> str:
    """Fill ``{column}`` placeholders from ``row`` (null -> ``?``; long values truncated)."""

    def one(m: re.Match[str]) -> str:
        return _text(row.get(m.group(1)))

    return _PLACEHOLDER.sub(one, template)


def hits_frame(
    df: pd.DataFrame,
    *,
    namespace: pd.Series | None,
    pod: pd.Series | None,
    actor: pd.Series | None,
    key: pd.Series,
    details: Mapping[Any, str] | pd.Series,
) -> pd.DataFrame:
    """Assemble a hit frame for the matching rows ``df`` (same index for every series)."""
    none = pd.Series([None] * len(df), index=df.index, dtype=object)
    out = pd.DataFrame(
        {
            "time": df["time"],
            "event_id": df["event_id"].astype(object),
            "namespace": (namespace if namespace is not None else none).astype(object),
            "pod": (pod if pod is not None else none).astype(object),
            "actor": (actor if actor is not None else none).astype(object),
            "key": key.astype(str),
            "detail": pd.Series(details, dtype=object).reindex(df.index) if len(df) else none,
        },
        index=df.index,
    )
    return out[list(HIT_COLUMNS)].reset_index(drop=True)


def _condition_columns(cond: Any) -> set[str]:
    if isinstance(cond, Mapping):
        out = {cond["field"]} if "field" in cond else set()
        for k in ("all", "any"):
            for c in cond.get(k, []) or []:
                out |= _condition_columns(c)
        if "not" in cond:
            out |= _condition_columns(cond["not"])
        return out
    return set()


@dataclass
class YamlRule:
    """A declarative rule over one canonical table."""

    meta: RuleMeta
    table: str
    mask: Mask
    summary: str
    entity: dict[str, str]
    key: tuple[str, ...]
    allow: dict[str, list[str]]
    tests: dict[str, list[Any]] = field(default_factory=dict)
    reads: tuple[str, ...] = ()  # condition columns (derived ones included)
    condition: Any = None  # the condition as written (translated to SQL by kubeforensics.detect.pushdown)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], where: str) -> YamlRule:
        """Build and validate one rule; raises ``ConditionError`` naming ``where`` and the rule id."""
        rid = d.get("id", "?")
        loc = f"{where}: rule {rid}"
        missing = [k for k in REQUIRED if not d.get(k)]
        if missing:
            raise ConditionError(f"{loc}: missing {', '.join(missing)}")
        table = d["source"]
        if table not in TABLES:
            raise ConditionError(f"{loc}: unknown source {table!r} (use one of {', '.join(TABLES)})")
        known = set(TABLES[table].names) | set(DERIVED.get(table, {}))
        mask, fields = compile_condition(d["condition"], table, f"{loc}: condition")
        entity = dict(DEFAULT_ENTITY[table])
        entity.update(d.get("entity") or {})
        key = tuple(d.get("key") or [c for c in entity.values()])
        allow = {k: list(v) for k, v in (d.get("allow") or {}).items()}
        used = set(entity.values()) | set(key) | set(_PLACEHOLDER.findall(d["summary"]))
        used |= {c for k in allow for c in k.split("/")}
        bad = sorted(c for c in used if c not in known)
        if bad:
            raise ConditionError(f"{loc}: table {table!r} has no column(s) {bad}")
        techniques = tuple(str(t) for t in d["techniques"])
        if not all(re.fullmatch(r"(T\d{4}(\.\d{3})?|MS-TA\d{4})", t) for t in techniques):
            raise ConditionError(f"{loc}: techniques must be ATT&CK ids like T1609 or T1552.007, got {techniques}")
        try:
            sev = Severity.parse(d["severity"])
        except ValueError as exc:
            raise ConditionError(f"{loc}: {exc}") from exc
        meta = RuleMeta(
            id=str(rid),
            title=str(d["title"]),
            description=str(d["description"]).strip(),
            severity=sev,
            techniques=techniques,
            tactic=str(d["tactic"]),
            sources=(table,),
            fields=tuple(sorted(f"{table}.{c}" for c in fields | (used & set(TABLES[table].names)))),
            false_positives=str(d.get("false_positives") or "").strip(),
            origin=where,
        )
        cond_cols = tuple(sorted(_condition_columns(d["condition"])))
        return cls(meta, table, mask, str(d["summary"]), entity, key, allow, dict(d.get("tests") or {}), cond_cols, d["condition"])

    def evaluate(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        """Hits of this rule in ``tables[self.table]``."""
        df = tables.get(self.table)
        if df is None or df.empty:
            return empty_hits()
        narrow = df[[c for c in self.reads if c in df.columns]]  # masks copy only the columns they read
        m = self.mask(narrow, config)
        if not m.any():
            return empty_hits()
        sub = df[m.to_numpy()]
        for cols, lists in self.allow.items():
            parts = [column(sub, self.table, c).astype(object).where(lambda s: s.notna(), "") for c in cols.split("/")]
            joined = parts[0].astype(str)
            for p in parts[1:]:
                joined = joined + "/" + p.astype(str)
            patterns = [p for name in lists for p in config.list(name)]
            sub = sub[~joined.str.match(globs_regex(patterns), na=False).to_numpy()]
        if sub.empty:
            return empty_hits()
        sub = derive(self.table, sub)  # summary-only derived columns, for the matching rows only
        key_parts = [column(sub, self.table, c).astype(object).where(lambda s: s.notna(), "").astype(str) for c in self.key]
        key = key_parts[0]
        for p in key_parts[1:]:
            key = key + "\x1f" + p
        first = sub.assign(_k=key.to_numpy()).sort_values("time", kind="stable").drop_duplicates("_k")
        details = {i: render(self.summary, row) for i, row in zip(first.index, first.to_dict("records"))}
        ent = {k: column(sub, self.table, c) for k, c in self.entity.items()}
        return hits_frame(sub, namespace=ent.get("namespace"), pod=ent.get("pod"), actor=ent.get("actor"), key=key, details=details)

    def examples(self) -> dict[str, list[dict[str, list[dict[str, Any]]]]]:
        """Test cases from the YAML: each case is a frames dict over this rule's table."""

        def frames(case: Any) -> dict[str, list[dict[str, Any]]]:
            if isinstance(case, Mapping) and "rows" in case:
                return {self.table: list(case["rows"])}
            return {self.table: [dict(case)]}

        return {k: [frames(c) for c in self.tests.get(k, [])] for k in ("positive", "negative")}
