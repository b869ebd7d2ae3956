"""The links ``timeline(merge_sources=True)`` folds rows by, read from storage around the rows shown.

:func:`kubeforensics.timeline.unified.merge_same_event` folds a Hubble flow into
the Tetragon ``tcp_connect`` that made it (``connect_flow`` links) and a Falco
alert into the Tetragon process it is about (``alert_process``).  Both rows must
be in the timeline.  ``case.links()`` builds every link of the whole case from
every table, which on a case of millions of events is more memory than the
machine has, for a one-hour window as much as for the whole case.
:func:`merge_links` gives the same links for the rows shown, reading only:

* ``connect_flow``: the Tetragon events within ``2 x FLOW_TOLERANCE`` of a
  Tetragon row shown and the flows within ``3 x FLOW_TOLERANCE``.  A connect is
  linked to the nearest flow with its addresses and ports within the tolerance,
  and a flow claimed by two connects goes to the first of them in time order; a
  connect that competes for a flow near a connect shown is at most two
  tolerances from it, and its own nearest flow at most one more.
* ``alert_process``: the alerts shown, and every event of the processes that ran
  in their containers (all time: an alert is tied to the latest process with its
  container and pid that started before it, however long before), with the
  case's resolver (:attr:`Case.entities <kubeforensics.case.Case.entities>`).

When the case's correlation context is already loaded its links are used as
they are.  A test compares the result with ``case.links()`` on every sample
scenario, windowed and filtered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from kubeforensics.case import Case

KINDS = ["connect_flow", "alert_process"]


def merge_links(case: Case, df: pd.DataFrame) -> pd.DataFrame:
    """``case.links(kinds=["connect_flow", "alert_process"])`` for the rows of ``df`` that can fold."""
    from kubeforensics.correlate.context import Context
    from kubeforensics.correlate.links import FLOW_TOLERANCE, _empty, alert_links, connect_flow_links

    loaded = getattr(case, "_loaded_context", lambda: None)()
    query = getattr(case, "query", None)
    if loaded is not None or query is None:  # a loaded context, or a stand-in without storage
        return case.links(kinds=KINDS)
    source = df["source"]
    tetragon = df.loc[source == "tetragon", ["event_id", "time"]]
    parts = []
    if len(tetragon) and (source == "hubble").any():
        procs = _near(query, "processes", tetragon["time"], 2 * FLOW_TOLERANCE)
        flows = _near(query, "flows", tetragon["time"], 3 * FLOW_TOLERANCE)
        parts.append(connect_flow_links(Context({"processes": procs, "flows": flows})))
    falco = df.loc[source == "falco", "event_id"]
    if len(falco) and len(tetragon):
        alerts = query.rows("alerts", falco.tolist())
        ctx = Context({"alerts": alerts, "processes": _in_containers(query, alerts)})
        ctx.__dict__["resolver"] = case.entities  # the whole case's (built from storage, cached)
        found = alert_links(ctx)
        parts.append(found[found["kind"] == "alert_process"])
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else _empty()


def _near(query: Any, table: str, times: pd.Series, margin: pd.Timedelta) -> pd.DataFrame:
    """The rows of ``table`` within ``margin`` of any of ``times`` (merged intervals, one range join)."""
    t = pd.to_datetime(times, utc=True).dropna().sort_values()
    if t.empty:
        return query.frame(table, limit=0)
    lo = (t - margin).to_numpy()
    hi = (t + margin).to_numpy()
    # merge overlapping intervals: a new one starts where the running end is before the next start
    run_end = np.maximum.accumulate(hi)
    starts = np.r_[True, lo[1:] > run_end[:-1]]
    first = np.flatnonzero(starts)
    ends = np.r_[first[1:] - 1, len(lo) - 1]
    iv = pa.table({"lo": pa.array(lo[first], pa.timestamp("ns", "UTC")),
                   "hi": pa.array(run_end[ends], pa.timestamp("ns", "UTC"))})
    params: list[Any] = []
    sql = (f"SELECT r.* FROM {query.whole_sql(table, params)} r JOIN _kf_near n "
           "ON r.time >= n.lo AND r.time <= n.hi ORDER BY r.time, r.event_id")
    return query.frame_with(sql, params, table, _kf_near=iv)


def _in_containers(query: Any, alerts: pd.DataFrame) -> pd.DataFrame:
    """Every event of the processes that ran in the alerts' containers (by 12-hex-digit key)."""
    from kubeforensics.correlate.frames import cid

    ids = alerts["container_id"].dropna().astype(str)
    keys = sorted(set(cid(ids[ids.str.len() >= 12]).str[:12]))
    if not keys:
        return query.frame("processes", limit=0)
    params: list[Any] = []
    src = query.whole_sql("processes", params)
    inner = query.whole_sql("processes", params)
    # the key anywhere in the id, case-insensitively: a superset of cid(...)[:12] == key
    sql = (f"SELECT * FROM {src} WHERE exec_id IN (SELECT p.exec_id FROM {inner} p JOIN _kf_keys k "
           "ON strpos(lower(p.container_id), k.k) > 0 WHERE p.exec_id <> '') ORDER BY time, event_id")
    return query.frame_with(sql, params, "processes", _kf_keys=pa.table({"k": pa.array(keys, pa.string())}))
