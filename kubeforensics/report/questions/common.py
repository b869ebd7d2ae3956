"""Helpers the question functions share: findings by technique, evidence rows, ranking, IP classes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import pandas as pd

from kubeforensics.report.answers import Answer

SEV_WEIGHT = {"info": 0, "low": 1, "medium": 2, "high": 4, "critical": 8}
SYSTEM_PREFIXES = ("system:node:", "system:kube-", "system:serviceaccount:kube-system:", "system:apiserver")


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """A string column with missing values as ``""`` (absent columns give an empty-string column)."""
    if name not in df.columns:
        return pd.Series("", index=df.index, dtype=object)
    s = df[name]
    return s.where(s.notna(), "").astype(str)


def flag(df: pd.DataFrame, name: str) -> pd.Series:
    """A boolean column with missing values as False."""
    if name not in df.columns:
        return pd.Series(False, index=df.index)
    return df[name].fillna(False).astype(bool)


def is_public(ip: Any) -> bool:
    """True for a globally routable address (not private, loopback, link-local or documentation)."""
    try:
        return ipaddress.ip_address(str(ip)).is_global
    except ValueError:
        return False


def is_system(user: str) -> bool:
    return user.startswith(SYSTEM_PREFIXES) or user in ("", "system:anonymous")


def with_techniques(findings: pd.DataFrame, *techniques: str, rules: Iterable[str] = ()) -> pd.DataFrame:
    """Findings tagged with any of ``techniques`` (``T1543`` matches ``T1543.005``) or with a rule id in ``rules``."""
    rules = set(rules)

    def hit(tl: Any) -> bool:
        return any(str(t) == w or str(t).startswith(w + ".") for t in (tl if tl is not None else []) for w in techniques)

    mask = findings["techniques"].map(hit) if techniques else pd.Series(False, index=findings.index)
    if rules:
        mask = mask | findings["rule_id"].isin(rules)
    return findings[mask]


def event_ids(findings: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(e for lst in findings["event_ids"] for e in (lst if lst is not None else [])))


def rows(tables: dict[str, pd.DataFrame], table: str, ids: Iterable[str]) -> pd.DataFrame:
    """The rows of ``table`` whose event id is in ``ids``, in time order."""
    df = tables[table]
    return df[df["event_id"].isin(set(ids))].sort_values("time")


def pod_weights(findings: pd.DataFrame) -> pd.Series:
    """``ns/pod`` -> summed severity weight of its findings (how much of the attack touches the pod)."""
    if findings.empty:
        return pd.Series(dtype=float)
    key = col(findings, "namespace") + "/" + col(findings, "pod")
    w = findings["severity"].astype(str).map(SEV_WEIGHT).fillna(0)
    return w.groupby(key).sum().sort_values(ascending=False)


def actor_weights(findings: pd.DataFrame) -> pd.Series:
    if findings.empty:
        return pd.Series(dtype=float)
    w = findings["severity"].astype(str).map(SEV_WEIGHT).fillna(0)
    return w.groupby(col(findings, "actor")).sum().sort_values(ascending=False)


def seed_match(df: pd.DataFrame, seed: Any, cols: Iterable[str]) -> pd.Series:
    """Rows where any of ``cols`` equals the seed (``ns/name`` seeds match ``namespace`` + name columns)."""
    mask = pd.Series(False, index=df.index)
    if not seed:
        return mask
    s = str(seed)
    for c in cols:
        v = col(df, c)
        mask |= v == s
        if "namespace" in df.columns:
            mask |= (col(df, "namespace") + "/" + v) == s
    return mask


def when(t: Any) -> str:
    if t is None or pd.isna(t):
        return "?"
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S UTC")


def none_found(question: str, why: str) -> Answer:
    """The answer when the evidence holds nothing: says what was looked for."""
    return Answer(question, f"Nothing found: {why}.")


def top_public_destinations(tables: dict[str, pd.DataFrame], *, pods: Iterable[str] = (),
                            nodes: Iterable[str] = (), since: Any = None) -> pd.DataFrame:
    """Public destinations contacted (Hubble flows and Tetragon connects), with counts, ports and names.

    ``pods`` (``ns/name``) and ``nodes`` restrict the sources when given; ``since`` the time.
    """
    f = tables["flows"]
    f = f[f["dst_ip"].map(is_public).astype(bool) & ~f["is_reply"].fillna(False).astype(bool)] if not f.empty else f
    if since is not None and not f.empty:
        f = f[f["time"] >= since]
    parts = []
    if not f.empty:
        src = col(f, "src_namespace") + "/" + col(f, "src_pod")
        sel = pd.Series(not (pods or nodes), index=f.index)
        if pods:
            sel |= src.isin(set(pods))
        if nodes:
            sel |= col(f, "node").isin(set(nodes))
        f = f[sel]
        names = col(f, "dst_names")
        parts.append(pd.DataFrame({"ip": f["dst_ip"], "port": f["dst_port"].astype("Int64"), "time": f["time"],
                                   "name": names, "event_id": f["event_id"], "source": "hubble"}))
    p = tables["processes"]
    if not p.empty:
        c = p[col(p, "function_name").str.contains("connect") & p["daddr"].map(is_public).astype(bool)]
        if since is not None:
            c = c[c["time"] >= since]
        sel = pd.Series(not (pods or nodes), index=c.index)
        if pods:
            sel |= (col(c, "namespace") + "/" + col(c, "pod")).isin(set(pods))
        if nodes:
            sel |= col(c, "node").isin(set(nodes))
        c = c[sel]
        parts.append(pd.DataFrame({"ip": c["daddr"], "port": c["dport"].astype("Int64"), "time": c["time"],
                                   "name": "", "event_id": c["event_id"], "source": "tetragon"}))
    parts = [x for x in parts if not x.empty]
    if not parts:
        return pd.DataFrame(columns=["ip", "ports", "count", "first", "last", "names", "event_ids"])
    d = pd.concat(parts, ignore_index=True)
    d["name"] = d["name"].astype(str).str.strip("[]'\" ")
    g = d.groupby("ip")
    out = pd.DataFrame({
        "ports": g["port"].agg(lambda s: sorted({int(x) for x in s.dropna()})),
        "count": g.size(), "first": g["time"].min(), "last": g["time"].max(),
        "names": g["name"].agg(lambda s: sorted({x for x in s if x})),
        "event_ids": g["event_id"].agg(list),
    }).reset_index().sort_values("count", ascending=False)
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------- slices (Investigation.slice)
# SQL for the superset slices questions read from storage: each clause lets through at least the rows
# the pandas condition next to it keeps (a NULL string is "" as in :func:`col`).

def sql_str(column: str) -> str:
    """SQL of :func:`col`: the column (quoted: ``user`` and ``binary`` are keywords) with NULL as ``''``."""
    return f"coalesce(\"{column}\", '')"


def sql_key(ns: str, name: str) -> str:
    """SQL of ``col(df, ns) + "/" + col(df, name)``."""
    return f"({sql_str(ns)} || '/' || {sql_str(name)})"


def maybe_public(column: str) -> str:
    """SQL true for every address :func:`is_public` accepts (and some it does not: it leaves out only
    empty values and the private, loopback and link-local IPv4 ranges)."""
    c = sql_str(column)
    return (f"({c} <> '' AND NOT ({c} LIKE '10.%' OR {c} LIKE '127.%' OR {c} LIKE '192.168.%' "
            f"OR {c} LIKE '169.254.%' OR regexp_matches({c}, '^172[.](1[6-9]|2[0-9]|3[01])[.]')))")


def isin(expr: str, values: Iterable[Any], params: list[Any]) -> str:
    """SQL of ``expr`` in ``values`` (bound as parameters, appended to ``params``); FALSE for none."""
    vals = list(dict.fromkeys(values))
    if not vals:
        return "FALSE"
    params.extend(vals)
    return f"{expr} IN ({', '.join('?' * len(vals))})"


def at(t: Any, params: list[Any], *, rounding: str = "floor") -> str:
    """A bound time parameter: ``t`` rounded to DuckDB's microseconds (``floor`` for a lower bound,
    ``ceil`` for an upper one, so the slice keeps every row the pandas comparison keeps)."""
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    params.append(getattr(ts, rounding)("us").isoformat())
    return "?::TIMESTAMPTZ"


def destination_tables(inv: Any, *, pods: Iterable[str] = (), nodes: Iterable[str] = (),
                       since: Any = None) -> dict[str, pd.DataFrame]:
    """The flows and processes :func:`top_public_destinations` may use with these arguments (slices of
    the investigation's tables)."""
    pods, nodes = sorted(set(pods)), sorted(set(nodes))
    out = {}
    for table, ip, ns, pod, base in (
            ("flows", "dst_ip", "src_namespace", "src_pod", "NOT coalesce(is_reply, false)"),
            ("processes", "daddr", "namespace", "pod", "contains(coalesce(function_name, ''), 'connect')")):
        params: list[Any] = []
        where = [base, maybe_public(ip)]
        if since is not None:
            where.append(f"time >= {at(since, params)}")
        if pods or nodes:
            where.append(f"({isin(sql_key(ns, pod), pods, params)} OR {isin(sql_str('node'), nodes, params)})")
        out[table] = inv.slice(table, " AND ".join(where), params)
    return out
