"""Observations of pods, containers and tokens, from every table that has them.

Used by :class:`kubeforensics.correlate.entities.EntityResolver`: each
``_pods_from_*`` turns one source into pod observations (name, uid, node,
service account, IP, hostNetwork, first time, deletion), ``merge_pods``
folds them into one row per pod lifetime, ``containers`` one row per
container (keyed by the 12-character id prefix), ``tokens`` one row per
service-account token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from kubeforensics.correlate.frames import as_list, cid

POD_COLS = [
    "namespace",
    "pod",
    "pod_uid",
    "node",
    "service_account",
    "ip",
    "host_ip",
    "host_network",
    "owned_by_api",
    "start",
    "end",
    "source",
]


def _loads(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        v = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return v if isinstance(v, dict) else {}


def pod_doc(row: pd.Series) -> dict[str, Any]:
    """Fields of a pod found in an audit row's response/request object."""
    out: dict[str, Any] = {}
    for doc in (_loads(row["request_object"]), _loads(row["response_object"])):
        meta, spec, status = doc.get("metadata") or {}, doc.get("spec") or {}, doc.get("status") or {}
        if not isinstance(meta, dict) or not isinstance(spec, dict) or not isinstance(status, dict):
            continue
        for key, val in (
            ("pod", meta.get("name")),
            ("pod_uid", meta.get("uid")),
            ("node", spec.get("nodeName")),
            ("service_account", spec.get("serviceAccountName")),
            ("ip", status.get("podIP")),
            ("host_ip", status.get("hostIP")),
        ):
            if isinstance(val, str) and val:
                out[key] = val
        if spec.get("hostNetwork") is True:
            out["host_network"] = True
        ids = [c.get("containerID", "") for c in status.get("containerStatuses") or [] if isinstance(c, dict)]
        if any(ids):
            out["container_ids"] = [i for i in ids if i]
    return out


def _frame(**cols: Any) -> pd.DataFrame:
    df = pd.DataFrame(cols)
    for c in POD_COLS + ["deleted"]:
        if c in ("start", "end", "deleted"):
            df[c] = (
                pd.to_datetime(df[c], utc=True)
                if c in df.columns
                else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
            )
        elif c not in df.columns:
            df[c] = False if c in ("host_network", "owned_by_api") else ""
    return df


def _pods_from_objects(o: pd.DataFrame) -> pd.DataFrame:
    p = o[o["kind"] == "Pod"]
    if p.empty:
        return p.iloc[0:0]
    ip = p["pod_ip"].where(p["pod_ip"] != "", p["pod_ips"].map(lambda v: (as_list(v) or [""])[0]))
    return _frame(
        namespace=p["namespace"],
        pod=p["name"],
        pod_uid=p["uid"],
        node=p["node"],
        service_account=p["service_account"],
        ip=ip,
        host_ip=p["host_ip"],
        host_network=p["host_network"].fillna(False).astype(bool),
        owned_by_api=True,
        start=p["created"].where(p["created"].notna(), p["time"]),
        deleted=p["deleted"],
        source="objects",
    )


def _pods_from_audit(a: pd.DataFrame) -> list[pd.DataFrame]:
    pods = a[
        (a["resource"] == "pods")
        & a["subresource"].isin(["", "status"])
        & a["verb"].isin(["create", "update", "patch", "delete"])
    ]
    ok = pods["code"].isna() | (pods["code"] < 400)
    pods = pods[ok]
    if pods.empty:
        return []
    docs = pd.DataFrame(
        [pod_doc(r) for _, r in pods[["request_object", "response_object"]].iterrows()], index=pods.index
    )
    for c in ("pod", "pod_uid", "node", "service_account", "ip", "host_ip"):
        docs[c] = docs[c].fillna("") if c in docs.columns else ""
    hn = docs["host_network"].fillna(False).astype(bool) if "host_network" in docs.columns else False
    name = pods["name"].where(pods["name"] != "", docs["pod"])
    node = docs["node"].where(docs["node"] != "", pods["pod_node_name"])
    sa = docs["service_account"].where(docs["service_account"] != "", pods["pod_service_account"])
    is_del = pods["verb"] == "delete"
    creates = _frame(
        namespace=pods["namespace"],
        pod=name,
        pod_uid=docs["pod_uid"].where(docs["pod_uid"] != "", pods["object_uid"]),
        node=node,
        service_account=sa,
        ip=docs["ip"],
        host_ip=docs["host_ip"],
        host_network=(pods["pod_host_network"].fillna(False).astype(bool) | hn),
        owned_by_api=True,
        start=pods["time"],
        source="audit",
    )
    creates.loc[is_del.values, "deleted"] = pods.loc[is_del, "time"].array
    creates.loc[is_del.values, "start"] = pd.NaT
    return [creates[creates["pod"] != ""]]


