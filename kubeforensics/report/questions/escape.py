"""Questions of scenario A: privileged pod, escape to the host, hidden static pod, C2, exfiltration.

Each function takes an :class:`~kubeforensics.report.session.Investigation` and
returns an :class:`~kubeforensics.report.answers.Answer`; answers build on the
earlier ones through ``inv.answers`` (the pod the escape went through, ...).
"""

from __future__ import annotations

import pandas as pd

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import (
    at,
    col,
    destination_tables,
    event_ids,
    flag,
    is_public,
    isin,
    none_found,
    pod_weights,
    seed_match,
    sql_key,
    sql_str,
    top_public_destinations,
    when,
    with_techniques,
)

ESCAPE_BINARIES = ("nsenter", "chroot", "unshare")
HOSTNS = "coalesce(len(host_namespaces), 0) > 0"


def _pod(inv) -> str:
    a = inv.answers.get("pod_creation")
    return a.facts.get("pod", "") if a is not None else ""


def pod_creation(inv) -> Answer:
    """Who created the privileged/host-namespace pod, from where, allowed by which binding?"""
    q = "Who created the privileged pod, from where, allowed by which binding?"
    a = inv.slice("audit", "verb = 'create' AND resource = 'pods' AND coalesce(subresource, '') = '' "
                  "AND coalesce(code, 0) < 300 AND (coalesce(pod_privileged, false) "
                  "OR coalesce(pod_host_pid, false) OR coalesce(pod_host_network, false))")
    m = ((col(a, "verb") == "create") & (col(a, "resource") == "pods") & (col(a, "subresource") == "")
         & (a["code"].fillna(0) < 300)
         & (flag(a, "pod_privileged") | flag(a, "pod_host_pid") | flag(a, "pod_host_network")))
    c = a[m].copy()
    if c.empty:
        return none_found(q, "no successful create of a privileged or host-namespace pod in the audit log")
    c["key"] = col(c, "namespace") + "/" + col(c, "name")
    weights = pod_weights(with_techniques(inv.findings, "T1611", "T1543", "T1609", "T1610"))
    c["score"] = c["key"].map(weights).fillna(0) + c["source_ip"].map(is_public).astype(bool) * 20.0
    if inv.seed and seed_match(c, inv.seed, ["name", "user", "source_ip"]).any():
        c = c[seed_match(c, inv.seed, ["name", "user", "source_ip"])]
    r = c.sort_values(["score", "time"], ascending=[False, True]).iloc[0]
    facts = {"user": r["user"], "source_ip": r["source_ip"], "pod": r["key"], "time": r["time"],
             "privileged": bool(flag(c.loc[[r.name]], "pod_privileged").iloc[0]),
             "host_pid": bool(flag(c.loc[[r.name]], "pod_host_pid").iloc[0]),
             "host_network": bool(flag(c.loc[[r.name]], "pod_host_network").iloc[0]),
             "images": list(r["pod_images"]) if r["pod_images"] is not None else [],
             "user_agent": col(c.loc[[r.name]], "user_agent").iloc[0],
             "authorized_by": col(c.loc[[r.name]], "authz_reason").iloc[0]}
    text = (f"{facts['user']} created {facts['pod']} from {facts['source_ip']} at {when(r['time'])} "
            f"(privileged={facts['privileged']}, hostPID={facts['host_pid']}, hostNetwork={facts['host_network']}); "
            f"{facts['authorized_by'] or 'no authorization reason recorded'}")
    table = c.sort_values("score", ascending=False)[["time", "user", "source_ip", "key", "score"]].head(10)
    return Answer(q, text, facts, [r["event_id"]], table.rename(columns={"key": "pod"}))


