"""Questions of scenario B: exposed app RCE, token theft, discovery, secrets, cryptominer."""

from __future__ import annotations

import pandas as pd

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import (
    at,
    col,
    destination_tables,
    event_ids,
    is_public,
    isin,
    maybe_public,
    none_found,
    pod_weights,
    rows,
    seed_match,
    sql_key,
    sql_str,
    top_public_destinations,
    when,
    with_techniques,
)


def _pod(inv) -> str:
    a = inv.answers.get("initial_access")
    return a.facts.get("pod", "") if a is not None and a.found else ""


def initial_access(inv) -> Answer:
    """Which exposed pod was exploited, by which request, and what did the server spawn?"""
    q = "What was the initial request and what did the server spawn?"
    f = with_techniques(inv.findings, "T1190", "T1059.004")
    f = f[col(f, "pod") != ""]
    if inv.seed and seed_match(f, inv.seed, ["pod"]).any():
        f = f[seed_match(f, inv.seed, ["pod"])]
    if f.empty:
        return none_found(q, "no web-server-spawned shell (T1190/T1059.004) in the findings")
    w = pod_weights(inv.findings)
    f = f.assign(key=col(f, "namespace") + "/" + col(f, "pod"))
    f = f.assign(score=f["key"].map(w).fillna(0)).sort_values(["score", "first_seen"], ascending=[False, True])
    lead = f.iloc[0]
    pod, t0 = lead["key"], f[f["key"] == lead["key"]]["first_seen"].min()
    ids = event_ids(f[f["key"] == pod])
    params: list = []
    p = rows({"processes": inv.slice("processes", isin("event_id", ids, params), params)}, "processes", ids)
    spawned = p[col(p, "event_type") == "exec"]
    first = spawned.iloc[0] if not spawned.empty else None
    # the request: the last flow from a public address into the pod before the shell
    params = [pod]
    fl = inv.slice("flows", f"{sql_key('dst_namespace', 'dst_pod')} = ? AND {maybe_public('src_ip')} "
                   f"AND time <= {at(t0 + pd.Timedelta(seconds=5), params, rounding='ceil')}", params)
    into = fl[((col(fl, "dst_namespace") + "/" + col(fl, "dst_pod")) == pod) & fl["src_ip"].map(is_public).astype(bool)
              & (fl["time"] <= t0 + pd.Timedelta(seconds=5))]
    req = into.sort_values("time").iloc[-1] if not into.empty else None
    facts = {"pod": pod, "source_ip": req["src_ip"] if req is not None else "",
             "url": col(into, "http_url").iloc[-1] if req is not None else "",
             "server": first["parent_binary"] if first is not None else "",
             "spawned": f"{first['binary']} {first['args']}".strip() if first is not None else "", "time": t0}
    text = (f"{pod} was exploited{' from ' + facts['source_ip'] if facts['source_ip'] else ''}"
            f"{' (' + facts['url'] + ')' if facts['url'] else ''}; {facts['server'] or 'the server'} spawned "
            f"`{facts['spawned']}` at {when(t0)}")
    ev = ([req["event_id"]] if req is not None else []) + event_ids(f[f["key"] == pod])
    return Answer(q, text, facts, ev, spawned[["time", "parent_binary", "binary", "args"]].head(20))


def token_theft(inv) -> Answer:
    """Was the pod's service-account token read, and who used it next, from where?"""
    q = "Was the token read and where was it used next?"
    pod = _pod(inv)
    f = with_techniques(inv.findings, "T1528")
    f = f[(col(f, "namespace") + "/" + col(f, "pod")) == pod] if pod else f
    ns, name = (pod.split("/", 1) + [""])[:2] if pod else ("", "")
    a = inv.slice("audit", f"sa_pod_name = ? AND {sql_str('user')} LIKE 'system:serviceaccount:%'" if name
                  else "FALSE", [name] if name else [])
    used = a[(col(a, "sa_pod_name") == name) & (col(a, "namespace").isin([ns, ""]) | True)] if name else a.iloc[0:0]
    used = used[col(used, "user").str.startswith("system:serviceaccount:")]
    if f.empty and used.empty:
        return none_found(q, "no token read (T1528) and no use of the pod's service-account token")
    users = list(dict.fromkeys(col(used, "user")))
    ips = list(dict.fromkeys(col(used, "source_ip")))
    facts = {"token_read": not f.empty, "pod": pod, "service_account": users[0] if users else "",
             "used_from": ips, "requests": len(used),
             "first_use": used["time"].min() if not used.empty else None}
    text = (f"token of {pod or '?'} {'was read' if not f.empty else 'read not observed'}; used as "
            f"{facts['service_account'] or '?'} from {', '.join(ips) or '?'} in {len(used)} API requests")
    return Answer(q, text, facts, event_ids(f) + list(used["event_id"].head(20)),
                  used[["time", "user", "source_ip", "verb", "resource", "namespace", "code"]].head(30))