def _pods_from_processes(p: pd.DataFrame) -> pd.DataFrame:
    q = p[p["pod"] != ""]
    if q.empty:
        return q.iloc[0:0]
    g = q.groupby(["namespace", "pod"], sort=False).agg(
        pod_uid=("pod_uid", "max"), node=("node", "first"), start=("time", "min")
    )
    g = g.reset_index()
    conn = q[(q["function_name"].str.contains("connect")) & (q["saddr"] != "")]
    ips = conn.groupby(["namespace", "pod"])["saddr"].agg(lambda s: s.mode().iloc[0]).rename("ip")
    g = g.merge(ips, on=["namespace", "pod"], how="left")
    return _frame(
        namespace=g["namespace"],
        pod=g["pod"],
        pod_uid=g["pod_uid"],
        node=g["node"],
        ip=g["ip"].fillna(""),
        owned_by_api=True,
        start=g["start"],
        source="tetragon",
    )


def _pods_from_flows(f: pd.DataFrame) -> pd.DataFrame:
    out = []
    for side in ("src", "dst"):
        s = f[(f[f"{side}_pod"] != "") & (f[f"{side}_ip"] != "")]
        if s.empty:
            continue
        g = (
            s.groupby([f"{side}_namespace", f"{side}_pod", f"{side}_ip"])
            .agg(start=("time", "min"), node=("node", "first"))
            .reset_index()
        )
        out.append(
            _frame(
                namespace=g[f"{side}_namespace"],
                pod=g[f"{side}_pod"],
                ip=g[f"{side}_ip"],
                start=g["start"],
                owned_by_api=True,
                source="hubble",
            )
        )
    return pd.concat(out, ignore_index=True) if out else f.iloc[0:0]


def _pods_from_events(e: pd.DataFrame) -> pd.DataFrame:
    p = e[(e["kind"] == "Pod") & (e["name"] != "")]
    if p.empty:
        return p.iloc[0:0]
    node = p["message"].str.extract(r"Successfully assigned \S+ to (\S+)")[0].fillna("")
    node = node.where(node != "", p["host"])
    start = p["first_time"].where(p["first_time"].notna(), p["time"])
    return _frame(
        namespace=p["namespace"],
        pod=p["name"],
        pod_uid=p["object_uid"],
        node=node,
        owned_by_api=True,
        start=start,
        source="events",
    )


def _first_nonempty(s: pd.Series) -> str:
    v = s[s != ""]
    return v.iloc[0] if len(v) else ""


def merge_pods(obs: pd.DataFrame) -> pd.DataFrame:
    if obs.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in POD_COLS}).astype(
            {
                "host_network": bool,
                "owned_by_api": bool,
                "start": "datetime64[ns, UTC]",
                "end": "datetime64[ns, UTC]",
            }
        )
    prio = {"objects": 0, "audit": 1, "tetragon": 2, "hubble": 3, "events": 4}
    obs = obs.assign(_p=obs["source"].map(prio)).sort_values(["_p", "start"], kind="stable")
    obs["start"] = pd.to_datetime(obs["start"], utc=True).dt.as_unit("ns")
    obs["deleted"] = pd.to_datetime(obs["deleted"], utc=True).dt.as_unit("ns")
    g = obs.groupby(["namespace", "pod"], sort=False)
    strs = g[["pod_uid", "node", "service_account", "ip", "host_ip"]].agg(_first_nonempty)
    res = pd.concat(
        [
            strs,
            g["host_network"].any(),
            g["owned_by_api"].any(),
            g["start"].min(),
            g["deleted"].max().rename("end"),
            g["source"].agg(lambda s: ",".join(sorted(set(s)))),
        ],
        axis=1,
    ).reset_index()
    hn = res["host_network"] & (res["host_ip"] != "")
    res.loc[hn, "ip"] = res.loc[hn, "host_ip"]
    return res[POD_COLS].sort_values("start", kind="stable").reset_index(drop=True)


def node_ips(obs: pd.DataFrame) -> pd.DataFrame:
    if obs.empty:
        return pd.DataFrame(columns=["ip", "node"])
    n = obs[(obs["host_ip"] != "") & (obs["node"] != "")][["host_ip", "node"]]
    hn = obs[obs["host_network"].astype(bool) & (obs["ip"] != "") & (obs["node"] != "")][["ip", "node"]]
    n = pd.concat([n.rename(columns={"host_ip": "ip"}), hn], ignore_index=True)
    return n.drop_duplicates("ip").reset_index(drop=True)


