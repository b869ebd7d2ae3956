"""Questions of the generic triage and pod deep-dive playbooks."""

from __future__ import annotations

import pandas as pd

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import (
    SEV_WEIGHT,
    actor_weights,
    col,
    destination_tables,
    event_ids,
    is_system,
    none_found,
    pod_weights,
    sql_str,
    top_public_destinations,
    when,
)


def contents(inv) -> Answer:
    """What is in the case: evidence files, rows per table, time span, quarantined records."""
    q = "What is in the case?"
    s = inv.case.summary()
    rows = {k: int(v) for k, v in s["rows"].items()}
    facts = {"evidence_files": s["evidence_files"], "rows": rows, "from": s["from"], "until": s["until"],
             "quarantined": s["quarantined"]}
    text = (f"{s['evidence_files']} evidence files, {sum(rows.values()):,} rows "
            f"({', '.join(f'{k} {v:,}' for k, v in rows.items() if v)}), {s['quarantined']:,} quarantined, "
            f"from {when(s['from'])} to {when(s['until'])}")
    table = pd.DataFrame([{"table": k, "rows": v} for k, v in rows.items()])
    return Answer(q, text, facts, [], table)


def suspicious(inv, min_severity: str = "high") -> Answer:
    """What is suspicious: findings at or above ``min_severity``, by ATT&CK technique."""
    q = "What is suspicious?"
    f = inv.findings
    if f.empty:
        return none_found(q, "no rule fired")
    floor = SEV_WEIGHT.get(min_severity, 4)
    top = f[f["severity"].astype(str).map(SEV_WEIGHT).fillna(0) >= floor]
    by_sev = f["severity"].astype(str).value_counts().to_dict()
    techniques = sorted({t for lst in top["techniques"] for t in lst})
    facts = {"findings": len(f), "by_severity": {k: int(v) for k, v in by_sev.items()},
             "techniques": techniques, "rules": sorted(set(top["rule_id"]))}
    text = (f"{len(f)} findings ({', '.join(f'{v} {k}' for k, v in by_sev.items() if v)}); at {min_severity} or "
            f"above: {len(top)} covering {', '.join(techniques) or 'no technique'}")
    view = top[["severity", "rule_id", "techniques", "namespace", "pod", "actor", "summary"]]
    return Answer(q, text, facts, event_ids(top)[:50], view)


def story_so_far(inv) -> Answer:
    """The story so far: steps, tactics, first and last step."""
    q = "What is the story so far?"
    st = inv.story
    if not len(st):
        return none_found(q, "no step in the story")
    steps = st.steps
    facts = {"steps": len(steps), "tactics": list(dict.fromkeys(s.tactic for s in steps if s.tactic)),
             "first": steps[0].time, "last": steps[-1].time,
             "techniques": sorted({t for s in steps for t in s.techniques})}
    text = (f"{len(steps)} steps from {when(steps[0].time)} to {when(steps[-1].time)} across "
            f"{len(facts['tactics'])} tactics; first: {steps[0].summary}")
    return Answer(q, text, facts, [e for s in steps[:5] for e in s.event_ids[:2]])


def where_next(inv, top: int = 5) -> Answer:
    """Where to look next: the pods, identities and external addresses most findings rest on."""
    q = "Where to look next?"
    f = inv.findings
    if f.empty:
        return none_found(q, "no findings to follow")
    pods = [p for p in pod_weights(f).index if not p.endswith("/") and not p.startswith("/")][:top]
    actors = [a for a in actor_weights(f).index if a and not a.startswith("/") and "." not in a.split("@")[0][:0]
              and not is_system(a) and not a[0].isdigit()][:top]
    dst = top_public_destinations(inv.pod_tables(pods) if pods else inv.tables, pods=pods)
    facts = {"pods": pods, "actors": actors, "external_ips": list(dst["ip"].head(top))}
    text = (f"pods: {', '.join(pods) or '-'}; identities: {', '.join(actors) or '-'}; external addresses: "
            f"{', '.join(facts['external_ips']) or '-'} (run the pod-deep-dive playbook with seed=<pod>)")
    return Answer(q, text, facts, [])


# ---------------------------------------------------------------------------- pod deep dive
def _split(pod: str) -> tuple[str, str]:
    return tuple((pod.split("/", 1) if "/" in pod else ["", pod])[:2])  # type: ignore[return-value]


#: SQL: the name is ? (NULL as "") and, unless the second ? is "", the namespace is the third ?.
_NAMED = f"{sql_str('name')} = ? AND (? = '' OR namespace = ?)"


def _true(v) -> bool:
    return False if v is None or pd.isna(v) else bool(v)


def pick_pod(inv) -> str:
    """The seed pod, or the pod the most severe findings rest on."""
    if inv.seed:
        return str(inv.seed)
    w = pod_weights(inv.findings)
    w = w[[not k.startswith("/") and not k.endswith("/") for k in w.index]]
    return str(w.index[0]) if len(w) else ""


