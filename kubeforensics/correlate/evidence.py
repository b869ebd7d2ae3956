"""Evidence behind story candidates: who, where, which process, which addresses.

``enrich`` fills a candidate's empty namespace, pod, actor, process, dst_ip
and src_ip from its evidence rows (earliest first), then applies the
severity caps of :mod:`kubeforensics.correlate.caps`.  Beyond the rows
themselves it uses the correlation:

* a process gets the user of the exec session that started it (exec links);
* a process gets the first address it connected to (public ones first);
* a Hubble flow gets the process behind it (``connect_flow`` links);
* an audit create/update of an object gets the first public IP its body
  points at (a CronJob's ``curl http://…``, a webhook URL);
* among several processes, the deepest one is named (``sh -c 'cat …'`` -> ``cat``);
* an initial-access step gets the public source of the last ingress flow to its
  pod in the two minutes before.
"""

from __future__ import annotations

import ipaddress
import re

import pandas as pd

from kubeforensics.correlate.caps import apply_caps
from kubeforensics.correlate.context import Context


def _evidence(ctx: Context, ids: set[str]) -> pd.DataFrame:
    """namespace/pod/actor/process/dst_ip of the evidence rows ``ids`` (one row per event id)."""
    t = ctx.t
    cols = ["event_id", "time", "namespace", "pod", "actor", "process", "dst_ip", "src_ip", "exec_id"]
    parts = []
    a = t["audit"][t["audit"]["event_id"].isin(ids)]
    if not a.empty:
        pod = a["name"].where(a["resource"] == "pods", a["sa_pod_name"])
        unnamed = (a["resource"] == "pods") & (a["name"] == "")
        if unnamed.any():
            from kubeforensics.correlate.observations import pod_doc

            pod = pod.copy()
            for i in a.index[unnamed.values]:
                pod.at[i] = pod_doc(a.loc[i]).get("pod", "")
        parts.append(
            pd.DataFrame(
                {
                    "event_id": a["event_id"],
                    "time": a["time"],
                    "namespace": a["namespace"],
                    "pod": pod,
                    "actor": a["user"],
                    "process": a["exec_command"].str.split(" ").str[0].fillna(""),
                    "dst_ip": _object_targets(a),
                    "src_ip": a["source_ip"],
                    "exec_id": "",
                }
            )
        )
    p = t["processes"][t["processes"]["event_id"].isin(ids)]
    if not p.empty and (p["pod"] == "").any():
        c = ctx.resolver.containers
        named = c[c["pod"] != ""].drop_duplicates("key").set_index("key")
        key = p["container_id"].str.replace(r"^[a-z]+://", "", regex=True).str[:12]
        fill = (p["pod"] == "") & key.isin(named.index)
        p = p.assign(
            namespace=p["namespace"].where(~fill, key.map(named["namespace"])),
            pod=p["pod"].where(~fill, key.map(named["pod"])),
        )
    if not p.empty:
        parts.append(
            pd.DataFrame(
                {
                    "event_id": p["event_id"],
                    "time": p["time"],
                    "namespace": p["namespace"],
                    "pod": p["pod"],
                    "actor": "",
                    "process": p["binary"],
                    "dst_ip": p["daddr"],
                    "src_ip": "",
                    "exec_id": p["exec_id"],
                }
            )
        )
    f = t["flows"][t["flows"]["event_id"].isin(ids)]
    if not f.empty:
        parts.append(
            pd.DataFrame(
                {
                    "event_id": f["event_id"],
                    "time": f["time"],
                    "namespace": f["src_namespace"],
                    "pod": f["src_pod"],
                    "actor": "",
                    "process": f["event_id"].map(_flow_processes(ctx)).fillna(""),
                    "dst_ip": f["dst_ip"],
                    "src_ip": f["src_ip"],
                    "exec_id": "",
                }
            )
        )
    al = t["alerts"][t["alerts"]["event_id"].isin(ids)]
    if not al.empty:
        parts.append(
            pd.DataFrame(
                {
                    "event_id": al["event_id"],
                    "time": al["time"],
                    "namespace": al["namespace"],
                    "pod": al["pod"],
                    "actor": al["ka_user"],
                    "process": al["proc_exepath"].where(al["proc_exepath"] != "", al["proc_name"]),
                    "dst_ip": "",
                    "src_ip": "",
                    "exec_id": "",
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=cols)
    ev = pd.concat(parts, ignore_index=True).drop_duplicates("event_id")
    # processes: the user of the exec session that started them, and where they connected
    if (ev["exec_id"] != "").any():
        sess = _session_users(ctx)
        ev["actor"] = ev["actor"].where(ev["actor"] != "", ev["exec_id"].map(sess).fillna(""))
        dst = _exec_destinations(ctx)
        ev["dst_ip"] = ev["dst_ip"].where(ev["dst_ip"] != "", ev["exec_id"].map(dst).fillna(""))
    return ev[cols]


def _session_users(ctx: Context) -> pd.Series:
    lk = ctx.links
    e = lk[lk["kind"].isin(["exec_session", "exec_descendant"])]
    if e.empty:
        return pd.Series(dtype=object)
    p = ctx.t["processes"]
    exec_of = p.drop_duplicates("event_id").set_index("event_id")["exec_id"]
    user_of = ctx.t["audit"].set_index("event_id")["user"]
    m = pd.Series(e["from_event_id"].map(user_of).values, index=e["to_event_id"].map(exec_of).values)
    return m[~m.index.duplicated()]


def _public(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def _exec_destinations(ctx: Context) -> pd.Series:
    p = ctx.t["processes"]
    c = p[p["function_name"].str.contains("connect") & (p["daddr"] != "")]
    if c.empty:
        return pd.Series(dtype=object)
    c = c[~c["daddr"].str.match(r"^(127\.|::1$|0\.0\.0\.0$)")]
    c = c.assign(pub=~c["daddr"].map(_public)).sort_values(["pub", "time"])  # public destinations first
    return c.drop_duplicates("exec_id").set_index("exec_id")["daddr"]


def enrich(ctx: Context, cand: pd.DataFrame) -> pd.DataFrame:
    """Fill empty entity fields of each candidate from its earliest evidence row that has them."""
    ids = {e for lst in cand["event_ids"] for e in lst}
    ev = _evidence(ctx, ids)
    if ev.empty:
        return cand
    ex = (
        cand[["event_ids"]]
        .explode("event_ids")
        .dropna()
        .reset_index()
        .rename(columns={"event_ids": "event_id"})
    )
    ex = ex.merge(ev, on="event_id").sort_values("time")
    # among processes, the deepest is the one that acted (sh -c 'cat …' -> cat)
    parents = set(
        ctx.nodes.set_index("exec_id")
        .reindex(ex.loc[ex["exec_id"] != "", "exec_id"].unique())["parent_exec_id"]
        .dropna()
    )
    ex = ex.assign(_parent=ex["exec_id"].isin(parents)).sort_values(["_parent", "time"], kind="stable")
    for col in ("namespace", "pod", "actor", "process", "dst_ip", "src_ip"):
        src = ex if col == "process" else ex.sort_values("time", kind="stable")
        vals = src[src[col] != ""].drop_duplicates("index").set_index("index")[col]
        cur = cand[col].fillna("").astype(str)
        cand[col] = cur.where(
            cur != "", pd.Series(cand.index.map(vals), index=cand.index, dtype=object).fillna("")
        )
    if "hint_process" in cand.columns:
        cand["process"] = cand["process"].where(cand["process"] != "", cand["hint_process"].fillna(""))
    cand = _ingress_sources(ctx, cand)
    return apply_caps(ctx, cand, ex)


_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def _object_targets(a: pd.DataFrame) -> pd.Series:
    """First public IP in the body of a create/update/patch (where the new object sends traffic)."""
    body = a["request_object"].fillna("")
    writes = a["verb"].isin(["create", "update", "patch"]) & (body != "")

    def first_public(text: str) -> str:
        return next((ip for ip in _IPV4.findall(text) if _public(ip)), "")

    out = pd.Series("", index=a.index, dtype=object)
    out[writes] = body[writes].map(first_public)
    return out


def _flow_processes(ctx: Context) -> pd.Series:
    """Hubble flow event id -> the binary whose tcp_connect it is (connect_flow links)."""
    lk = ctx.links
    cf = lk[lk["kind"] == "connect_flow"]
    if cf.empty:
        return pd.Series(dtype=object)
    p = ctx.t["processes"].drop_duplicates("event_id").set_index("event_id")["binary"]
    return pd.Series(cf["from_event_id"].map(p).values, index=cf["to_event_id"].values).pipe(
        lambda x: x[~x.index.duplicated()]
    )


INGRESS_WINDOW = pd.Timedelta(minutes=2)


def _ingress_sources(ctx: Context, cand: pd.DataFrame) -> pd.DataFrame:
    """Initial-access candidates (T1190) without a source: the public client of the last ingress
    flow to their pod within two minutes before."""
    want = cand["techniques"].map(lambda t: any(x.startswith("T1190") for x in t)) & (cand["src_ip"] == "")
    want &= cand["pod"] != ""
    f = ctx.t["flows"]
    if not want.any() or f.empty:
        return cand
    f = f[(f["dst_pod"] != "") & f["src_ip"].map(_public)]
    if f.empty:
        return cand
    right = pd.DataFrame(
        {
            "ns": f["dst_namespace"].astype(object),
            "pod": f["dst_pod"].astype(object),
            "t": f["time"].dt.as_unit("ns"),
            "client": f["src_ip"],
        }
    ).sort_values("t")
    left = pd.DataFrame(
        {
            "ns": cand.loc[want, "namespace"].astype(object),
            "pod": cand.loc[want, "pod"].astype(object),
            "t": cand.loc[want, "time"].dt.as_unit("ns"),
            "i": cand.index[want],
        }
    ).sort_values("t")
    m = pd.merge_asof(left, right, on="t", by=["ns", "pod"], direction="backward", tolerance=INGRESS_WINDOW)
    m = m[m["client"].notna()]
    cand = cand.copy()
    cand.loc[m["i"].values, "src_ip"] = m["client"].values
    return cand
