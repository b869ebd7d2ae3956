"""The entity resolver built from storage, DuckDB doing the row reduction.

:meth:`EntityResolver.from_tables <kubeforensics.correlate.entities.EntityResolver.from_tables>`
takes every source table whole.  :func:`entities_from_storage` builds the very same resolver
(every frame equal, row order and dtypes included) while reading, per observation function, only
the columns it reads and only the rows that can change its output, so memory follows the variety
of the case (pods, containers, tokens, exec ids), not its row count.

The reduction (:func:`_ends`): the rows a function reads are split into *classes* of rows equal on
every column it reads except the time; of each class only its first row in table order and its
last row with a time are kept.  The kept rows are a sub-sequence of the table (same order), and
each class keeps the row that comes first in table order and the one with the latest time.  The
observation functions only use, per group of rows: the first row in table order (``first``,
``first_nonempty`` after a stable sort by time, ``drop_duplicates``, group order of first
appearance), the minimum and maximum time, and values that are the same on every row of a class
(``max`` / ``any`` / sets of class columns).  Those are the same on the kept rows.  The two
results that count rows -- the number of requests per token and the most frequent ``saddr`` of a
pod's connects -- are counted in SQL over every row and patched in.

Table order is that of :meth:`Case.frames <kubeforensics.case.Case.frames>` once normalised
(:func:`kubeforensics.correlate.frames.normalise`): ``time, event_id`` with nulls last; for audit,
after the stage merge, the request time (``coalesce(request_time, time)``, which becomes ``time``)
then the merged time and event id, as :func:`~kubeforensics.correlate.frames.dedupe_audit` orders
it.  Every row of the case is still read by DuckDB (hash aggregates over a few columns); only the
kept rows reach pandas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kubeforensics.case.query import Filters
from kubeforensics.correlate import observations as obs_
from kubeforensics.correlate.entities import EntityResolver
from kubeforensics.correlate.frames import _fix
from kubeforensics.correlate.observations import POD_COLS
from kubeforensics.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.case.query import CaseQuery

#: What each observation function reads (beside ``time``), per table: the class key of :func:`_ends`.
AUDIT_POD_COLS = ("namespace", "name", "resource", "subresource", "verb", "code", "object_uid", "pod_node_name",
                  "pod_service_account", "pod_host_network", "request_object", "response_object")
AUDIT_TOKEN_COLS = ("user", "sa_pod_name", "sa_pod_uid", "sa_node_name", "sa_credential_id", "source_ip")
PROCESS_COLS = ("namespace", "pod", "pod_uid", "node", "container_id", "function_name", "saddr")
FLOW_COLS = ("node", "src_namespace", "src_pod", "src_ip", "dst_namespace", "dst_pod", "dst_ip")
ALERT_COLS = ("container_id", "namespace", "pod", "hostname")
EVENT_COLS = ("kind", "namespace", "name", "object_uid", "message", "host", "first_time")
OBJECT_COLS = ("event_id", "time", "kind", "namespace", "name", "uid", "node", "service_account", "pod_ip", "pod_ips",
               "host_ip", "host_network", "created", "deleted", "container_ids")
PROC_INDEX_COLS = ("time", "node", "namespace", "pod", "pod_uid", "container_id")
#: The token groups of :func:`kubeforensics.correlate.observations.tokens`, without the derived token.
TOKEN_GROUP = ("user", "sa_pod_name", "sa_pod_uid", "sa_node_name", "sa_credential_id")

_INF = "'infinity'::TIMESTAMPTZ"


def _s(col: str) -> str:
    """A string column as the normalised frames have it (null is ``""``)."""
    return f"coalesce({col}, '')"


def _order_key(*times: str) -> str:
    """A struct that sorts like ``ORDER BY t1, t2, ..., event_id`` (nulls last), for min/max."""
    fields = []
    for i, t in enumerate(times):
        fields += [f"n{i} := {t} IS NULL", f"t{i} := coalesce({t}, {_INF})"]
    fields += ["ne := event_id IS NULL", "e := coalesce(event_id, '')"]
    return f"struct_pack({', '.join(fields)})"


def _spec(table: str, cols: Sequence[str]) -> Any:
    spec = TABLES[table]
    return dataclasses.replace(spec, columns=tuple(c for c in spec.columns if c.name in cols))


def _normalised(query: CaseQuery, sql: str, params: list[Any], table: str, cols: Sequence[str]) -> pd.DataFrame:
    """Run ``sql`` and normalise the frame as :func:`kubeforensics.correlate.frames.table` does, on its columns."""
    spec = _spec(table, cols)
    df = _fix(query.to_frame(sql, params, spec), spec).reset_index(drop=True)
    for c in ("request_object", "response_object"):  # dedupe_audit(light=True) gives "" for null bodies
        if c in df.columns:
            df[c] = df[c].fillna("")
    return df


def _ends(rel: str, key: Sequence[str], *, where: str = "TRUE", times: Sequence[str] = ("time",)) -> str:
    """SQL: of the rows of ``rel`` matching ``where``, per class of rows equal on ``key``, the first row in
    table order and the last one with a non-null ``times[0]``; columns ``key``, ``time`` (= ``times[0]``),
    ordered as the table."""
    cols = ", ".join(key)
    k = _order_key(*times)
    inner = (f"SELECT {cols}, min(_k) AS _k1, max(_k) FILTER (WHERE {times[0]} IS NOT NULL) AS _k2 "
             f"FROM (SELECT {cols}, {times[0]}, {k} AS _k FROM {rel} WHERE {where}) GROUP BY ALL")
    return (f"SELECT {cols}, CASE WHEN _k.n0 THEN NULL ELSE _k.t0 END AS time FROM "
            f"(SELECT {cols}, unnest(list_distinct([_k1, _k2])) AS _k FROM ({inner})) ORDER BY _k")


class _Reader:
    """The relations of one case (and filter window) as SQL, with their parameters."""

    def __init__(self, query: CaseQuery, filters: Filters) -> None:
        self.query = query
        self.filters = filters

    def rel(self, table: str, params: list[Any]) -> str:
        """A source table as ``Case.frames`` reads it (filters applied), as a FROM item."""
        return f"({self.query.relation_sql(table, self.filters, params)})"

    def audit(self, params: list[Any], pre: str, columns: Sequence[str]) -> str:
        """Audit as ``Case.frames`` reads it (stages merged), only the requests with a stage row matching
        ``pre`` (a condition on columns every stage row carries; a superset of the merged rows matching it,
        as a merged row is one of its stage rows with only the time changed); ``time`` is the normalised
        time (the request time), ``_mt`` the merged time."""
        q = self.query
        src = q.source("audit")
        keys = f"SELECT coalesce(audit_id, event_id) FROM {src} WHERE ({self.filters.where('audit', params)}) AND ({pre})"
        source = f"(SELECT * FROM {src} WHERE coalesce(audit_id, event_id) IN ({keys}))"
        cols = ", ".join(dict.fromkeys([*columns, "event_id", "time", "request_time"]))
        merged = q.relation_sql("audit", self.filters, params, [cols], source=source)
        return (f"(SELECT * REPLACE (coalesce(request_time, time) AS time), time AS _mt FROM ({merged}) "
                f"WHERE {pre})")


def _pods_from_audit(r: _Reader) -> list[pd.DataFrame]:
    params: list[Any] = []
    pre = "resource = 'pods'"
    rel = r.audit(params, pre, AUDIT_POD_COLS)
    where = ("coalesce(subresource, '') IN ('', 'status') AND verb IN ('create', 'update', 'patch', 'delete') "
             "AND (code IS NULL OR code < 400)")
    sql = _ends(rel, AUDIT_POD_COLS, where=where, times=("time", "_mt"))
    return obs_._pods_from_audit(_normalised(r.query, sql, params, "audit", (*AUDIT_POD_COLS, "time")))


def _tokens(r: _Reader) -> pd.DataFrame:
    params: list[Any] = []
    pre = "starts_with(user, 'system:serviceaccount:')"
    rel = r.audit(params, pre, AUDIT_TOKEN_COLS)
    sql = _ends(rel, AUDIT_TOKEN_COLS, times=("time", "_mt"))
    sa = _normalised(r.query, sql, params, "audit", (*AUDIT_TOKEN_COLS, "time"))
    sa["event_id"] = ""  # tokens() counts rows with it: the counts are patched in below
    res = obs_.tokens(sa)
    if res.empty:
        return res
    params = []
    rel = r.audit(params, pre, AUDIT_TOKEN_COLS)
    group = ", ".join(_s(c) for c in TOKEN_GROUP)
    counts = r.query.con.execute(f"SELECT {group}, count(*) FROM {rel} GROUP BY ALL", params).fetchall()
    n = {tuple(row[:-1]): row[-1] for row in counts}
    res["requests"] = np.array([n[k] for k in zip(*(res[c] for c in TOKEN_GROUP))], dtype=res["requests"].dtype)
    return res


def _processes(r: _Reader) -> pd.DataFrame:
    """Process rows for the pod and container observations (pod or container known), reduced."""
    params: list[Any] = []
    sql = _ends(r.rel("processes", params), PROCESS_COLS,
                where=f"{_s('pod')} <> '' OR {_s('container_id')} <> ''")
    return _normalised(r.query, sql, params, "processes", (*PROCESS_COLS, "time"))


def _pods_from_processes(r: _Reader, procs: pd.DataFrame) -> pd.DataFrame:
    out = obs_._pods_from_processes(procs)
    if out.empty:
        return out
    # The IP is the most frequent saddr of the pod's connects (ties: the smallest): counted on every row.
    params: list[Any] = []
    rel = r.rel("processes", params)
    rows = r.query.con.execute(
        f"SELECT {_s('namespace')}, pod, saddr, count(*) FROM {rel} WHERE {_s('pod')} <> '' "
        f"AND contains({_s('function_name')}, 'connect') AND {_s('saddr')} <> '' GROUP BY ALL", params).fetchall()
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for ns, pod, saddr, n in rows:
        b = best.get((ns, pod))
        if b is None or n > b[0] or (n == b[0] and saddr < b[1]):
            best[(ns, pod)] = (n, saddr)
    ip = [best[k][1] if k in best else "" for k in zip(out["namespace"], out["pod"])]
    out["ip"] = pd.Series(ip, index=out.index, dtype=out["ip"].dtype)
    return out


def _flows(r: _Reader) -> pd.DataFrame:
    params: list[Any] = []
    where = " OR ".join(f"({_s(s + '_pod')} <> '' AND {_s(s + '_ip')} <> '')" for s in ("src", "dst"))
    sql = _ends(r.rel("flows", params), FLOW_COLS, where=where)
    return _normalised(r.query, sql, params, "flows", (*FLOW_COLS, "time"))


def _events(r: _Reader) -> pd.DataFrame:
    params: list[Any] = []
    sql = _ends(r.rel("k8s_events", params), EVENT_COLS, where=f"kind = 'Pod' AND {_s('name')} <> ''")
    return _normalised(r.query, sql, params, "k8s_events", (*EVENT_COLS, "time"))


def _alerts(r: _Reader) -> pd.DataFrame:
    params: list[Any] = []
    sql = _ends(r.rel("alerts", params), ALERT_COLS, where=f"{_s('container_id')} <> ''")
    return _normalised(r.query, sql, params, "alerts", (*ALERT_COLS, "time"))


def _objects(r: _Reader) -> pd.DataFrame:
    """Pod objects, every row (a dump has one per pod), in table order."""
    params: list[Any] = []
    sql = f"SELECT {', '.join(OBJECT_COLS)} FROM {r.rel('objects', params)} WHERE kind = 'Pod' ORDER BY time, event_id"
    return _normalised(r.query, sql, params, "objects", OBJECT_COLS)


def _process_index(r: _Reader) -> pd.DataFrame:
    """exec_id -> the first process row of each exec_id (time, node, namespace, pod, pod_uid, container_id)."""
    params: list[Any] = []
    cols = ", ".join(f"{c} := {c}" for c in PROC_INDEX_COLS)
    first = f"min(struct_pack(_k := {_order_key('time')}, {cols}))"
    sql = (f"SELECT exec_id, {', '.join(f'_f.{c} AS {c}' for c in PROC_INDEX_COLS)} FROM "
           f"(SELECT exec_id, {first} AS _f FROM {r.rel('processes', params)} WHERE {_s('exec_id')} <> '' "
           "GROUP BY exec_id) ORDER BY _f._k")
    df = _normalised(r.query, sql, params, "processes", ("exec_id", *PROC_INDEX_COLS))
    return df[["exec_id", *PROC_INDEX_COLS]].set_index("exec_id")


def entities_from_storage(query: CaseQuery, filters: Filters | None = None) -> EntityResolver:
    """The :class:`EntityResolver` of the case, equal to ``EntityResolver.from_tables(case.frames(**filters))``,
    with DuckDB reducing the rows (see the module doc).

    Parameters
    ----------
    query : CaseQuery
        The case's query object (``case.query``).
    filters : Filters, optional
        A time window or entity filters, as :meth:`Case.frames` takes them.
    """
    r = _Reader(query, filters or Filters())
    objects = _objects(r)
    procs = _processes(r)
    flows = _flows(r)
    parts = [
        obs_._pods_from_objects(objects),
        *_pods_from_audit(r),
        _pods_from_processes(r, procs),
        obs_._pods_from_flows(flows),
        obs_._pods_from_events(_events(r)),
    ]
    obs = (
        pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if any(not p.empty for p in parts)
        else pd.DataFrame(columns=POD_COLS + ["deleted"])
    )
    pods = obs_.merge_pods(obs)
    containers = obs_.containers({"objects": objects, "processes": procs, "alerts": _alerts(r)}, pods)
    return EntityResolver(pods, containers, obs_.node_ips(obs), _tokens(r), _process_index(r))


__all__ = ["entities_from_storage"]