def enumeration(inv) -> Answer:
    """What did the stolen identity enumerate, and what was denied?"""
    q = "What was enumerated, what was denied?"
    tok = inv.answers.get("token_theft")
    user = tok.facts.get("service_account", "") if tok is not None and tok.found else ""
    a = inv.slice("audit", "\"user\" = ? AND verb IN ('list', 'get', 'watch', 'create')" if user else "FALSE",
                  [user] if user else [])
    d = a[col(a, "user") == user] if user else a.iloc[0:0]
    d = d[col(d, "verb").isin(["list", "get", "watch", "create"]) & col(d, "resource").ne("")]
    if d.empty:
        return none_found(q, "no API requests by the stolen identity")
    denied = d[d["code"].fillna(0) == 403]
    what = (col(d, "verb") + " " + col(d, "resource") + (" in " + col(d, "namespace")).where(col(d, "namespace") != "",
                                                                                             " (cluster)"))
    facts = {"user": user, "requests": len(d), "denied": len(denied),
             "resources": sorted(set(col(d, "resource"))), "denied_resources": sorted(set(col(denied, "resource")))}
    text = f"{user} made {len(d)} requests ({len(denied)} denied): {', '.join(sorted(set(what))[:8])}"
    return Answer(q, text, facts, list(denied["event_id"].head(20)),
                  d.assign(what=what)[["time", "what", "name", "code"]].head(40))


def secrets_read(inv) -> Answer:
    """Which secrets were listed or read by the stolen identity?"""
    q = "Which secrets were read?"
    tok = inv.answers.get("token_theft")
    user = tok.facts.get("service_account", "") if tok is not None and tok.found else ""
    params: list = []
    a = inv.slice("audit", "resource = 'secrets' AND coalesce(code, 0) < 300"
                  + (f" AND {isin(sql_str('user'), [user], params)}" if user else ""), params)
    s = a[(col(a, "resource") == "secrets") & (a["code"].fillna(0) < 300)]
    s = s[col(s, "user") == user] if user else s[~col(s, "user").str.startswith("system:")]
    if s.empty:
        return none_found(q, "no successful secrets request by the identity")
    got = s[col(s, "verb") == "get"]
    names = sorted(set(col(got, "namespace") + "/" + col(got, "name")))
    listed = sorted(set(col(s[col(s, "verb") == "list"], "namespace")))
    facts = {"user": user, "secrets": names, "listed_namespaces": listed}
    text = f"{user or 'someone'} read {', '.join(names) or 'no secret by name'}; listed secrets in {', '.join(listed) or '-'}"
    return Answer(q, text, facts, list(s["event_id"]), s[["time", "user", "verb", "namespace", "name", "source_ip"]])


def miner_workload(inv) -> Answer:
    """Who created the miner workload, which pods ran it, which pool endpoints did it contact?"""
    q = "Who created the miner workload, which pods, which pool endpoints?"
    f = with_techniques(inv.findings, "T1496")
    if f.empty:
        return none_found(q, "no mining activity (T1496) in the findings")
    pods = sorted(set(col(f, "namespace") + "/" + col(f, "pod")) - {"/"})
    params: list = []
    p = inv.slice("processes", isin(sql_key("namespace", "pod"), pods, params), params)
    pr = p[(col(p, "namespace") + "/" + col(p, "pod")).isin(pods)]
    workloads = sorted(set(col(pr, "workload")) - {""})
    images = sorted(set(col(pr, "image")) - {""})
    params = []
    a = inv.slice("audit", f"verb = 'create' AND {isin('name', workloads, params)} AND coalesce(code, 0) < 300", params)
    cr = a[(col(a, "verb") == "create") & col(a, "name").isin(workloads) & (a["code"].fillna(0) < 300)
           & col(a, "resource").isin(["deployments", "daemonsets", "statefulsets", "replicasets", "jobs",
                                      "cronjobs", "pods"])]
    creator = cr.sort_values("time").iloc[0] if not cr.empty else None
    dst = top_public_destinations(destination_tables(inv, pods=pods), pods=pods)
    pool = [f"{r.ip}:{port}" for r in dst.itertuples() for port in r.ports]
    facts = {"pods": pods, "workload": (f"{creator['namespace']}/{creator['name']}" if creator is not None
                                        else ", ".join(workloads)),
             "creator": creator["user"] if creator is not None else "",
             "creator_ip": creator["source_ip"] if creator is not None else "",
             "images": images or (list(creator["pod_images"]) if creator is not None and creator["pod_images"]
                                  is not None else []),
             "pool_endpoints": pool, "pool_ips": list(dst["ip"])}
    text = (f"{facts['creator'] or '?'} created {facts['workload'] or '?'}; {len(pods)} pod(s) mined "
            f"({', '.join(pods)}) against {', '.join(pool) or '?'}")
    ev = ([creator["event_id"]] if creator is not None else []) + event_ids(f)
    return Answer(q, text, facts, ev, dst.drop(columns=["event_ids"]))
