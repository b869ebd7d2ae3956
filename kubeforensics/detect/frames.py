"""Preparing case tables for the rules: complete columns, de-duplicated audit stages.

Rules may rely on every canonical table being present (empty when the source is
absent) with every declared column, on a unique ``RangeIndex``, and on the audit
table holding one row per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from kubeforensics.schema import TABLES, audit_request_keys, empty_table, to_arrow

#: Most complete stage first.
STAGE_RANK: dict[str, int] = {"ResponseComplete": 0, "ResponseStarted": 1, "Panic": 2, "RequestReceived": 3}

_EPOCH = pd.Timestamp("2024-01-01T00:00:00Z")


def _coerce(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "ts":
        if isinstance(value, (int,)) and not isinstance(value, bool):
            return value
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.value
    if kind == "json" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    if kind in ("int64", "int32"):
        return int(value)
    if kind == "float64":
        return float(value)
    if kind == "list<str>":
        return [str(v) for v in value]
    if kind in ("str",):
        return str(value)
    return value


def make_frame(table: str, rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """A frame of canonical ``table`` from small row dicts: :func:`make_table` as pandas."""
    return make_table(table, rows).to_pandas()


def make_table(table: str, rows: list[Mapping[str, Any]]) -> pa.Table:
    """An Arrow table of canonical ``table`` from small row dicts (tests, rule examples).

    Missing columns are null; ``time`` defaults to 2024-01-01 plus the row
    number in seconds, ``event_id`` to ``<table>-<n>``.  Timestamps may be ISO
    strings, ``datetime`` or integer nanoseconds; JSON columns may be dicts.

    Raises
    ------
    KeyError
        When a row names a column the table does not declare.
    """
    spec = TABLES[table]
    names = set(spec.names)
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        unknown = set(row) - names
        if unknown:
            raise KeyError(f"table {table!r} has no column(s) {sorted(unknown)}")
        r = {c.name: _coerce(c.type, row.get(c.name)) for c in spec.columns}
        if r["time"] is None:
            r["time"] = (_EPOCH + pd.Timedelta(seconds=i)).value
        if r["event_id"] is None:
            r["event_id"] = f"{table}-{i + 1}"
        out.append(r)
    return to_arrow(spec, out)


def empty_frame(table: str) -> pd.DataFrame:
    """An empty frame with the columns and dtypes of canonical ``table``."""
    return empty_table(TABLES[table]).to_pandas()


def dedup_audit(audit: pd.DataFrame) -> pd.DataFrame:
    """One row per request: keep the most complete stage of each request (``audit_id`` with user, verb and URI).

    The kept row's ``time`` becomes the earliest request time seen for that
    request (``request_time`` when present, else ``time``).  Rows without an
    ``audit_id`` are all kept.  Only the repeated ids are worked on, so a log
    written at one stage costs one ``duplicated`` pass.
    """
    if audit.empty or "audit_id" not in audit:
        return audit
    ids = audit["audit_id"]
    rep = ids.duplicated(keep=False) & ids.notna() & (ids != "")
    if not rep.any():
        return audit
    part = audit[rep.to_numpy()]
    key = audit_request_keys(part)  # one request: audit id, user, verb and URI (schema.AUDIT_REQUEST_KEY)
    rank = part["stage"].map(STAGE_RANK).fillna(9)
    req = part["request_time"].where(part["request_time"].notna(), part["time"]) if "request_time" in part else part["time"]
    earliest = req.groupby(key).transform("min")
    order = part.assign(_key=key, _rank=rank.to_numpy()).sort_values(["_key", "_rank"], kind="stable")
    keep_idx = order.drop_duplicates("_key", keep="first").index
    drop = part.index.difference(keep_idx)
    out = audit.drop(index=drop)
    out.loc[keep_idx, "time"] = earliest.loc[keep_idx]
    return out.reset_index(drop=True)


def prepare(tables: Mapping[str, pd.DataFrame | None]) -> dict[str, pd.DataFrame]:
    """Every canonical table (missing or ``None`` = empty), all columns, a fresh index.

    Unknown table names are kept as given.  The audit table is de-duplicated
    with :func:`dedup_audit`.
    """
    out: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        df = tables.get(name)
        if df is None:
            out[name] = empty_frame(name)
            continue
        df = df.reset_index(drop=True)
        missing = [c for c in TABLES[name].names if c not in df.columns]
        if missing:
            df = df.assign(**{c: None for c in missing})
        out[name] = df
    for name, df in tables.items():
        if name not in out and df is not None:
            out[name] = df
    out["audit"] = dedup_audit(out["audit"])
    return out


def iso(ts: Any) -> str | None:
    """ISO 8601 UTC with a ``Z`` (``None`` for missing)."""
    if ts is None or (not isinstance(ts, datetime) and pd.isna(ts)):
        return None
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
