"""Questions of scenario E: SSRF, cloud metadata, internal discovery, DNS exfiltration."""

from __future__ import annotations

import pandas as pd

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import (
    at,
    col,
    event_ids,
    is_public,
    isin,
    maybe_public,
    none_found,
    sql_key,
    sql_str,
    when,
    with_techniques,
)

METADATA = ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")


def _pod(inv) -> str:
    a = inv.answers.get("metadata_access")
    return a.facts.get("pod", "") if a is not None and a.found else ""


def metadata_access(inv) -> Answer:
    """Which pod/process reached the cloud metadata endpoint, was it allowed, and which request caused it?"""
    q = "Which pod/process reached the metadata endpoint and what did it get?"
    params: list = []
    p = inv.slice("processes", isin("daddr", METADATA, params), params)
    params = []
    f = inv.slice("flows", f"{isin('dst_ip', METADATA, params)} AND {sql_str('src_pod')} <> ''", params)
    pc = p[col(p, "daddr").isin(METADATA)]
    fl = f[col(f, "dst_ip").isin(METADATA) & (col(f, "src_pod") != "")]
    if pc.empty and fl.empty:
        return none_found(q, "no connection to a cloud metadata address")
    if not pc.empty:
        r = pc.sort_values("time").iloc[0]
        pod, proc, t0 = f"{r['namespace']}/{r['pod']}", r["binary"], r["time"]
    else:
        r = fl.sort_values("time").iloc[0]
        pod, proc, t0 = f"{r['src_namespace']}/{r['src_pod']}", "", r["time"]
    mine = fl[(col(fl, "src_namespace") + "/" + col(fl, "src_pod")) == pod]
    # the request: an HTTP flow from a public address whose URL names the metadata address (it may enter
    # through a front end), else the last public flow into the pod just before the connection
    params = []
    f = inv.slice("flows", f"time <= {at(t0 + pd.Timedelta(seconds=2), params, rounding='ceil')} "
                  f"AND time >= {at(t0 - pd.Timedelta(minutes=5), params)} AND {maybe_public('src_ip')}", params)
    near = f[(f["time"] <= t0 + pd.Timedelta(seconds=2)) & (f["time"] >= t0 - pd.Timedelta(minutes=5))
             & f["src_ip"].map(is_public).astype(bool)]
    req = near[col(near, "http_url").str.contains("|".join(m.replace(".", r"\.") for m in METADATA) + "|metadata")]
    if req.empty:
        req = near[(col(near, "dst_namespace") + "/" + col(near, "dst_pod")) == pod]
    req = req.sort_values("time")
    facts = {"pod": pod, "process": proc, "ip": (pc["daddr"].iloc[0] if not pc.empty else r["dst_ip"]),
             "verdicts": sorted(set(col(mine, "verdict"))), "time": t0,
             "attacker_ip": req["src_ip"].iloc[-1] if not req.empty else "",
             "url": col(req, "http_url").iloc[-1] if not req.empty else ""}
    got = "was dropped by policy" if facts["verdicts"] == ["DROPPED"] else f"verdicts {', '.join(facts['verdicts']) or '?'}"
    text = (f"{proc or 'a process'} in {pod} connected to {facts['ip']} at {when(t0)} ({got})"
            + (f"; request from {facts['attacker_ip']}: {facts['url']}" if facts["attacker_ip"] else ""))
    return Answer(q, text, facts, list(pc["event_id"].head(5)) + list(mine["event_id"].head(5))
                  + list(req["event_id"].tail(1)), mine[["time", "verdict", "drop_reason", "dst_ip", "dst_port"]].head(20))


def enumeration(inv) -> Answer:
    """What did the pod enumerate (scans, internal DNS lookups)?"""
    q = "What was enumerated?"
    pod = _pod(inv)
    f = with_techniques(inv.findings, "T1046")
    f = f[(col(f, "namespace") + "/" + col(f, "pod")) == pod] if pod else f
    fl = inv.slice("flows", f"{sql_key('src_namespace', 'src_pod')} = ?" if pod else "FALSE", [pod] if pod else [])
    mine = fl[(col(fl, "src_namespace") + "/" + col(fl, "src_pod")) == pod] if pod else fl.iloc[0:0]
    targets = mine[~mine["dst_ip"].map(is_public).astype(bool) & ~col(mine, "dst_ip").isin(METADATA)]
    if f.empty and targets.empty:
        return none_found(q, "no scan or internal discovery from the pod")
    dns = sorted(set(col(mine, "dns_query")) - {""})
    internal_dns = [d for d in dns if ".svc" in d or ".cluster.local" in d]
    facts = {"pod": pod, "targets": int(targets[["dst_ip", "dst_port"]].drop_duplicates().shape[0]),
             "dropped": int((col(targets, "verdict") == "DROPPED").sum()), "dns_lookups": internal_dns[:50],
             "scan_findings": len(f)}
    text = (f"{pod} tried {facts['targets']} internal ip:port targets ({facts['dropped']} dropped flows) and "
            f"looked up {len(internal_dns)} internal service names")
    return Answer(q, text, facts, event_ids(f)[:20], f[["first_seen", "rule_id", "summary"]])


def dns_exfiltration(inv) -> Answer:
    """Which processes sent DNS that did not go to kube-dns, how much, when, under which domain?"""
    q = "Which processes made DNS traffic that did not go to kube-dns, how much, when?"
    f = with_techniques(inv.findings, "T1071.004")
    p = inv.slice("processes", f"dport = 53 AND {maybe_public('daddr')}")
    dns = p[(p["dport"].fillna(0) == 53) & p["daddr"].map(is_public).astype(bool)]
    if f.empty and dns.empty:
        return none_found(q, "no DNS to a resolver outside the cluster")
    procs = sorted(set(col(dns, "binary")))
    resolvers = sorted(set(col(dns, "daddr")))
    params: list = []
    ids_or_pods = (f"({isin('event_id', event_ids(f), params)} OR "
                   f"{isin(sql_key('src_namespace', 'src_pod'), set(col(f, 'namespace') + '/' + col(f, 'pod')), params)})")
    fl = inv.slice("flows", f"{sql_str('dns_query')} <> '' AND {ids_or_pods}", params)
    q_names = col(fl, "dns_query")
    named = q_names != ""
    inside = q_names.str.rstrip(".").str.endswith(("cluster.local", ".svc", ".internal"))
    # the names the DNS findings rest on (tunnel queries); else every outside name the pods looked up
    mine = fl[fl["event_id"].isin(set(event_ids(f))) & named & ~inside]
    if mine.empty:
        pods = set(col(f, "namespace") + "/" + col(f, "pod"))
        mine = fl[(col(fl, "src_namespace") + "/" + col(fl, "src_pod")).isin(pods) & named & ~inside]
    doms = mine["dns_query"].str.rstrip(".").str.split(".").str[-2:].str.join(".").value_counts()
    facts = {"processes": procs, "resolvers": resolvers, "packets": len(dns),
             "first": dns["time"].min() if not dns.empty else None,
             "last": dns["time"].max() if not dns.empty else None,
             "domain": doms.index[0] if len(doms) else "", "queries": int(doms.iloc[0]) if len(doms) else 0}
    text = (f"{', '.join(procs) or '?'} sent {len(dns)} DNS packets to {', '.join(resolvers) or '?'} "
            f"({when(facts['first'])} to {when(facts['last'])}); {facts['queries']} queries under {facts['domain'] or '?'}")
    return Answer(q, text, facts, event_ids(f)[:20], f[["first_seen", "rule_id", "pod", "summary"]])
