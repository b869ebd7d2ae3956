"""Cross-source links: the same activity seen by two sources, or cause and effect.

Each link is one row: ``kind``, ``from_source``, ``from_event_id``,
``to_source``, ``to_event_id``, ``reason`` (a sentence), plus ``time`` (of the
``to`` side), ``session`` (the audit event id of the exec session a process
belongs to, for exec links) and ``flag`` (``""`` or why the link is
suspicious: ``foreign_ip``, ``new_source_ip``).

Kinds
-----
exec_session      audit ``pods/exec``/``attach`` -> the process it started (same pod and
                  container, within seconds, command matching binary + args)
exec_descendant   audit exec -> every process below that one
connect_flow      Tetragon ``tcp_connect`` -> the Hubble flow with the same 5-tuple (+-5 s)
token_use         service-account token -> each audit request made with it
alert_process     Falco alert -> the Tetragon process it is about (container + pid or name)
alert_pod         Falco alert -> the pod (``namespace/name``)
pod_event         audit pod create -> the Events about that pod
pod_process       audit pod create -> the first process of each of its containers

Example
-------
>>> l = links(case.frames())                                   # doctest: +SKIP
>>> l[l.flag != ""]                                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from kubeforensics.correlate.context import Context, as_context
from kubeforensics.correlate.frames import Tables, asof_join, basename, cid, is_runtime
from kubeforensics.correlate.tokens import token_uses

log = logging.getLogger(__name__)

LINK_COLS = [
    "kind",
    "from_source",
    "from_event_id",
    "to_source",
    "to_event_id",
    "reason",
    "time",
    "session",
    "flag",
]
KINDS = (
    "exec_session",
    "exec_descendant",
    "connect_flow",
    "token_use",
    "alert_process",
    "alert_pod",
    "pod_event",
    "pod_process",
)
EXEC_BEFORE = pd.Timedelta(seconds=2)
EXEC_AFTER = pd.Timedelta(seconds=15)
FLOW_TOLERANCE = pd.Timedelta(seconds=5)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="datetime64[ns, UTC]" if c == "time" else object) for c in LINK_COLS}
    )


def _mk(
    kind: str,
    fs: str,
    fe: Iterable,
    ts: str,
    te: Iterable,
    reason: Iterable | str,
    time: Iterable,
    session: Iterable | str = "",
    flag: Iterable | str = "",
) -> pd.DataFrame:
    df = pd.DataFrame({"from_event_id": list(fe), "to_event_id": list(te)})
    n = len(df)
    df.insert(0, "kind", kind)
    df.insert(1, "from_source", fs)
    df.insert(3, "to_source", ts)
    df["reason"] = list(reason) if not isinstance(reason, str) else [reason] * n
    df["time"] = (
        pd.to_datetime(pd.Series(list(time), dtype=object), utc=True)
        if n
        else pd.Series(dtype="datetime64[ns, UTC]")
    )
    df["session"] = list(session) if not isinstance(session, str) else [session] * n
    df["flag"] = list(flag) if not isinstance(flag, str) else [flag] * n
    return df[LINK_COLS]


def links(tables: Tables | Context, kinds: Iterable[str] | None = None) -> pd.DataFrame:
    """Every cross-source link in the case (see the module docstring for the kinds).

    Parameters
    ----------
    tables : mapping or Context
        The canonical tables by name (missing ones are empty).
    kinds : iterable of str, optional
        Restrict to these link kinds.

    Returns
    -------
    DataFrame
        Columns ``kind, from_source, from_event_id, to_source, to_event_id, reason, time, session, flag``.
    """
    ctx = as_context(tables)
    want = set(kinds or KINDS)
    parts = []
    if want & {"exec_session", "exec_descendant"}:
        parts.append(exec_links(ctx))
    if "connect_flow" in want:
        parts.append(connect_flow_links(ctx))
    if "token_use" in want:
        parts.append(token_links(ctx))
    if want & {"alert_process", "alert_pod"}:
        parts.append(alert_links(ctx))
    if want & {"pod_event", "pod_process"}:
        parts.append(pod_create_links(ctx))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    return out[out["kind"].isin(want)].reset_index(drop=True)


def exec_sessions(ctx: Context) -> pd.DataFrame:
    """Audit exec/attach requests that were allowed (one row per request)."""
    a = ctx.t["audit"]
    s = a[
        a["subresource"].isin(["exec", "attach"])
        & a["verb"].isin(["create", "get"])
        & (a["code"].isna() | (a["code"] < 400))
    ]
    return s


def exec_links(ctx: Context) -> pd.DataFrame:
    """``exec_session`` and ``exec_descendant`` links."""
    s = exec_sessions(ctx)
    n = ctx.nodes
    procs = n[n["observed"] & (n["pod"] != "") & n["start"].notna()]
    if s.empty or procs.empty:
        return _empty()
    parent_bin = n.set_index("exec_id")["binary"]
    procs = procs.assign(parent_binary=procs["parent_exec_id"].map(parent_bin).fillna(""))
    cname = ctx.t["processes"].drop_duplicates("exec_id").set_index("exec_id")["container_name"]
    procs = procs.assign(container_name=procs["exec_id"].map(cname).fillna(""))
    sess = s[
        [
            "event_id",
            "time",
            "namespace",
            "name",
            "exec_command",
            "exec_container",
            "subresource",
            "user",
            "source_ip",
        ]
    ].rename(columns={"event_id": "audit_event_id", "time": "t_audit", "name": "pod"})
    m = sess.merge(
        procs[
            [
                "exec_id",
                "start",
                "namespace",
                "pod",
                "binary",
                "args",
                "parent_binary",
                "container_name",
                "event_id",
            ]
        ],
        on=["namespace", "pod"],
    )
    dt = m["start"] - m["t_audit"]
    m = m[(dt >= -EXEC_BEFORE) & (dt <= EXEC_AFTER)]
    m = m[
        (m["exec_container"] == "")
        | (m["container_name"] == "")
        | (m["exec_container"] == m["container_name"])
    ]
    if m.empty:
        return _empty()
    tokens = m["exec_command"].str.split()
    first = basename(tokens.str[0].fillna(""))
    rest = tokens.str[1:].str.join(" ").fillna("")
    same_bin = (first != "") & (first == basename(m["binary"]))
    same_args = same_bin & (rest.str.strip() == m["args"].str.strip())
    from_runtime = is_runtime(m["parent_binary"])
    m = m.assign(score=same_bin * 2 + same_args * 2 + from_runtime * 1, adt=(m["start"] - m["t_audit"]).abs())
    m = m[
        same_bin
        | ((m["subresource"] == "attach") & from_runtime)
        | ((m["exec_command"] == "") & from_runtime)
    ]
    m = m.sort_values(["score", "adt"], ascending=[False, True])
    m = m.drop_duplicates("exec_id").drop_duplicates("audit_event_id")
    if m.empty:
        return _empty()
    reason = (
        "kubectl "
        + m["subresource"]
        + " by "
        + m["user"]
        + " into "
        + m["namespace"]
        + "/"
        + m["pod"]
        + " started "
        + basename(m["binary"])
        + " ("
        + np.where(same_args.loc[m.index], "command and args match", "binary matches")
        + ")"
    )
    direct = _mk(
        "exec_session",
        "audit",
        m["audit_event_id"],
        "tetragon",
        m["event_id"],
        reason,
        m["start"],
        m["audit_event_id"],
    )
    # descendants, breadth first over the parent map (vectorised per level)
    owner = pd.Series(m["audit_event_id"].values, index=m["exec_id"].values)
    found = []
    frontier = owner
    for _ in range(64):
        kids = n[n["parent_exec_id"].isin(frontier.index) & ~n["exec_id"].isin(owner.index)]
        if kids.empty:
            break
        sess_of = kids["parent_exec_id"].map(frontier)
        frontier = pd.Series(sess_of.values, index=kids["exec_id"].values)
        owner = pd.concat([owner, frontier])
        found.append(kids.assign(session=sess_of.values))
    if not found:
        return direct
    d = pd.concat(found, ignore_index=True)
    d = d[d["event_id"] != ""]
    desc = _mk(
        "exec_descendant",
        "audit",
        d["session"],
        "tetragon",
        d["event_id"],
        "started (indirectly) by the exec session: " + basename(d["binary"]),
        d["start"],
        d["session"],
    )
    return pd.concat([direct, desc], ignore_index=True)


def connect_flow_links(ctx: Context) -> pd.DataFrame:
    """Tetragon ``tcp_connect`` -> nearest Hubble flow with the same addresses and ports (+-5 s)."""
    p, f = ctx.t["processes"], ctx.t["flows"]
    c = p[(p["function_name"].str.contains("connect") | (p["event_type"] == "connect")) & (p["daddr"] != "")]
    if c.empty or f.empty:
        return _empty()
    c = c[["event_id", "time", "saddr", "daddr", "sport", "dport", "binary"]].dropna(subset=["time"])
    c = c.assign(sport=c["sport"].fillna(0).astype("int64"), dport=c["dport"].fillna(0).astype("int64"))
    f = (
        f[["event_id", "time", "src_ip", "dst_ip", "src_port", "dst_port"]]
        .rename(
            columns={
                "event_id": "flow_event_id",
                "time": "t_flow",
                "src_ip": "saddr",
                "dst_ip": "daddr",
                "src_port": "sport",
                "dst_port": "dport",
            }
        )
        .dropna(subset=["t_flow"])
    )
    f = f.assign(sport=f["sport"].fillna(0).astype("int64"), dport=f["dport"].fillna(0).astype("int64"))
    with_port = c[c["sport"] > 0].sort_values("time")
    no_port = c[c["sport"] <= 0].sort_values("time")
    out = []
    if not with_port.empty:
        out.append(
            asof_join(
                with_port,
                f,
                left_on="time",
                right_on="t_flow",
                by=["saddr", "daddr", "sport", "dport"],
                direction="nearest",
                tolerance=FLOW_TOLERANCE,
            )
        )
    if not no_port.empty:
        out.append(
            asof_join(
                no_port,
                f.drop(columns="sport"),
                left_on="time",
                right_on="t_flow",
                by=["saddr", "daddr", "dport"],
                direction="nearest",
                tolerance=FLOW_TOLERANCE,
            )
        )
    m = pd.concat(out, ignore_index=True)
    m = m[m["flow_event_id"].notna()]
    if m.empty:
        return _empty()
    reason = (
        basename(m["binary"])
        + " connected "
        + m["saddr"]
        + " -> "
        + m["daddr"]
        + ":"
        + m["dport"].astype(str)
    )
    return _mk("connect_flow", "tetragon", m["event_id"], "hubble", m["flow_event_id"], reason, m["t_flow"])


def token_links(ctx: Context) -> pd.DataFrame:
    """``token_use`` links: token -> each request made with it (flagged ones say why)."""
    u = token_uses(ctx)
    if u.empty:
        return _empty()
    where = np.where(u["resolved_pod"] != "", " (pod " + u["resolved_pod"] + ")", "")
    reason = np.select(
        [u["flag"] == "foreign_ip", u["flag"] == "new_source_ip"],
        [
            "token of pod "
            + u["sa_pod_name"]
            + " ("
            + u["user"]
            + ") used from "
            + u["source_ip"]
            + where
            + ", not from its pod"
            + np.where(u["expected_ip"] != "", " (" + u["expected_ip"] + ")", ""),
            "token of "
            + u["user"]
            + " bound to no pod used from "
            + u["source_ip"]
            + ", a new address (not its first client, and no known pod or node held it)",
        ],
        u["user"] + " request from " + u["source_ip"],
    )
    return _mk("token_use", "token", u["token"], "audit", u["event_id"], reason, u["time"], flag=u["flag"])


def alert_links(ctx: Context) -> pd.DataFrame:
    """``alert_process`` (container + pid, else container + name, +-5 s) and ``alert_pod`` links."""
    a = ctx.t["alerts"]
    a = a[a["container_id"].str.len() >= 12]
    if a.empty:
        return _empty()
    out = []
    n = ctx.nodes
    procs = n[n["observed"] & (n["container_id"] != "") & n["start"].notna()]
    al = (
        a.assign(
            ckey=cid(a["container_id"]).str[:12],
            pid=a["proc_pid"].fillna(-1).astype("int64"),
            pname=a["proc_name"],
        )
        .dropna(subset=["time"])
        .sort_values("time")
    )
    if not procs.empty:
        pr = procs.assign(
            ckey=procs["container_id"].str[:12],
            pid=procs["pid"].fillna(-2).astype("int64"),
            pname=basename(procs["binary"]).str[:15],
        )[["ckey", "pid", "pname", "start", "event_id"]]
        pr = pr.rename(columns={"event_id": "proc_event_id"}).sort_values("start")
        by_pid = asof_join(
            al,
            pr.drop(columns="pname"),
            left_on="time",
            right_on="start",
            by=["ckey", "pid"],
            direction="backward",
        )
        got = by_pid[by_pid["proc_event_id"].notna()]
        rest = al[~al["event_id"].isin(got["event_id"])]
        by_name = asof_join(
            rest.assign(pname=rest["pname"].str[:15]),
            pr.drop(columns="pid"),
            left_on="time",
            right_on="start",
            by=["ckey", "pname"],
            direction="nearest",
            tolerance=FLOW_TOLERANCE,
        )
        by_name = by_name[by_name["proc_event_id"].notna()]
        for frame, how in ((got, "container and pid"), (by_name, "container and process name")):
            if not frame.empty:
                out.append(
                    _mk(
                        "alert_process",
                        "falco",
                        frame["event_id"],
                        "tetragon",
                        frame["proc_event_id"],
                        "Falco '"
                        + frame["rule"]
                        + "' is about "
                        + frame["proc_name"]
                        + " (same "
                        + how
                        + ")",
                        frame["start"],
                    )
                )
    r = ctx.resolver
    ns, pod = a["namespace"].copy(), a["pod"].copy()
    miss = pod == ""
    for i in a.index[miss.values]:
        e = r.container(a.at[i, "container_id"], a.at[i, "time"])
        if e is not None and e.pod:
            ns.at[i], pod.at[i] = e.namespace, e.pod
    has = pod != ""
    if has.any():
        out.append(
            _mk(
                "alert_pod",
                "falco",
                a.loc[has, "event_id"],
                "pod",
                (ns + "/" + pod)[has],
                "Falco '" + a.loc[has, "rule"] + "' in pod " + (ns + "/" + pod)[has],
                a.loc[has, "time"],
            )
        )
    return pd.concat(out, ignore_index=True) if out else _empty()


def pod_create_links(ctx: Context) -> pd.DataFrame:
    """``pod_event`` and ``pod_process`` links for each successful pod create in audit."""
    a = ctx.t["audit"]
    c = a[
        (a["resource"] == "pods")
        & (a["subresource"] == "")
        & (a["verb"] == "create")
        & (a["code"].isna() | (a["code"] < 300))
    ]
    if c.empty:
        return _empty()
    name = c["name"].copy()
    if (name == "").any():
        from kubeforensics.correlate.observations import pod_doc

        for i in c.index[(name == "").values]:
            name.at[i] = pod_doc(c.loc[i]).get("pod", "")
    c = c.assign(pod=name)[["event_id", "time", "namespace", "pod"]].rename(
        columns={"event_id": "create_id", "time": "t_create"}
    )
    c = c[c["pod"] != ""]
    out = []
    e = ctx.t["k8s_events"]
    e = e[(e["kind"] == "Pod") & (e["name"] != "")]
    if not e.empty:
        m = c.merge(
            e[["event_id", "time", "namespace", "name", "reason"]].rename(columns={"name": "pod"}),
            on=["namespace", "pod"],
        )
        m = m[m["time"] >= m["t_create"] - pd.Timedelta(seconds=5)]
        if not m.empty:
            out.append(
                _mk(
                    "pod_event",
                    "audit",
                    m["create_id"],
                    "k8s-events",
                    m["event_id"],
                    "Event " + m["reason"] + " about pod " + m["namespace"] + "/" + m["pod"],
                    m["time"],
                )
            )
    n = ctx.nodes
    first = n[n["observed"] & (n["pod"] != "") & n["start"].notna()].sort_values("start")
    first = first.drop_duplicates(["namespace", "pod", "container_id"])
    m = c.merge(first[["event_id", "start", "namespace", "pod", "binary"]], on=["namespace", "pod"])
    m = m[m["start"] >= m["t_create"] - pd.Timedelta(seconds=5)]
    if not m.empty:
        out.append(
            _mk(
                "pod_process",
                "audit",
                m["create_id"],
                "tetragon",
                m["event_id"],
                "first process of a container of "
                + m["namespace"]
                + "/"
                + m["pod"]
                + ": "
                + basename(m["binary"]),
                m["start"],
            )
        )
    return pd.concat(out, ignore_index=True) if out else _empty()
