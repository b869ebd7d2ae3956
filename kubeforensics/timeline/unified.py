"""The unified timeline: one row per event across every source, built in DuckDB.

Each source contributes a SELECT that maps its canonical columns onto the
TIMELINE columns and writes a one-line ``summary`` an analyst can read
("jane@corp exec'd `/bin/bash` in default/web-1 from 203.0.113.7").  Filters
(time window, namespace, pod, node, IP, user) are pushed into each source's
scan.  ``severity`` and ``techniques`` come from findings when the case has
them cached (see :meth:`kubeforensics.case.Case.findings`); Falco alerts carry
their own priority as severity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.case.query import Filters, _fix_frame
from kubeforensics.schema import TIMELINE

if TYPE_CHECKING:
    from kubeforensics.case import Case

_COLUMNS = [c.name for c in TIMELINE.columns]

# coalesce-friendly helpers in SQL
_NS_POD = "coalesce({ns}, '') || CASE WHEN {ns} IS NOT NULL AND {pod} IS NOT NULL THEN '/' ELSE '' END || coalesce({pod}, '')"

SOURCE_SQL: dict[str, str] = {
    "audit": """
SELECT time, 'audit' AS source,
  verb || ' ' || coalesce(resource, request_uri, '') || CASE WHEN subresource IS NOT NULL THEN '/' || subresource ELSE '' END AS action,
  "user" AS actor, namespace,
  CASE WHEN resource = 'pods' THEN name ELSE sa_pod_name END AS pod,
  NULL::VARCHAR AS container_id, coalesce(pod_node_name, sa_node_name) AS node,
  CASE WHEN subresource IN ('exec', 'attach') THEN exec_command END AS process,
  NULL::VARCHAR AS args, source_ip AS src_ip, NULL::VARCHAR AS dst_ip, NULL::INTEGER AS dst_port,
  coalesce(decision, CAST(code AS VARCHAR)) AS verdict, NULL::VARCHAR AS severity, NULL::VARCHAR[] AS techniques,
  CASE
    WHEN subresource IN ('exec', 'attach') THEN
      coalesce("user", '?') || ' ' || subresource || '''d `' || coalesce(exec_command, '') || '` in '
      || coalesce(namespace, '') || '/' || coalesce(name, '')
      || CASE WHEN exec_container IS NOT NULL THEN ' (container ' || exec_container || ')' ELSE '' END
      || ' from ' || coalesce(source_ip, '?') || ' → ' || coalesce(CAST(code AS VARCHAR), '?')
    ELSE
      coalesce("user", '?') || ' ' || coalesce(verb, '?') || ' ' || coalesce(resource, request_uri, '')
      || CASE WHEN subresource IS NOT NULL THEN '/' || subresource ELSE '' END
      || CASE WHEN name IS NOT NULL OR namespace IS NOT NULL THEN ' ' || coalesce(namespace || '/', '') || coalesce(name, '') ELSE '' END
      || ' from ' || coalesce(source_ip, '?') || ' → ' || coalesce(CAST(code AS VARCHAR), '?')
      || CASE WHEN pod_privileged THEN ' [privileged]' ELSE '' END
      || CASE WHEN pod_host_pid OR pod_host_network THEN ' [host namespaces]' ELSE '' END
  END AS summary,
  event_id
FROM ({rel})""",
    "processes": """
SELECT time, 'tetragon' AS source,
  event_type || CASE WHEN function_name IS NOT NULL THEN ':' || function_name ELSE '' END AS action,
  coalesce(CAST(uid AS VARCHAR), '') AS actor, namespace, pod, container_id, node,
  "binary" AS process, args, saddr AS src_ip, daddr AS dst_ip, dport AS dst_port,
  action AS verdict, NULL::VARCHAR AS severity, NULL::VARCHAR[] AS techniques,
  coalesce(namespace || '/' || pod, 'host ' || node, '?') || ': '
  || CASE event_type
       WHEN 'exec' THEN coalesce(parent_binary, '?') || ' started `' || coalesce("binary", '?') || coalesce(' ' || args, '') || '`'
       WHEN 'exit' THEN '`' || coalesce("binary", '?') || '` exited with status ' || coalesce(CAST(exit_status AS VARCHAR), '?')
            || coalesce(' (' || exit_signal || ')', '')
       ELSE coalesce("binary", '?') || ' ' || coalesce(function_name, event_type)
            || coalesce(' ' || file_path, '') || coalesce(' → ' || daddr || ':' || CAST(dport AS VARCHAR), '')
     END
  || CASE WHEN len(list_filter(host_namespaces, lambda x: x IN ('mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup'))) > 0
          THEN ' [host ns: ' || array_to_string(list_filter(host_namespaces, lambda x: x IN ('mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup')), ',') || ']'
          ELSE '' END
  AS summary,
  event_id
FROM ({rel})""",
    "flows": """
SELECT time, 'hubble' AS source,
  CASE WHEN dns_query IS NOT NULL THEN 'dns' WHEN http_method IS NOT NULL THEN 'http' ELSE 'flow' END AS action,
  coalesce(src_namespace || '/' || src_pod, src_ip) AS actor,
  coalesce(src_namespace, dst_namespace) AS namespace, coalesce(src_pod, dst_pod) AS pod,
  NULL::VARCHAR AS container_id, node, NULL::VARCHAR AS process, NULL::VARCHAR AS args,
  src_ip, dst_ip, dst_port, verdict, NULL::VARCHAR AS severity, NULL::VARCHAR[] AS techniques,
  coalesce(src_namespace || '/' || src_pod, src_ip, '?') || ' → '
  || coalesce(dst_namespace || '/' || dst_pod, list_first(dst_names), dst_ip, '?')
  || coalesce(':' || CAST(dst_port AS VARCHAR), '') || coalesce('/' || protocol, '') || ' ' || coalesce(verdict, '')
  || coalesce(' ' || drop_reason, '')
  || coalesce(' DNS ' || dns_query, '') || coalesce(' ' || http_method || ' ' || http_url, '')
  || coalesce(' → ' || CAST(http_code AS VARCHAR), '')
  AS summary,
  event_id
FROM ({rel})""",
    "alerts": """
SELECT time, 'falco' AS source, rule AS action,
  coalesce(ka_user, user_name) AS actor, coalesce(namespace, ka_namespace) AS namespace, pod,
  container_id, hostname AS node, proc_exepath AS process, proc_cmdline AS args,
  NULL::VARCHAR AS src_ip, NULL::VARCHAR AS dst_ip, NULL::INTEGER AS dst_port, NULL::VARCHAR AS verdict,
  CASE WHEN priority_rank <= 2 THEN 'critical' WHEN priority_rank = 3 THEN 'high' WHEN priority_rank = 4 THEN 'medium'
       WHEN priority_rank = 5 THEN 'low' ELSE 'info' END AS severity,
  NULL::VARCHAR[] AS techniques,
  'Falco ' || coalesce(priority, '') || ': ' || coalesce(rule, '') || coalesce(' — ' || output, '') AS summary,
  event_id
FROM ({rel})""",
    "k8s_events": """
SELECT time, 'k8s-events' AS source, reason AS action, component AS actor, namespace,
  CASE WHEN kind = 'Pod' THEN name END AS pod, NULL::VARCHAR AS container_id, host AS node,
  NULL::VARCHAR AS process, NULL::VARCHAR AS args, NULL::VARCHAR AS src_ip, NULL::VARCHAR AS dst_ip,
  NULL::INTEGER AS dst_port, type AS verdict, NULL::VARCHAR AS severity, NULL::VARCHAR[] AS techniques,
  coalesce(kind, '?') || ' ' || coalesce(namespace || '/', '') || coalesce(name, '') || ': ' || coalesce(reason, '')
  || coalesce(' — ' || message, '') || CASE WHEN count > 1 THEN ' (×' || CAST(count AS VARCHAR) || ')' ELSE '' END
  AS summary,
  event_id
FROM ({rel})""",
}


def timeline_sql(case: Case, filters: Filters, params: list[Any], sources: tuple[str, ...] | None = None) -> str:
    parts = []
    for table, template in SOURCE_SQL.items():
        if sources is not None and table not in sources and _source_name(table) not in sources:
            continue
        if not case.query.has(table):
            continue
        rel = case.query.relation_sql(table, filters, params)
        parts.append(template.format(rel=rel))
    if not parts:
        return ""
    return " UNION ALL ".join(parts)


def _source_name(table: str) -> str:
    return {"processes": "tetragon", "flows": "hubble", "alerts": "falco", "k8s_events": "k8s-events"}.get(table, table)


def build_timeline(
    case: Case,
    *,
    since: Any = None,
    until: Any = None,
    namespace: str | None = None,
    pod: str | None = None,
    node: str | None = None,
    ip: str | None = None,
    user: str | None = None,
    sources: tuple[str, ...] | list[str] | None = None,
    limit: int | None = None,
    findings: pd.DataFrame | None = None,
    merge_sources: bool = False,
    collapse: bool = False,
    hide_baseline: bool = False,
) -> pd.DataFrame:
    """One row per event across all sources, ordered by time.

    Parameters
    ----------
    case : Case
        The case to read.
    since, until : datetime or ISO string, optional
        Half-open time window ``[since, until)``.
    namespace, pod, node, ip, user : str, optional
        Entity filters, pushed down to every source that has such a column.
    sources : sequence of str, optional
        Only these sources (``audit``, ``tetragon``, ``hubble``, ``falco``, ``k8s-events``).
    limit : int, optional
        At most this many rows (the earliest).
    findings : DataFrame, optional
        Findings whose ``event_ids`` fill ``severity`` and ``techniques``; by default the
        case's cached findings when there are any.
    merge_sources : bool
        One row where two sources saw the same thing: a Hubble flow made by a Tetragon
        ``tcp_connect`` and a Falco alert about a Tetragon process are folded into the
        process row (its summary names the other source; severity is the higher).
    collapse : bool
        Repetitive rows (probes, leases, beacons) become one row with ``count``,
        ``first_seen`` and ``last_seen`` (see :func:`kubeforensics.correlate.collapse_noise`).
    hide_baseline : bool
        Drop the normal system actors' routine rows (node leases, controllers, probes).

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`kubeforensics.schema.TIMELINE`.
    """
    filters = Filters(since=since, until=until, namespace=namespace, pod=pod, node=node, ip=ip, user=user)
    params: list[Any] = []
    sql = timeline_sql(case, filters, params, tuple(sources) if sources else None)
    if not sql:
        return _fix_frame(pd.DataFrame({c: pd.Series(dtype=object) for c in _COLUMNS}), TIMELINE)
    sql = f"SELECT {', '.join(_COLUMNS)} FROM ({sql}) ORDER BY time, event_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    df = case.query.to_frame(sql, params, TIMELINE)
    if findings is None:
        findings = _cached_findings(case)
    if findings is not None and len(findings) and len(df):
        df = annotate(df, findings)
    if merge_sources and len(df):
        from kubeforensics.timeline.merge import merge_links

        df = merge_same_event(df, merge_links(case, df))
    if collapse or hide_baseline:
        from kubeforensics.correlate import collapse_noise

        df = collapse_noise(df, hide_baseline=hide_baseline, min_count=5 if collapse else 10**12)
    return df.reset_index(drop=True)


def merge_same_event(df: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Fold rows that another source's row already shows into that row (see ``merge_sources``)."""
    if links.empty:
        return df
    pairs = links[["kind", "from_event_id", "to_event_id"]]
    # connect_flow: tetragon (from) keeps, hubble (to) folds in; alert_process: tetragon (to) keeps, falco folds in.
    keep = pd.concat([pairs.loc[pairs.kind == "connect_flow", "from_event_id"],
                      pairs.loc[pairs.kind == "alert_process", "to_event_id"]], ignore_index=True)
    fold = pd.concat([pairs.loc[pairs.kind == "connect_flow", "to_event_id"],
                      pairs.loc[pairs.kind == "alert_process", "from_event_id"]], ignore_index=True)
    m = pd.DataFrame({"keep": keep, "fold": fold}).drop_duplicates("fold")
    present = set(df["event_id"])
    m = m[m["keep"].isin(present) & m["fold"].isin(present)]
    if m.empty:
        return df
    by_id = df.set_index("event_id")
    folded = by_id.loc[m["fold"]]
    notes = pd.Series(
        (folded["source"] + ": " + folded["summary"].fillna("").str.slice(0, 120)).to_numpy(), index=m["keep"].to_numpy()
    ).groupby(level=0).agg(" | ".join)
    sev = pd.Series(folded["severity"].to_numpy(), index=m["keep"].to_numpy()).dropna()
    out = df[~df["event_id"].isin(set(m["fold"]))].copy()
    hit = out["event_id"].isin(notes.index)
    out.loc[hit, "summary"] = out.loc[hit, "summary"].fillna("") + " (also seen by " + out.loc[hit, "event_id"].map(notes) + ")"
    if len(sev):
        best = sev.map(_SEV_ORDER).groupby(level=0).max()
        cur = out["severity"].map(_SEV_ORDER).fillna(-1)
        new = out["event_id"].map(best).fillna(-1)
        names = {v: k for k, v in _SEV_ORDER.items()}
        out["severity"] = out["severity"].where(cur >= new, new.map(names))
    return out


_SEV_ORDER = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def annotate(df: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """Fill ``severity`` (the highest) and ``techniques`` (the union) from findings' evidence ids."""
    ex = findings[["event_ids", "severity", "techniques"]].explode("event_ids").dropna(subset=["event_ids"])
    if ex.empty:
        return df
    ex["severity"] = ex["severity"].astype(str)  # the detection engine's severity is an ordered categorical
    ex["rank"] = ex["severity"].map(_SEV_ORDER).fillna(0)
    sev = ex.sort_values("rank").groupby("event_ids")["severity"].last()
    tech = ex.explode("techniques").dropna(subset=["techniques"]).groupby("event_ids")["techniques"].agg(
        lambda s: sorted(set(s)))
    hit_sev = df["event_id"].map(sev).astype(object)
    cur = df["severity"].map(_SEV_ORDER).fillna(-1)
    new = hit_sev.map(_SEV_ORDER).fillna(-1)
    sev_col = df["severity"].where(cur >= new, hit_sev).astype(object)
    df["severity"] = sev_col.where(sev_col.notna(), None)
    df["techniques"] = df["event_id"].map(tech).where(df["event_id"].isin(tech.index), df["techniques"])
    return df


def _cached_findings(case: Case) -> pd.DataFrame | None:
    p = case.path / "derived" / "findings.parquet"
    if p.is_file():
        from kubeforensics.case.analysis import _lists

        return _lists(pd.read_parquet(p))
    return None
