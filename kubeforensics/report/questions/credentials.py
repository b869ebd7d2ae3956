"""Questions of scenario C: stolen or anonymous credentials, kubectl exec, data theft."""

from __future__ import annotations

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import (
    actor_weights,
    col,
    event_ids,
    is_public,
    is_system,
    isin,
    maybe_public,
    none_found,
    sql_key,
    sql_str,
    when,
    with_techniques,
)


def _ident(inv) -> tuple[str, str]:
    a = inv.answers.get("first_abnormal")
    if a is None or not a.found:
        return "", ""
    return a.facts["user"], a.facts["source_ip"]


def first_abnormal(inv) -> Answer:
    """The first abnormal request: identity, IP, user agent, credential id."""
    q = "First abnormal request: identity, IPs, agents?"
    a = inv.slice("audit", f"{maybe_public('source_ip')} AND {sql_str('user')} NOT LIKE 'system:node:%'")
    ext = a[a["source_ip"].map(is_public).astype(bool) & ~col(a, "user").str.startswith("system:node:")]
    if inv.seed:
        s = str(inv.seed)
        ext = ext[(col(ext, "user") == s) | (col(ext, "source_ip") == s)] if (
            (col(ext, "user") == s) | (col(ext, "source_ip") == s)).any() else ext
    if ext.empty:
        return none_found(q, "no API request from a public address")
    w = actor_weights(inv.findings)
    users = ext[col(ext, "user") != "system:anonymous"]
    scored = users.assign(score=col(users, "user").map(w).fillna(0))
    if scored.empty:
        return none_found(q, "only anonymous requests from public addresses")
    user = scored.sort_values(["score", "time"], ascending=[False, True]).iloc[0]["user"]
    mine = ext[col(ext, "user") == user].sort_values("time")
    first = mine.iloc[0]
    ip = first["source_ip"]
    anon = ext[(col(ext, "user") == "system:anonymous") & (col(ext, "source_ip") == ip)]
    facts = {"user": user, "source_ip": ip, "user_agent": col(mine, "user_agent").iloc[0],
             "credential_id": col(mine, "sa_credential_id").iloc[0], "time": first["time"],
             "anonymous_probes": len(anon), "ips": sorted(set(col(mine, "source_ip")))}
    text = (f"{user} from {ip} ({facts['user_agent'] or 'no user agent'}) at {when(first['time'])}"
            f"{', credential ' + facts['credential_id'] if facts['credential_id'] else ''}"
            f"{f'; {len(anon)} anonymous requests from the same address' if len(anon) else ''}")
    return Answer(q, text, facts, [first["event_id"]] + list(anon["event_id"].head(5)),
                  mine[["time", "verb", "resource", "namespace", "name", "code", "user_agent"]].head(30))


def legitimate_use(inv) -> Answer:
    """Was the same credential also used legitimately (other addresses, other agents)?"""
    q = "Was the credential also used legitimately?"
    user, ip = _ident(inv)
    if not user:
        return none_found(q, "no abnormal identity")
    a = inv.slice("audit", "\"user\" = ?", [user])
    other = a[(col(a, "user") == user) & (col(a, "source_ip") != ip)]
    other_ips, agents = sorted(set(col(other, "source_ip"))), sorted(set(col(other, "user_agent")))
    facts = {"user": user, "other_ips": other_ips, "requests": len(other), "user_agents": agents}
    text = (f"{user} was also used from {', '.join(other_ips)} ({len(other)} requests, agents "
            f"{', '.join(agents)})" if len(other) else f"{user} was used only from {ip}")
    return Answer(q, text, facts if len(other) else {"user": user, "other_ips": []}, list(other["event_id"].head(5)))