#: One row per container id: what the Tetragon pod blocks or Falco fields say about it.
_CONTAINER_AGG = {
    "namespace": ("namespace", "max"),
    "pod": ("pod", "max"),
    "pod_uid": ("pod_uid", "max"),
    "node": ("node", "first"),
    "api": ("api", "any"),
    "first_seen": ("time", "min"),
    "last_seen": ("time", "max"),
}


def containers(t: dict[str, pd.DataFrame], pods: pd.DataFrame) -> pd.DataFrame:
    parts = []
    o = t["objects"]
    o = o[(o["kind"] == "Pod")]
    if not o.empty:
        e = o[["namespace", "name", "uid", "node", "container_ids", "created", "deleted"]].explode(
            "container_ids"
        )
        e = e[e["container_ids"].notna() & (e["container_ids"] != "")]
        parts.append(
            pd.DataFrame(
                {
                    "container_id": cid(e["container_ids"].astype(str)),
                    "namespace": e["namespace"],
                    "pod": e["name"],
                    "pod_uid": e["uid"],
                    "node": e["node"],
                    "api": True,
                    "first_seen": e["created"],
                    "last_seen": e["deleted"],
                }
            )
        )
    p = t["processes"]
    p = p[p["container_id"] != ""]
    if not p.empty:
        g = (
            p.assign(container_id=cid(p["container_id"]), api=p["pod"] != "")
            .groupby("container_id")
            .agg(**_CONTAINER_AGG)
            .reset_index()
        )
        parts.append(g)
    a = t["alerts"]
    a = a[a["container_id"].str.len() >= 12]
    if not a.empty:
        g = (
            a.assign(container_id=cid(a["container_id"]), node=a["hostname"], api=False, pod_uid="")
            .groupby("container_id")
            .agg(**_CONTAINER_AGG)
            .reset_index()
        )
        parts.append(g)
    cols = [
        "key",
        "container_id",
        "namespace",
        "pod",
        "pod_uid",
        "node",
        "owned_by_api",
        "first_seen",
        "last_seen",
    ]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    c = pd.concat(parts, ignore_index=True)
    c["first_seen"] = pd.to_datetime(c["first_seen"], utc=True)
    c["last_seen"] = pd.to_datetime(c["last_seen"], utc=True)
    c["key"] = c["container_id"].str[:12]
    c["_len"] = c["container_id"].str.len()
    c = c.sort_values(["key", "_len"], ascending=[True, False])
    g = c.groupby("key", sort=False)
    res = pd.concat(
        [
            g["container_id"].first(),
            g[["namespace", "pod", "pod_uid", "node"]].agg(_first_nonempty),
            g["api"].any().rename("owned_by_api"),
            g["first_seen"].min(),
            g["last_seen"].max(),
        ],
        axis=1,
    ).reset_index()
    # a container whose pod is known to the API (objects, successful audit create) is owned
    known = set(
        zip(
            pods.loc[pods["source"].str.contains("objects|audit"), "namespace"],
            pods.loc[pods["source"].str.contains("objects|audit"), "pod"],
        )
    )
    res["owned_by_api"] = res["owned_by_api"].astype(bool) | np.array(
        [k in known for k in zip(res["namespace"], res["pod"])], dtype=bool
    )
    return res[cols]


def tokens(a: pd.DataFrame) -> pd.DataFrame:
    """One row per service-account token (credential id, else user + pod uid)."""
    sa = a[a["user"].str.startswith("system:serviceaccount:")]
    cols = [
        "token",
        "user",
        "sa_pod_name",
        "sa_pod_uid",
        "sa_node_name",
        "sa_credential_id",
        "first_used",
        "last_used",
        "requests",
        "source_ips",
    ]
    if sa.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    tok = token_key(sa)
    g = sa.assign(token=tok).groupby(
        ["token", "user", "sa_pod_name", "sa_pod_uid", "sa_node_name", "sa_credential_id"], sort=False
    )
    res = g.agg(
        first_used=("time", "min"),
        last_used=("time", "max"),
        requests=("event_id", "size"),
        source_ips=("source_ip", lambda s: sorted(set(s) - {""})),
    ).reset_index()
    return res[cols]


def token_key(audit: pd.DataFrame) -> pd.Series:
    """Identity of the credential behind each audit row: credential id, else user[@pod-uid]."""
    alt = audit["user"] + (("@" + audit["sa_pod_uid"]).where(audit["sa_pod_uid"] != "", ""))
    return audit["sa_credential_id"].where(audit["sa_credential_id"] != "", alt)
