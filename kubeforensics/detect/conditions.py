"""A small, safe condition language over frame columns (used by YAML rules).

A condition is a mapping, compiled once into a function ``(frame, config) -> bool mask``:

* combinators: ``{all: [c, ...]}``, ``{any: [c, ...]}``, ``{not: c}``;
* a leaf: ``{field: <column>, <op>: <value>[, <op2>: ...]}`` (several ops = all must hold), ops:
  ``equals``, ``in``, ``startswith``, ``endswith``, ``contains`` (a string or a list: any),
  ``regex`` (``re.search``), ``gte``/``gt``/``lte``/``lt`` (numbers), ``isnull`` (true/false;
  an empty list counts as null), ``in_config`` (name of a list in the tuning config; its
  entries are exact values or ``*``/``?`` globs).

On a list column (``user_groups``, ``host_namespaces``, ...) an op holds when any
element satisfies it.  Nothing is ever evaluated as code; unknown columns or ops
are rejected when the rule loads.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kubeforensics.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

Mask = Callable[[pd.DataFrame, "TuningConfig"], pd.Series]

OPS = ("equals", "in", "startswith", "endswith", "contains", "regex", "gte", "gt", "lte", "lt", "isnull", "in_config")

#: Columns computed from others, per table: name -> (source column, function over a Series).
DERIVED: dict[str, dict[str, str]] = {
    "processes": {"binary_name": "binary", "parent_name": "parent_binary", "cmdline": "args", "location": "pod"},
    "flows": {"src_endpoint": "src_ip", "dst_endpoint": "dst_ip"},
}


class ConditionError(ValueError):
    """A condition is malformed; the message names the rule and the part."""


def basename(s: pd.Series) -> pd.Series:
    """Last path component of each value (fast on low-cardinality columns)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    names = np.array([str(u).rsplit("/", 1)[-1] for u in uniques] + [None], dtype=object)
    return pd.Series(names[codes], index=s.index, dtype=object)


def endpoint(df: pd.DataFrame, side: str) -> pd.Series:
    """``ns/pod (ip)`` for pods, ``host (ip)`` for reserved:host, ``world ip`` or the bare IP otherwise."""
    ip = df[f"{side}_ip"].astype(object).where(df[f"{side}_ip"].notna(), "?").astype(str)
    pod = df[f"{side}_pod"].astype(object)
    ns = df[f"{side}_namespace"].astype(object).where(df[f"{side}_namespace"].notna(), "")
    labels = df[f"{side}_labels"].map(lambda v: " ".join(v) if v is not None and not isinstance(v, float) else "")
    out = ip.where(~labels.str.contains("reserved:host", regex=False), "host " + ip)
    out = out.where(~labels.str.contains("reserved:world", regex=False), "external " + ip)
    return out.where(pod.isna(), ns.astype(str) + "/" + pod.astype(str) + " (" + ip + ")").astype(object)


#: Derived columns computed for the whole table before the rules run (cheap, used in conditions);
#: the others are computed only for matching rows, when a summary needs them.
EAGER: dict[str, tuple[str, ...]] = {"processes": ("binary_name", "parent_name")}