def exec_session(inv) -> Answer:
    """Which exec session into the pod led to the escape?"""
    q = "Which exec session led to the escape?"
    pod = _pod(inv)
    a = inv.slice("audit", "subresource IN ('exec', 'attach') AND coalesce(code, 0) < 400")
    m = col(a, "subresource").isin(["exec", "attach"]) & (a["code"].fillna(0) < 400)
    e = a[m].copy()
    e["key"] = col(e, "namespace") + "/" + col(e, "name")
    cand = e[e["key"] == pod] if pod else e
    if cand.empty:
        ex = with_techniques(inv.findings, "T1611")
        pods = set(col(ex, "namespace") + "/" + col(ex, "pod"))
        cand = e[e["key"].isin(pods)]
    if cand.empty:
        return none_found(q, f"no pods/exec or attach{' into ' + pod if pod else ''} in the audit log")
    r = cand.sort_values("time").iloc[0]
    facts = {"user": r["user"], "source_ip": r["source_ip"], "pod": r["key"], "command": col(cand.loc[[r.name]],
             "exec_command").iloc[0], "time": r["time"], "audit_id": r["audit_id"], "event_id": r["event_id"]}
    text = (f"{facts['user']} ran `{facts['command']}` in {facts['pod']} from {facts['source_ip']} at "
            f"{when(r['time'])} (audit id {facts['audit_id']})")
    return Answer(q, text, facts, [r["event_id"]], cand[["time", "user", "source_ip", "key", "exec_command"]])


def host_processes(inv) -> Answer:
    """Which process entered the host namespaces, and what ran there afterwards?"""
    q = "Which process escaped to the host, and which processes ran in host namespaces afterwards?"
    pod = _pod(inv)
    escaping = " OR ".join(f"\"binary\" LIKE '%{b}'" for b in ESCAPE_BINARIES)
    p = inv.slice("processes", f"({sql_key('namespace', 'pod')} = ? OR {HOSTNS}) AND (contains({sql_str('function_name')}, "
                  f"'setns') OR {escaping})", [pod])
    pod_key = col(p, "namespace") + "/" + col(p, "pod")
    hostns = p["host_namespaces"].map(lambda v: v is not None and len(v) > 0)
    base = p[(pod_key == pod) if pod else hostns]
    setns = base[col(base, "function_name").str.contains("setns")
                 | col(base, "binary").str.rsplit("/", n=1).str[-1].isin(ESCAPE_BINARIES)]
    if setns.empty:
        return none_found(q, f"no setns/nsenter/chroot{' in ' + pod if pod else ''}")
    first = setns.sort_values("time").iloc[0]
    params: list = []
    since = at(first["time"], params)
    p = inv.slice("processes", f"time >= {since} AND {sql_str('node')} = ? AND {HOSTNS} AND event_type = 'exec'",
                  [*params, first["node"]])
    hostns = p["host_namespaces"].map(lambda v: v is not None and len(v) > 0)
    after = p[(p["time"] >= first["time"]) & (col(p, "node") == first["node"]) & hostns
              & (col(p, "event_type") == "exec")]
    after_key = col(after, "namespace") + "/" + col(after, "pod")
    after = after[(after_key == pod) | (col(after, "pod") == "")] if pod else after
    binaries = list(dict.fromkeys(col(after, "binary")))
    facts = {"process": first["binary"], "args": col(setns.loc[[first.name]], "args").iloc[0],
             "node": first["node"], "pod": pod or f"{first['namespace']}/{first['pod']}", "time": first["time"],
             "exec_id": first["exec_id"], "host_processes": binaries}
    text = (f"`{facts['process']} {facts['args']}` entered the host namespaces of {facts['node']} at "
            f"{when(first['time'])}; {len(binaries)} programs ran in host namespaces afterwards")
    table = after[["time", "binary", "args", "pod"]].drop_duplicates(["binary", "args"]).head(30)
    return Answer(q, text, facts, [first["event_id"], *after["event_id"].head(20)], table)


