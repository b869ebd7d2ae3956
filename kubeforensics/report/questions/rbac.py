"""Questions of scenario D: RBAC persistence (roles, tokens, certificates, cron jobs, webhooks)."""

from __future__ import annotations

from kubeforensics.report.answers import Answer
from kubeforensics.report.questions.common import col, is_public, is_system, isin, none_found, sql_str

RBAC = ("clusterroles", "clusterrolebindings", "roles", "rolebindings", "serviceaccounts")
PATHS = ("cronjobs", "daemonsets", "mutatingwebhookconfigurations", "validatingwebhookconfigurations")


def _writes(inv, resources, subresource: str = "", allow: frozenset[str] = frozenset()):
    """Successful writes of ``resources`` by people (and by the identities in ``allow``)."""
    params: list = []
    a = inv.slice("audit", f"{isin('resource', resources, params)} AND verb IN ('create', 'update', 'patch') "
                  f"AND {sql_str('subresource')} = ? AND coalesce(code, 0) < 300", [*params, subresource])
    who = col(a, "user")
    m = (col(a, "resource").isin(resources) & col(a, "verb").isin(["create", "update", "patch"])
         & (col(a, "subresource") == subresource) & (a["code"].fillna(0) < 300)
         & (~who.map(is_system).astype(bool) | who.isin(allow)))
    return a[m].sort_values("time")


def _obj(d) -> list[str]:
    return list(dict.fromkeys(col(d, "resource") + " " + (col(d, "namespace") + "/").where(col(d, "namespace") != "", "")
                              + col(d, "name")))


def rbac_changes(inv) -> Answer:
    """Which RBAC objects changed, by whom, from where?"""
    q = "Which RBAC objects changed, by whom, granting what?"
    d = _writes(inv, RBAC)
    if d.empty:
        return none_found(q, "no RBAC object written by a non-system identity")
    ext = d[d["source_ip"].map(is_public).astype(bool)]
    d = ext if not ext.empty else d
    facts = {"actors": sorted(set(col(d, "user"))), "source_ips": sorted(set(col(d, "source_ip"))),
             "objects": _obj(d), "grants": sorted({r for r in col(d, "authz_reason") if r})[:3]}
    ro = d[col(d, "resource").isin(["clusterrolebindings", "rolebindings"])]
    refs = [rr for rr in col(ro, "request_object") if "roleRef" in rr]
    facts["bound_roles"] = sorted({x.split('"name":"')[1].split('"')[0] for x in
                                   (r.split('"roleRef":', 1)[1] for r in refs) if '"name":"' in x})
    text = (f"{', '.join(facts['actors'])} from {', '.join(facts['source_ips'])} wrote {len(facts['objects'])} RBAC "
            f"objects: {', '.join(facts['objects'])}; bound {', '.join(facts['bound_roles']) or '-'}")
    return Answer(q, text, facts, list(d["event_id"]), d[["time", "user", "source_ip", "verb", "resource",
                                                          "namespace", "name"]])


def tokens_minted(inv) -> Answer:
    """Which tokens or certificates were minted, and where were they used?"""
    q = "Which tokens or certificates were minted and where were they used?"
    tok = _writes(inv, ["serviceaccounts"], "token")
    a = inv.slice("audit", "resource = 'certificatesigningrequests' AND subresource = 'approval' "
                  "AND coalesce(code, 0) < 300")
    csr = a[(col(a, "resource") == "certificatesigningrequests") & (col(a, "subresource") == "approval")
            & (a["code"].fillna(0) < 300)]
    if tok.empty and csr.empty:
        return none_found(q, "no service-account token or certificate minted by a person")
    accounts = sorted(set(col(tok, "namespace") + "/" + col(tok, "name")))
    users = [f"system:serviceaccount:{x.replace('/', ':')}" for x in accounts]
    params: list = []
    a = inv.slice("audit", f"{isin(sql_str('user'), users, params)} AND {sql_str('sa_pod_name')} = ''", params)
    use = a[col(a, "user").isin(users) & (col(a, "sa_pod_name") == "")]
    facts = {"serviceaccounts": accounts, "csrs": sorted(set(col(csr, "name"))),
             "used_by": sorted(set(col(use, "user"))), "used_from": sorted(set(col(use, "source_ip")) - {""}),
             "credential_ids": sorted(set(col(use, "sa_credential_id")) - {""})}
    text = (f"tokens minted for {', '.join(accounts) or '-'}; CSRs approved: {', '.join(facts['csrs']) or '-'}; "
            f"used without a pod from {', '.join(facts['used_from']) or 'nowhere'} ({len(use)} requests)")
    return Answer(q, text, facts, list(tok["event_id"]) + list(csr["event_id"]) + list(use["event_id"].head(10)),
                  use[["time", "user", "source_ip", "verb", "resource", "namespace", "name", "code"]].head(30))


def persistence_paths(inv) -> Answer:
    """Which scheduled or admission paths now exist, what ran from them and what did they contact?"""
    q = "Which scheduled or admission paths now exist, what did they contact?"
    minted = inv.answers.get("tokens_minted")
    allow = frozenset(minted.facts.get("used_by", [])) if minted is not None and minted.found else frozenset()
    d = _writes(inv, PATHS, allow=allow)
    d = d[col(d, "verb") == "create"]
    if d.empty:
        return none_found(q, "no CronJob, DaemonSet or admission webhook created by a person")
    import re

    bodies = " ".join(col(d, "request_object"))
    ips = sorted({ip for ip in re.findall(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", bodies) if is_public(ip)})
    kinds = {r: sorted(set((col(x, "namespace") + "/").where(col(x, "namespace") != "", "") + col(x, "name")))
             for r, x in d.groupby(col(d, "resource"))}
    facts = {"cronjobs": kinds.get("cronjobs", []), "daemonsets": kinds.get("daemonsets", []),
             "webhooks": kinds.get("mutatingwebhookconfigurations", []) + kinds.get("validatingwebhookconfigurations",
                                                                                   []),
             "contacted": ips, "created_by": sorted(set(col(d, "user")))}
    text = "; ".join(f"{k}: {', '.join(v)}" for k, v in facts.items() if v and k != "created_by")
    return Answer(q, text + f" (created by {', '.join(facts['created_by'])})", facts, list(d["event_id"]),
                  d[["time", "user", "source_ip", "resource", "namespace", "name"]])


def revoke(inv) -> Answer:
    """What must be revoked or removed (from the answers above)."""
    q = "What must be revoked?"
    items: list[str] = []
    for key, fields in (("rbac_changes", ("objects",)), ("tokens_minted", ("credential_ids", "csrs")),
                        ("persistence_paths", ("cronjobs", "daemonsets", "webhooks"))):
        a = inv.answers.get(key)
        if a is not None and a.found:
            for f in fields:
                items += [f"{f}: {v}" for v in a.facts.get(f, [])]
    if not items:
        return none_found(q, "nothing to revoke from the answers above")
    return Answer(q, f"{len(items)} items to revoke or delete", {"revoke": items}, [])