def derive(table: str, df: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """``df`` with derived columns of ``table`` added (``names``, default all of :data:`DERIVED`)."""
    wanted = [n for n in (names if names is not None else DERIVED.get(table, {})) if n in DERIVED.get(table, {})]
    wanted = [n for n in wanted if n not in df.columns]
    if not wanted:
        return df
    if df.empty:
        return df.assign(**{c: pd.Series([], dtype=object) for c in wanted})
    new: dict[str, pd.Series] = {}
    for n in wanted:
        if n == "binary_name":
            new[n] = basename(df["binary"])
        elif n == "parent_name":
            new[n] = basename(df["parent_binary"])
        elif n == "cmdline":
            binary = df["binary"].astype(object).where(df["binary"].notna(), "?").astype(str)
            args = df["args"].astype(object).where(df["args"].notna(), "").astype(str)
            new[n] = (binary + " " + args).str.rstrip()
        elif n == "location":
            cid = df["container_id"].astype(object).where(df["container_id"].notna(), "").astype(str).str[:12]
            loc = pd.Series("the host", index=df.index, dtype=object).where(cid == "", "container " + cid)
            pod = df["namespace"].astype(object).fillna("").astype(str) + "/" + df["pod"].astype(object).fillna("").astype(str)
            new[n] = loc.where(df["pod"].isna(), pod)
        elif n in ("src_endpoint", "dst_endpoint"):
            new[n] = endpoint(df, n.split("_")[0])
    return df.assign(**new)


def column(df: pd.DataFrame, table: str, name: str) -> pd.Series:
    """A column of ``df``, computing derived ones (``binary_name``...) on demand and caching them."""
    if name in df.columns:
        return df[name]
    if name not in DERIVED.get(table, {}):
        raise KeyError(name)
    return derive(table, df, [name])[name]


def is_list_column(table: str, name: str) -> bool:
    spec = TABLES.get(table)
    if spec is None or name not in spec.names:
        return False
    return spec.column(name).type == "list<str>"


def globs_regex(patterns: Iterable[Any]) -> str:
    """One anchored regex matching any of the exact values or ``*``/``?`` globs."""
    parts = []
    for p in patterns:
        parts.append("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in str(p)))
    # RE2-compatible (pyarrow evaluates it): no lookarounds, no atomic groups.
    return "^(?:" + "|".join(parts) + ")$" if parts else r"[^\s\S]"


def _text(s: pd.Series) -> pd.Series:
    if s.dtype == object:
        return s.astype("string")
    return s


def _leaf_mask(s: pd.Series, op: str, value: Any, config: TuningConfig) -> pd.Series:
    if op == "isnull":
        return s.isna() == bool(value)
    if op in ("gte", "gt", "lte", "lt"):
        n = pd.to_numeric(s, errors="coerce")
        r = {"gte": n >= value, "gt": n > value, "lte": n <= value, "lt": n < value}[op]
        return r.fillna(False).astype(bool)
    if op == "in_config":
        values = config.list(value)
        if s.dtype != object and not pd.api.types.is_string_dtype(s):
            nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            return s.isin(nums)
        return _text(s).str.match(globs_regex(values), na=False).astype(bool)
    if op == "equals":
        return (s == value).fillna(False).astype(bool) if len(s) else pd.Series([], dtype=bool)
    if op == "in":
        return s.isin(list(value))
    t = _text(s)
    vals = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if op == "startswith":
        return t.str.startswith(vals, na=False).astype(bool)
    if op == "endswith":
        return t.str.endswith(vals, na=False).astype(bool)
    if op == "contains":
        if len(vals) == 1:
            return t.str.contains(vals[0], regex=False, na=False).astype(bool)
        return t.str.contains("|".join(re.escape(v) for v in vals), regex=True, na=False).astype(bool)
    if op == "regex":
        with warnings.catch_warnings():  # pandas warns about capture groups; we only want the match
            warnings.simplefilter("ignore", UserWarning)
            return t.str.contains(value, regex=True, na=False).astype(bool)
    raise ConditionError(f"unknown op {op!r}")


def _list_mask(s: pd.Series, op: str, value: Any, config: TuningConfig) -> pd.Series:
    empty = s.map(lambda v: v is None or (not isinstance(v, str) and not hasattr(v, "__len__")) or len(v) == 0)
    if op == "isnull":
        return empty == bool(value)
    ex = s[~empty].explode()
    if ex.empty:
        return pd.Series(False, index=s.index)
    m = _leaf_mask(ex.astype(object), op, value, config)
    hit = m.groupby(level=0).any()
    return hit.reindex(s.index, fill_value=False).astype(bool)


def compile_condition(cond: Any, table: str, where: str = "condition") -> tuple[Mask, set[str]]:
    """Compile ``cond`` for ``table``; returns the mask function and the columns it reads.

    Raises
    ------
    ConditionError
        On an unknown column, op or combinator, or a malformed value.
    """
    if not isinstance(cond, Mapping) or not cond:
        raise ConditionError(f"{where}: expected a mapping, got {cond!r}")
    if "all" in cond or "any" in cond:
        key = "all" if "all" in cond else "any"
        if len(cond) != 1 or not isinstance(cond[key], list) or not cond[key]:
            raise ConditionError(f"{where}: '{key}' takes a non-empty list and nothing beside it")
        parts = [compile_condition(c, table, f"{where}.{key}[{i}]") for i, c in enumerate(cond[key])]
        fields = set().union(*(f for _, f in parts))
        fns = [f for f, _ in parts]
        if key == "all":

            def all_(df: pd.DataFrame, cfg: TuningConfig) -> pd.Series:
                m = pd.Series(True, index=df.index)
                for fn in fns:
                    if not m.any():
                        break
                    sub = df[m] if not m.all() else df
                    r = fn(sub, cfg)
                    m = m & r.reindex(df.index, fill_value=False)
                return m

            return all_, fields

        def any_(df: pd.DataFrame, cfg: TuningConfig) -> pd.Series:
            m = pd.Series(False, index=df.index)
            for fn in fns:
                m = m | fn(df, cfg)
            return m

        return any_, fields
    if "not" in cond:
        if len(cond) != 1:
            raise ConditionError(f"{where}: 'not' takes one condition and nothing beside it")
        fn, fields = compile_condition(cond["not"], table, f"{where}.not")
        return (lambda df, cfg: ~fn(df, cfg)), fields
    name = cond.get("field")
    known = set(TABLES[table].names) | set(DERIVED.get(table, {}))
    if name not in known:
        raise ConditionError(f"{where}: table {table!r} has no column {name!r}")
    ops = [(k, v) for k, v in cond.items() if k != "field"]
    if not ops:
        raise ConditionError(f"{where}: no operator for field {name!r} (use one of {', '.join(OPS)})")
    for op, v in ops:
        if op not in OPS:
            raise ConditionError(f"{where}: unknown operator {op!r} (use one of {', '.join(OPS)})")
        if op == "in" and not isinstance(v, list):
            raise ConditionError(f"{where}: 'in' takes a list")
        if op == "regex":
            try:
                re.compile(v)
            except re.error as exc:
                raise ConditionError(f"{where}: bad regex {v!r}: {exc}") from exc
        if op in ("gte", "gt", "lte", "lt") and not isinstance(v, (int, float)):
            raise ConditionError(f"{where}: {op!r} takes a number")
    listy = is_list_column(table, name)
    fields = {name if name in TABLES[table].names else DERIVED[table][name]}

    def leaf(df: pd.DataFrame, cfg: TuningConfig) -> pd.Series:
        if df.empty:
            return pd.Series([], index=df.index, dtype=bool)
        s = column(df, table, name)
        m = pd.Series(True, index=df.index)
        for op, v in ops:
            m &= (_list_mask if listy else _leaf_mask)(s, op, v, cfg)
        return m

    return leaf, fields