def exec_sessions(inv) -> Answer:
    """Which pods were exec'd into by the identity, with which commands; does the process tree match?"""
    q = "Which pods, which commands; does the audit record match the process tree?"
    user, _ = _ident(inv)
    a = inv.slice("audit", f"subresource IN ('exec', 'attach', 'portforward') AND {sql_str('user')} = ?", [user])
    e = a[col(a, "subresource").isin(["exec", "attach", "portforward"]) & (col(a, "user") == user)]
    if e.empty:
        return none_found(q, f"no exec/attach/port-forward by {user or 'the identity'}")
    key = col(e, "namespace") + "/" + col(e, "name")
    ex = e[col(e, "subresource") == "exec"]
    pf = e[col(e, "subresource") == "portforward"]
    pods = sorted(set(key[ex.index]))
    params: list = []
    p = inv.slice("processes", f"{isin(sql_key('namespace', 'pod'), pods, params)} AND event_type = 'exec'", params)
    procs = p[(col(p, "namespace") + "/" + col(p, "pod")).isin(pods) & (col(p, "event_type") == "exec")
              & (p["time"] >= e["time"].min())]
    cmds = sorted(set(col(ex, "exec_command")) - {""})
    seen = set(col(procs, "binary").str.rsplit("/", n=1).str[-1])
    portforward, processes = sorted(set(key[pf.index])), sorted(set(col(procs, "binary")))
    matched = all(c.split(" ")[0].rsplit("/", 1)[-1] in seen for c in cmds)
    facts = {"pods": pods, "commands": cmds, "portforward": portforward, "processes": processes, "matched": matched}
    text = (f"{user} exec'd into {', '.join(pods)} ({'; '.join(cmds)}); processes seen there: "
            f"{len(processes)}; audit commands {'all' if matched else 'not all'} found in the "
            f"process events" + (f"; port-forward to {', '.join(portforward)}" if len(pf) else ""))
    return Answer(q, text, facts, list(e["event_id"]), procs[["time", "pod", "parent_binary", "binary", "args"]].head(40))


def data_theft(inv) -> Answer:
    """What data was collected and what left (archives, kubectl cp, database dumps)?"""
    q = "What data left?"
    f = with_techniques(inv.findings, "T1041", "T1560", "T1005", "T1552.001")
    user, _ = _ident(inv)
    sess = inv.answers.get("exec_sessions")
    pods = set(sess.facts.get("pods", [])) if sess is not None and sess.found else set()
    key = col(f, "namespace") + "/" + col(f, "pod")
    f = f[key.isin(pods) | (col(f, "actor") == user)] if (pods or user) else f
    if f.empty:
        return none_found(q, "no collection or exfiltration finding for the identity's pods")
    facts = {"steps": [f"{r.rule_id}: {r.summary}" for r in f.itertuples()],
             "techniques": sorted({t for lst in f["techniques"] for t in lst}),
             "files": sorted({w for s in f["summary"] for w in s.replace("`", " ").split() if w.startswith("/tmp/")})}
    text = f"{len(f)} collection/exfiltration findings ({', '.join(facts['techniques'])})"
    return Answer(q, text, facts, event_ids(f), f[["first_seen", "rule_id", "pod", "summary"]])


def evidence_deleted(inv) -> Answer:
    """What evidence was deleted (events, pods) by the identity?"""
    q = "What evidence was deleted?"
    user, _ = _ident(inv)
    a = inv.slice("audit", "verb IN ('delete', 'deletecollection') AND coalesce(code, 0) < 300")
    d = a[col(a, "verb").isin(["delete", "deletecollection"]) & (a["code"].fillna(0) < 300)]
    d = d[col(d, "user") == user] if user else d[~col(d, "user").map(is_system).astype(bool)]
    if d.empty:
        return none_found(q, "no delete by the identity")
    what = (col(d, "verb") + " " + col(d, "resource") + " " + col(d, "namespace") + "/" + col(d, "name")).str.rstrip("/")
    facts = {"deleted": sorted(set(what)), "namespaces": sorted(set(col(d, "namespace")) - {""})}
    return Answer(q, f"{user}: {'; '.join(facts['deleted'])}", facts, list(d["event_id"]),
                  d[["time", "verb", "resource", "namespace", "name", "source_ip"]])
