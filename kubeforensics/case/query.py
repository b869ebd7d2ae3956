"""Queries over a case's Parquet tables, with filters pushed down to DuckDB.

Why DuckDB: it scans Parquet with projection and predicate push-down (row
groups whose time statistics fall outside the window are skipped), runs
window functions for audit stage de-duplication and the unified timeline's
UNION ALL in one vectorised plan, uses both cores, and returns Arrow/pandas
without copies.  pyarrow datasets push down simple filters too, but not the
OR-across-columns entity filters, window functions and string building the
timeline needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from kubeforensics.schema import AUDIT_REQUEST_KEY, TABLES, TableSpec

#: Which columns each entity filter looks at, per table (OR across the columns).
FILTER_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "audit": {
        "namespace": ("namespace",),
        "pod": ("sa_pod_name",),  # plus name when resource = pods: see _pod_clause
        "node": ("pod_node_name", "sa_node_name"),
        "ip": ("source_ip",),
        "user": ("user", "impersonated_user"),
    },
    "processes": {
        "namespace": ("namespace",),
        "pod": ("pod",),
        "node": ("node",),
        "ip": ("saddr", "daddr"),
    },
    "flows": {
        "namespace": ("src_namespace", "dst_namespace"),
        "pod": ("src_pod", "dst_pod"),
        "node": ("node",),
        "ip": ("src_ip", "dst_ip"),
    },
    "flow_aux": {"node": ("node",)},
    "alerts": {
        "namespace": ("namespace", "ka_namespace"),
        "pod": ("pod",),
        "node": ("hostname",),
        "user": ("user_name", "ka_user"),
    },
    "k8s_events": {"namespace": ("namespace",), "pod": ("name",), "node": ("host",)},
    "objects": {"namespace": ("namespace",), "pod": ("name",), "node": ("node",), "ip": ("pod_ip", "host_ip")},
}

#: DuckDB's memory for one case's queries (window functions and sorts spill beyond it);
#: ``KUBEFORENSICS_DUCKDB_MEMORY`` overrides (e.g. ``4GB``).
MEMORY_LIMIT = os.environ.get("KUBEFORENSICS_DUCKDB_MEMORY", "2GB")

#: One API request (``schema.AUDIT_REQUEST_KEY``; a row without an audit id is a request of its own): the
#: stages of a request share it; records that share only the audit id stay apart.
REQUEST_KEY = ", ".join(["coalesce(audit_id, event_id)", *(f"coalesce(\"{c}\", '')" for c in AUDIT_REQUEST_KEY[1:])])
STAGE_RANK = "CASE stage WHEN 'ResponseComplete' THEN 4 WHEN 'Panic' THEN 3 WHEN 'ResponseStarted' THEN 2 WHEN 'RequestReceived' THEN 1 ELSE 0 END"


@dataclass(frozen=True)
class Filters:
    """A time window and entity filters; ``None`` means no filter."""

    since: datetime | str | None = None
    until: datetime | str | None = None
    namespace: str | None = None
    pod: str | None = None
    node: str | None = None
    ip: str | None = None
    user: str | None = None

    def where(self, table: str, params: list[Any]) -> str:
        clauses: list[str] = []
        if self.since is not None:
            clauses.append("time >= ?::TIMESTAMPTZ")
            params.append(_ts_param(self.since))
        if self.until is not None:
            clauses.append("time < ?::TIMESTAMPTZ")
            params.append(_ts_param(self.until))
        cols = FILTER_COLUMNS.get(table, {})
        for key in ("namespace", "pod", "node", "ip", "user"):
            value = getattr(self, key)
            if value is None:
                continue
            targets = list(cols.get(key, ()))
            if table == "audit" and key == "pod":
                ors = ["(resource = 'pods' AND name = ?)"] + [f"{c} = ?" for c in targets]
                params.extend([value] * len(ors))
                clauses.append("(" + " OR ".join(ors) + ")")
                continue
            if not targets:
                clauses.append("FALSE")  # the table has no such entity: nothing matches
                continue
            clauses.append("(" + " OR ".join(f"{c} = ?" for c in targets) + ")")
            params.extend([value] * len(targets))
        return " AND ".join(clauses) if clauses else "TRUE"


def _ts_param(value: datetime | str) -> str:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").isoformat()


class CaseQuery:
    """DuckDB access to the tables of one case directory."""

    def __init__(self, tables_dir: Path) -> None:
        self.tables_dir = tables_dir
        self._con: duckdb.DuckDBPyConnection | None = None
        self._spill: str | None = None
        self._repeated_of: tuple[Any, ...] | None = None  # the audit files _kf_repeated was built from

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection: UTC, no progress bar, memory capped at :data:`MEMORY_LIMIT` with spilling
        to a private temporary folder (an in-memory database would spill into ``./.tmp``), made
        only when needed."""
        if self._con is None:
            # DuckDB creates this folder when it first spills and removes it when the connection closes.
            self._spill = os.path.join(tempfile.gettempdir(), f"kf-duckdb-{os.getpid()}-{uuid.uuid4().hex[:12]}")
            self._con = duckdb.connect(":memory:")
            self._con.execute("SET TimeZone = 'UTC'")
            self._con.execute("SET enable_progress_bar = false")
            self._con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            self._con.execute("SET temp_directory = ?", [self._spill])
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._repeated_of = None
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing left to clean up with
            self.close()

    def has(self, table: str) -> bool:
        d = self.tables_dir / table
        return d.is_dir() and any(d.glob("*.parquet"))

    def source(self, table: str) -> str:
        """A FROM-clause expression for a table (an empty typed relation when it has no data)."""
        spec = TABLES[table]
        if self.has(table):
            glob = (self.tables_dir / table / "*.parquet").as_posix().replace("'", "''")
            return f"read_parquet('{glob}', union_by_name = true)"
        cols = ", ".join(f"NULL::{_duck_type(spec, c.name)} AS {c.name}" for c in spec.columns)
        return f"(SELECT {cols} WHERE FALSE)"

    def relation_sql(self, table: str, filters: Filters, params: list[Any], columns: Sequence[str] | None = None,
                     *, source: str | None = None) -> str:
        """SQL for a filtered table; audit stages of one request are merged (most complete stage wins)."""
        cols = ", ".join(columns) if columns else "*"
        where = filters.where(table, params)
        if table == "audit":
            return (
                f"SELECT {cols} FROM (SELECT * REPLACE (min(time) OVER w AS time), "
                f"count(*) OVER w AS stages FROM {source or self.source(table)} WHERE {where} "
                f"WINDOW w AS (PARTITION BY {REQUEST_KEY}) "
                f"QUALIFY row_number() OVER (PARTITION BY {REQUEST_KEY} "
                f"ORDER BY {STAGE_RANK} DESC, line, event_id) = 1)"
            )
        return f"SELECT {cols} FROM {self.source(table)} WHERE {where}"

    def frame(
        self,
        table: str,
        filters: Filters = Filters(),
        *,
        columns: Sequence[str] | None = None,
        order: bool = True,
        limit: int | None = None,
    ) -> pd.DataFrame:
        params: list[Any] = []
        sql = self.relation_sql(table, filters, params, columns)
        if order:
            sql += " ORDER BY time, event_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.to_frame(sql, params, TABLES[table])

    def whole_sql(self, table: str, params: list[Any]) -> str:
        """The whole table as :meth:`relation_sql` gives it, for scans of every row: audit stages are
        merged by a window over only the requests logged at several stages (kept in the temporary
        table ``_kf_repeated``, built once per set of audit files), not over every row and column."""
        if table != "audit" or not self.has("audit"):
            return f"({self.relation_sql(table, Filters(), params)})"
        src = self.source("audit")
        files = tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                             for f in (self.tables_dir / "audit").glob("*.parquet")))
        if files != self._repeated_of:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE _kf_repeated AS SELECT audit_id FROM {src} "
                             "WHERE audit_id IS NOT NULL GROUP BY audit_id HAVING count(*) > 1")
            self._repeated_of = files
        single = (f"SELECT *, 1::BIGINT AS stages FROM {src} "
                  "WHERE audit_id IS NULL OR audit_id NOT IN (SELECT audit_id FROM _kf_repeated)")
        merged = self.relation_sql("audit", Filters(), params, source=(
            f"(SELECT * FROM {src} WHERE audit_id IN (SELECT audit_id FROM _kf_repeated))"))
        return f"({single} UNION ALL BY NAME ({merged}))"

    def rows(self, table: str, event_ids: Sequence[str]) -> pd.DataFrame:
        """The rows of ``table`` with these event ids (audit stages merged), ordered by time."""
        ids = pa.table({"event_id": pa.array(sorted({str(e) for e in event_ids}), pa.string())})
        params: list[Any] = []
        sql = (f"SELECT * FROM {self.whole_sql(table, params)} "
               "WHERE event_id IN (SELECT event_id FROM _kf_wanted) ORDER BY time, event_id")
        return self.frame_with(sql, params, table, _kf_wanted=ids)

    def frame_with(self, sql: str, params: Sequence[Any], table: str, **inputs: pa.Table) -> pd.DataFrame:
        """``sql`` (rows of ``table``'s spec) with Arrow tables registered under the given names meanwhile."""
        for name, value in inputs.items():
            self.con.register(name, value)
        try:
            return self.to_frame(sql, params, TABLES[table])
        finally:
            for name in inputs:
                self.con.unregister(name)

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=list(params or [])).to_arrow_table()

    def to_frame(self, sql: str, params: Sequence[Any] | None, spec: TableSpec) -> pd.DataFrame:
        """Run SQL and give the frame the canonical dtypes (through Arrow: faster than DuckDB's .df())."""
        return arrow_to_frame(self.arrow(sql, params), spec)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run SQL in which ``{audit}``, ``{processes}`` ... name the case tables (stages merged)."""
        names = {t: f"({self.relation_sql(t, Filters(), [])})" for t in TABLES}
        return self.con.sql(query.format(**names), params=list(params or [])).to_arrow_table().to_pandas()

    def count(self, table: str) -> int:
        if not self.has(table):
            return 0
        return int(self.con.execute(f"SELECT count(*) FROM {self.source(table)}").fetchall()[0][0])

    def extent(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        # Object creation times can be months old: the extent is that of the events.
        parts = [f"SELECT min(time) AS lo, max(time) AS hi FROM {self.source(t)}"
                 for t in TABLES if t not in ("objects", "flow_aux") and self.has(t)]
        if not parts:
            return None, None
        lo, hi = self.con.execute(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})").fetchall()[0]
        return (pd.Timestamp(lo).tz_convert("UTC") if lo is not None else None,
                pd.Timestamp(hi).tz_convert("UTC") if hi is not None else None)


def _duck_type(spec: TableSpec, name: str) -> str:
    t = spec.column(name).type
    return {
        "str": "VARCHAR", "json": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE",
        "bool": "BOOLEAN", "ts": "TIMESTAMPTZ", "list<str>": "VARCHAR[]",
    }[t]


def _fix_frame(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Give frames the canonical dtypes: UTC nanosecond times, nullable integers and booleans."""
    for c in spec.columns:
        if c.name not in df.columns:
            continue
        if c.type == "ts":
            df[c.name] = pd.to_datetime(df[c.name], utc=True).astype("datetime64[ns, UTC]")
        elif c.type in ("int64", "int32"):
            df[c.name] = df[c.name].astype("Int64" if c.type == "int64" else "Int32")
        elif c.type == "bool":
            df[c.name] = df[c.name].astype("boolean")
        elif c.type == "list<str>":
            df[c.name] = df[c.name].map(_as_list)
    return df


def _as_list(v: Any) -> list[Any] | None:
    if isinstance(v, list):
        return v
    if hasattr(v, "tolist"):
        return v.tolist()
    return None


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


def arrow_to_frame(table: pa.Table, spec: TableSpec) -> pd.DataFrame:
    """Arrow result to a pandas frame with canonical dtypes: UTC ns times, nullable ints/bools, list columns
    as Python lists (None when null)."""
    lists = {}
    for name in table.column_names:
        if pa.types.is_list(table.schema.field(name).type) or pa.types.is_large_list(table.schema.field(name).type):
            lists[name] = table.column(name).to_pylist()
    df = table.to_pandas(types_mapper=_PANDAS_TYPES.get, ignore_metadata=True)
    for name, values in lists.items():
        df[name] = pd.Series(values, index=df.index, dtype=object)
    for c in spec.columns:
        if c.type == "ts" and c.name in df.columns and str(df[c.name].dtype) != "datetime64[ns, UTC]":
            df[c.name] = pd.to_datetime(df[c.name], utc=True).astype("datetime64[ns, UTC]")
    return df