def pod_spec(inv, pod: str) -> Answer:
    """Spec risks of the pod: privileged, host namespaces, host paths, capabilities, service account, images."""
    q = f"What risks does the spec of {pod} carry?"
    ns, name = _split(pod)
    a = inv.slice("audit", f"resource = 'pods' AND verb = 'create' AND {_NAMED}", [name, ns, ns])
    cr = a[(col(a, "resource") == "pods") & (col(a, "verb") == "create") & (col(a, "name") == name)
           & (col(a, "subresource") == "") & (col(a, "namespace") == ns if ns else True)]
    o = inv.slice("objects", f"kind = 'Pod' AND {sql_str('name')} = ?", [name])
    ob = o[(col(o, "kind") == "Pod") & (col(o, "name") == name)]
    if cr.empty and ob.empty:
        return none_found(q, f"no create request or object of {pod}")
    if not cr.empty:
        r = cr.iloc[0]
        facts = {"privileged": _true(r["pod_privileged"]), "host_pid": _true(r["pod_host_pid"]),
                 "host_network": _true(r["pod_host_network"]),
                 "host_paths": list(r["pod_host_paths"] or []), "capabilities": list(r["pod_capabilities"] or []),
                 "service_account": col(cr, "pod_service_account").iloc[0], "images": list(r["pod_images"] or [])}
        ev = [r["event_id"]]
    else:
        r = ob.iloc[-1]
        facts = {"privileged": _true(r["privileged"]), "host_pid": _true(r["host_pid"]),
                 "host_network": _true(r["host_network"]), "host_paths": list(r["host_paths"] or []),
                 "capabilities": list(r["capabilities"] or []), "service_account": col(ob, "service_account").iloc[-1],
                 "images": list(r["images"] or [])}
        ev = [r["event_id"]]
    risks = [k for k in ("privileged", "host_pid", "host_network") if facts[k]] + (
        ["host paths " + ", ".join(facts["host_paths"])] if facts["host_paths"] else [])
    text = f"{pod}: {', '.join(risks) or 'no privileged settings'}; service account {facts['service_account'] or '?'}"
    return Answer(q, text, facts, ev)


def pod_touched(inv, pod: str) -> Answer:
    """Who touched the pod through the API (create, exec, attach, port-forward, delete), from where?"""
    q = f"Who touched {pod}?"
    ns, name = _split(pod)
    a = inv.slice("audit", f"resource = 'pods' AND {_NAMED}", [name, ns, ns])
    t = a[(col(a, "resource") == "pods") & (col(a, "name") == name) & ~col(a, "user").map(is_system).astype(bool)]
    if ns:
        t = t[col(t, "namespace") == ns]
    if t.empty:
        return none_found(q, f"no API request on {pod} by a person")
    what = col(t, "verb") + " " + col(t, "subresource")
    facts = {"users": sorted(set(col(t, "user"))), "source_ips": sorted(set(col(t, "source_ip"))),
             "actions": sorted(set(what.str.strip()))}
    return Answer(q, f"{', '.join(facts['users'])} from {', '.join(facts['source_ips'])}: "
                     f"{', '.join(facts['actions'])}", facts, list(t["event_id"]),
                  t.assign(action=what)[["time", "user", "source_ip", "action", "exec_command", "code"]])


def pod_processes(inv, pod: str) -> Answer:
    """Which programs ran in the pod (and which in host namespaces)?"""
    q = f"Which processes ran in {pod}?"
    ns, name = _split(pod)
    p = inv.slice("processes", f"{sql_str('pod')} = ? AND (? = '' OR namespace = ?) AND event_type = 'exec'",
                  [name, ns, ns])
    pr = p[(col(p, "pod") == name) & (col(p, "event_type") == "exec")]
    if ns:
        pr = pr[col(pr, "namespace") == ns]
    if pr.empty:
        return none_found(q, f"no process events in {pod}")
    host = pr[pr["host_namespaces"].map(lambda v: v is not None and len(v) > 0)]
    binaries, in_host = sorted(set(col(pr, "binary"))), sorted(set(col(host, "binary")))
    facts = {"binaries": binaries, "in_host_namespaces": in_host, "execs": len(pr)}
    return Answer(q, f"{len(pr)} execs of {len(binaries)} programs; {len(in_host)} in "
                     "host namespaces", facts, list(host["event_id"].head(20)),
                  pr.drop_duplicates(["binary", "args"])[["time", "parent_binary", "binary", "args"]].head(40))


def pod_flows(inv, pod: str) -> Answer:
    """Where did the pod connect (public destinations first)?"""
    q = f"Where did {pod} connect?"
    pods = [pod if "/" in pod else f"/{pod}"]
    d = top_public_destinations(destination_tables(inv, pods=pods), pods=pods)
    if d.empty:
        return none_found(q, f"no connection from {pod} to a public address")
    facts = {"external_ips": list(d["ip"]), "ports": sorted({p for lst in d["ports"] for p in lst})}
    return Answer(q, f"{len(d)} public addresses: " + ", ".join(f"{r.ip} ({r.count})" for r in d.head(5).itertuples()),
                  facts, [e for lst in d["event_ids"].head(3) for e in lst[:3]], d.drop(columns=["event_ids"]))


def pod_findings(inv, pod: str) -> Answer:
    """The findings on the pod."""
    q = f"Which findings concern {pod}?"
    ns, name = _split(pod)
    f = inv.findings
    m = col(f, "pod") == name
    if ns:
        m &= col(f, "namespace") == ns
    f = f[m]
    if f.empty:
        return none_found(q, f"no finding on {pod}")
    facts = {"rules": sorted(set(f["rule_id"])), "techniques": sorted({t for lst in f["techniques"] for t in lst})}
    return Answer(q, f"{len(f)} findings: {', '.join(facts['techniques'])}", facts, event_ids(f)[:30],
                  f[["severity", "rule_id", "techniques", "first_seen", "summary"]])
