"""The case's tables with repetitive baseline trimmed, for correlation and the story at scale.

Most of a large case is the same few events over and over: a readiness probe's
exec every ten seconds, a controller renewing its lease, the kubelet's HTTP
probes.  Correlation needs to know that they happen, when they started and
ended, and that they repeat; it does not need every one of them.  Here each
table's rows are grouped by their *shape* (the columns that make two events
"the same thing": who, what, where, to whom; not the time or the ids) and of
each shape only the first and last :data:`KEEP` rows are read (a shape with at
most ``2 * KEEP`` rows is read whole).  Every row of a pod the findings name,
from :data:`MARGIN` before its first to :data:`MARGIN` after its last flagged
event, is read whole too.

Processes are trimmed by process, not by row: a kept process keeps all its
events (exec, exit, probes), and the processes its kept events descend from
(``parent_exec_id``, recursively) are kept too, so process trees stay whole.

Findings are not computed from these tables (:mod:`kubeforensics.detect.pushdown`
reads every row they need).  :func:`slim_frames` returns, beside the frames, how
many rows each table had and how many were read.  The story built on them is
checked against the full-table story in ``tests/case/test_slim.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.case.query import CaseQuery

#: Rows kept at each end of a shape's time line.
KEEP = 8

#: The columns that make two events of a table "the same thing".
SHAPES: dict[str, tuple[str, ...]] = {
    "audit": ("user", "impersonated_user", "verb", "resource", "subresource", "namespace", "name", "source_ip",
              "user_agent", "code", "sa_pod_name", "sa_node_name", "exec_command", "stage"),
    "processes": ("node", "container_id", "pod", "event_type", "binary", "args", "parent_binary", "function_name",
                  "file_path", "daddr", "dport", "uid", "cwd"),
    # A reply's destination port is the client's ephemeral port: its shape takes the service port.
    "flows": ("node", "src_namespace", "src_pod", "src_ip", "dst_namespace", "dst_pod", "dst_ip",
              "CASE WHEN is_reply THEN src_port ELSE dst_port END",
              "protocol", "verdict", "drop_reason", "is_reply", "traffic_direction", "tcp_flags", "l7_type",
              "dns_query", "dns_rcode", "http_method", "http_url", "http_code"),
}

_ANCESTOR_ROUNDS = 32


#: Rows of a pod of interest are read whole: which columns name the pod, per table.
POD_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "audit": (("namespace", "name"), ("namespace", "sa_pod_name")),
    "processes": (("namespace", "pod"),),
    "flows": (("src_namespace", "src_pod"), ("dst_namespace", "dst_pod")),
}


def _q(name: str) -> str:
    return name if " " in name else '"' + name + '"'


#: Rows of a pod of interest this close to its findings are read whole.
MARGIN = pd.Timedelta(minutes=10)

Interest = list[tuple[str, str, pd.Timestamp, pd.Timestamp]]


def interest_of(findings: pd.DataFrame) -> Interest:
    """``(namespace, pod, first_seen - MARGIN, last_seen + MARGIN)`` of each finding that names a pod."""
    out = []
    for ns, pod, lo, hi in zip(findings["namespace"], findings["pod"], findings["first_seen"], findings["last_seen"]):
        if isinstance(ns, str) and isinstance(pod, str) and ns and pod and pd.notna(lo) and pd.notna(hi):
            out.append((ns, pod, pd.Timestamp(lo) - MARGIN, pd.Timestamp(hi) + MARGIN))
    return out


def _lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _interest(table: str, pods: Interest) -> str:
    """SQL: the row belongs to one of the pods of interest, near its findings (``FALSE`` when none)."""
    if not pods:
        return "FALSE"
    values = ", ".join(
        f"({_lit(ns)}, {_lit(pod)}, {_lit(lo.isoformat())}::TIMESTAMPTZ, {_lit(hi.isoformat())}::TIMESTAMPTZ)"
        for ns, pod, lo, hi in sorted(set(pods)))
    return " OR ".join(
        f"EXISTS (SELECT 1 FROM (VALUES {values}) v(ns, pod, lo, hi) "
        f"WHERE v.ns = {_q(ns)} AND v.pod = {_q(pod)} AND time BETWEEN v.lo AND v.hi)"
        for ns, pod in POD_COLUMNS[table])


def _kept_sql(table: str, source: str, column: str, pods: Interest) -> str:
    """SQL for the ``column`` values (event_id, exec_id) of the rows kept: the first and last
    :data:`KEEP` of each shape by (time, event_id), and the rows of pods of interest.

    One hash aggregate (``min_by``/``max_by`` with a count) instead of two window sorts: the
    same rows, an order of magnitude faster on millions of rows."""
    names = TABLES[table].names
    key = ", ".join(_q(c) for c in SHAPES[table] if c in names or " " in c)
    order = "struct_pack(t := time, e := event_id)"
    ends = (f"SELECT unnest(list_concat(min_by({column}, {order}, {KEEP}), max_by({column}, {order}, {KEEP}))) "
            f"AS {column} FROM {source} GROUP BY {key}")
    out = f"SELECT DISTINCT {column} FROM ({ends})"
    if pods:
        out += f" UNION SELECT {column} FROM {source} WHERE {_interest(table, pods)}"
    return out


def slim_frames(query: CaseQuery, pods: Interest | None = None,
                ) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, int]]]:
    """Every source table, repetitive shapes trimmed (see the module doc); the rows of ``pods``
    (:func:`interest_of` the findings) near their findings are read whole.

    Returns
    -------
    (frames, counts)
        ``frames``: table name -> DataFrame (canonical dtypes, ordered by time and event id);
        ``counts``: table name -> ``{"rows": all rows, "read": rows read}``.
    """
    from kubeforensics.case.store import SOURCE_TABLES

    frames: dict[str, pd.DataFrame] = {}
    counts: dict[str, dict[str, int]] = {}
    con = query.con
    for table in SOURCE_TABLES:
        spec = TABLES[table]
        if table not in SHAPES or not query.has(table):
            df = query.frame(table)
            frames[table] = df
            counts[table] = {"rows": len(df), "read": len(df)}
            continue
        params: list[Any] = []
        base = query.whole_sql(table, params)
        total = int(con.execute(f"SELECT count(*) FROM {base}", params).fetchall()[0][0])
        con.execute("CREATE OR REPLACE TEMP TABLE _kf_ids (event_id VARCHAR)")
        con.execute("CREATE OR REPLACE TEMP TABLE _kf_keep (exec_id VARCHAR)")
        if table == "processes":
            _keep_processes(query, base, params, pods or [])
            where = "exec_id IN (SELECT exec_id FROM _kf_keep) OR event_id IN (SELECT event_id FROM _kf_ids)"
        else:
            con.execute(f"INSERT INTO _kf_ids {_kept_sql(table, base, 'event_id', pods or [])}", params)
            where = "event_id IN (SELECT event_id FROM _kf_ids)"
        df = query.to_frame(f"SELECT * FROM {base} WHERE {where} ORDER BY time, event_id", params, spec)
        con.execute("DROP TABLE IF EXISTS _kf_ids")
        con.execute("DROP TABLE IF EXISTS _kf_keep")
        frames[table] = df.reset_index(drop=True)
        counts[table] = {"rows": total, "read": len(df)}
    return frames, counts


def _keep_processes(query: CaseQuery, base: str, params: list[Any], pods: Interest) -> None:
    """Fill ``_kf_keep`` with the kept processes and their ancestors, ``_kf_ids`` with the kept
    events that name no process."""
    con = query.con
    con.execute(f"INSERT INTO _kf_keep SELECT DISTINCT exec_id FROM ({_kept_sql('processes', base, 'exec_id', pods)}) "
                "WHERE exec_id IS NOT NULL", params)
    for _ in range(_ANCESTOR_ROUNDS):
        added = con.execute(
            f"INSERT INTO _kf_keep SELECT DISTINCT p.parent_exec_id FROM {base} p "
            "JOIN _kf_keep k ON p.exec_id = k.exec_id "
            "WHERE p.parent_exec_id IS NOT NULL AND p.parent_exec_id NOT IN (SELECT exec_id FROM _kf_keep)",
            params).fetchall()
        if not (added and added[0][0]):
            break
    # Events without an exec_id cannot be kept by process: trimmed by shape like the other tables.
    con.execute(f"INSERT INTO _kf_ids {_kept_sql('processes', f'(SELECT * FROM {base} WHERE exec_id IS NULL)', 'event_id', pods)}",
                params)


def trimmed(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Tables whose rows were trimmed, with how many rows were left out."""
    return {t: c["rows"] - c["read"] for t, c in counts.items() if c["rows"] > c["read"]}
