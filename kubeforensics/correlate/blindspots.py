"""Blind spots: activity one source shows that another source should have shown but did not.

* ``unaudited_exec``: an interactive-looking process in a pod (a shell or tool
  whose parent is the container runtime) that no audit ``pods/exec``/``attach``
  explains -- the mark of kubelet-API or ``nodes/proxy`` abuse.  A container's
  first process (its entrypoint) and commands repeated at least
  ``probe_repeats`` times in the same container (exec probes) are not reported.
* ``unowned_pod_ip``: audit activity from an address inside the pod network
  (the same /16 as known pod IPs) that no known pod or node held at that time.
* ``no_api_object``: a container that ran processes but that no API object
  owns (a static pod in a namespace that does not exist).

Example
-------
>>> blind_spots(case.frames())                                  # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd

from kubeforensics.correlate.context import Context, as_context
from kubeforensics.correlate.frames import SHELLS, Tables, basename, is_runtime

COLS = [
    "kind",
    "time",
    "source",
    "event_id",
    "namespace",
    "pod",
    "container_id",
    "node",
    "process",
    "src_ip",
    "actor",
    "reason",
]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "time" else object) for c in COLS})


def blind_spots(tables: Tables | Context, *, probe_repeats: int = 3) -> pd.DataFrame:
    """Find blind spots (see module docstring).

    Parameters
    ----------
    tables : mapping or Context
        The canonical tables by name.
    probe_repeats : int
        A command run this many times in one container counts as a probe.

    Returns
    -------
    DataFrame
        Columns ``kind, time, source, event_id, namespace, pod, container_id, node, process, src_ip, actor, reason``.
    """
    ctx = as_context(tables)
    parts = [unaudited_execs(ctx, probe_repeats), unowned_pod_ips(ctx), hidden_containers(ctx)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True).sort_values("time", kind="stable").reset_index(drop=True)


def unaudited_execs(ctx: Context, probe_repeats: int = 3) -> pd.DataFrame:
    n = ctx.nodes
    parent_bin = n.set_index("exec_id")["binary"]
    p = n[n["observed"] & (n["pod"] != "") & n["start"].notna()]
    if p.empty:
        return _empty()
    p = p.assign(parent_binary=p["parent_exec_id"].map(parent_bin).fillna(""))
    interactive = basename(p["binary"]).isin(SHELLS) & is_runtime(p["parent_binary"])
    first = p.sort_values("start").drop_duplicates("container_id")["exec_id"]
    repeats = p.groupby(["container_id", "binary", "args"])["exec_id"].transform("size")
    cand = p[interactive & ~p["exec_id"].isin(first) & (repeats < probe_repeats)]
    linked = ctx.links
    explained = set(linked.loc[linked["kind"] == "exec_session", "to_event_id"])
    cand = cand[~cand["event_id"].isin(explained)]
    if cand.empty:
        return _empty()
    proc = basename(cand["binary"])
    return pd.DataFrame(
        {
            "kind": "unaudited_exec",
            "time": cand["start"],
            "source": "tetragon",
            "event_id": cand["event_id"],
            "namespace": cand["namespace"],
            "pod": cand["pod"],
            "container_id": cand["container_id"],
            "node": cand["node"],
            "process": cand["binary"],
            "src_ip": "",
            "actor": "",
            "reason": proc
            + " started by the container runtime in "
            + cand["namespace"]
            + "/"
            + cand["pod"]
            + " with no matching pods/exec or attach in the audit log (kubelet API or nodes/proxy?)",
        }
    )[COLS]


def _prefix16(ip: pd.Series) -> pd.Series:
    return ip.str.extract(r"^(\d+\.\d+)\.\d+\.\d+$")[0].fillna("")


def unowned_pod_ips(ctx: Context) -> pd.DataFrame:
    a = ctx.t["audit"]
    r = ctx.resolver
    pod_ips = r.ip_bindings["ip"]
    nets = set(_prefix16(pod_ips)) - {""}
    if a.empty or not nets:
        return _empty()
    cand = a[_prefix16(a["source_ip"]).isin(nets) & ~a["source_ip"].isin(set(r.node_ips["ip"]))]
    if cand.empty:
        return _empty()
    res = r.resolve_ips(cand["source_ip"].reset_index(drop=True), cand["time"].reset_index(drop=True))
    cand = cand[~res["matched"].values]
    if cand.empty:
        return _empty()
    return pd.DataFrame(
        {
            "kind": "unowned_pod_ip",
            "time": cand["time"],
            "source": "audit",
            "event_id": cand["event_id"],
            "namespace": cand["namespace"],
            "pod": "",
            "container_id": "",
            "node": "",
            "process": "",
            "src_ip": cand["source_ip"],
            "actor": cand["user"],
            "reason": cand["user"]
            + " "
            + cand["verb"]
            + " "
            + cand["resource"]
            + " from "
            + cand["source_ip"]
            + ", a pod-network address that no known pod held at that time",
        }
    )[COLS]


def hidden_containers(ctx: Context) -> pd.DataFrame:
    n = ctx.nodes
    h = n[n["no_api_object"] & n["observed"] & n["start"].notna()].sort_values("start")
    h = h.drop_duplicates("container_id")
    if h.empty:
        return _empty()
    return pd.DataFrame(
        {
            "kind": "no_api_object",
            "time": h["start"],
            "source": "tetragon",
            "event_id": h["event_id"],
            "namespace": h["namespace"],
            "pod": h["pod"],
            "container_id": h["container_id"],
            "node": h["node"],
            "process": h["binary"],
            "src_ip": "",
            "actor": "",
            "reason": "container "
            + h["container_id"].str[:12]
            + " on "
            + h["node"]
            + " ran "
            + basename(h["binary"])
            + " but no API object owns it (hidden static pod?)",
        }
    )[COLS]