def hidden_pods(inv) -> Answer:
    """Which containers or pods ran with no API object (static pods in a namespace that does not exist)?"""
    q = "Which containers have no API object?"
    from kubeforensics.correlate import blind_spots

    bs = blind_spots(inv.context)
    bs = bs[bs["kind"] == "no_api_object"]
    f = with_techniques(inv.findings, "T1543.005", "MS-TA9017", "T1564")
    named = f[(col(f, "namespace") != "") & (col(f, "pod") != "")]
    objs = inv.slice("objects", columns=["namespace", "name"])
    known = set(col(objs, "namespace") + "/" + col(objs, "name"))
    pods = sorted({f"{n}/{p}" for n, p in zip(col(named, "namespace"), col(named, "pod"))} - known
                  - {_pod(inv)})
    containers = sorted(set(col(bs, "container_id")) - {""})
    if not pods and not containers:
        return none_found(q, "every container that ran is owned by an API object")
    nodes = sorted(set(col(bs, "node")) - {""})
    facts = {"pods": pods, "container_ids": containers, "nodes": nodes}
    text = (f"{len(pods)} pod(s) with no API object: {', '.join(pods) or '(unnamed)'}; "
            f"{len(containers)} container(s) ran processes without an owning object on {', '.join(nodes) or '?'}")
    return Answer(q, text, facts, event_ids(named) + list(bs["event_id"]), bs[["time", "node", "container_id",
                                                                                "process", "reason"]])


def external_endpoints(inv) -> Answer:
    """What external endpoints were contacted from the escaped node and hidden pods, how often?"""
    q = "What external endpoints were contacted, how often?"
    esc = inv.answers.get("host_processes")
    hid = inv.answers.get("hidden_pods")
    nodes = set((hid.facts.get("nodes") if hid else []) or []) | ({esc.facts["node"]} if esc and esc.found else set())
    pods = set((hid.facts.get("pods") if hid else []) or [])
    since = esc.facts.get("time") if esc and esc.found else None
    d = top_public_destinations(destination_tables(inv, pods=pods, nodes=nodes, since=since), pods=pods,
                                nodes=nodes, since=since)
    if d.empty:
        return none_found(q, "no connection to a public address after the escape")
    top = d.iloc[0]
    facts = {"ips": list(d["ip"]), "c2": top["ip"], "c2_ports": top["ports"], "c2_count": int(top["count"]),
             "names": sorted({n for lst in d["names"] for n in lst})}
    text = (f"{len(d)} public address(es); most contacted {top['ip']} on port(s) "
            f"{', '.join(map(str, top['ports']))} ({int(top['count'])} times, {when(top['first'])} to "
            f"{when(top['last'])})")
    return Answer(q, text, facts, list(top["event_ids"][:20]), d.drop(columns=["event_ids"]))


def still_running(inv) -> Answer:
    """Is anything still running at the end of the evidence (hidden pods, C2 traffic)?"""
    q = "Is anything still running?"
    ends = inv.time_ends()
    if not ends:
        return none_found(q, "the case is empty")
    end = max(ends)
    recent = end - pd.Timedelta(minutes=10)
    hid = inv.answers.get("hidden_pods")
    ext = inv.answers.get("external_endpoints")
    active = []
    if hid is not None and hid.found:
        cids = set(hid.facts.get("container_ids", []))
        params: list = []
        cond = isin(sql_str("container_id"), sorted(cids), params)
        p = inv.slice("processes", f"{cond} AND time >= {at(recent, params)}", params)
        pr = p[col(p, "container_id").isin(cids) & (p["time"] >= recent)]
        if not pr.empty:
            active.append(f"hidden containers still ran processes until {when(pr['time'].max())}")
    if ext is not None and ext.found:
        params = [ext.facts["c2"]]
        f = inv.slice("flows", f"dst_ip = ? AND time >= {at(recent, params)}", params)
        fl = f[(col(f, "dst_ip") == ext.facts["c2"]) & (f["time"] >= recent)]
        if not fl.empty:
            active.append(f"traffic to {ext.facts['c2']} until {when(fl['time'].max())}")
    facts = {"running": bool(active), "evidence_ends": end, "activity": active}
    text = ("Yes: " + "; ".join(active)) if active else f"No attack activity in the last 10 minutes of evidence (ends {when(end)})"
    return Answer(q, text, facts, [])
