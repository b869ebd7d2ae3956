"""Indicators of a case: public IPs, domains, images, binaries and service accounts behind the findings.

Indicators come from the evidence rows of the findings (not from every row in
the case), so they name what the detections and the story rest on.

>>> indicators(case.frames(), case.findings())                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from kubeforensics.report.questions.common import SEV_WEIGHT, col, is_public

KINDS = ("ip", "domain", "image", "binary", "service_account")
COLUMNS = ["kind", "value", "first_seen", "last_seen", "findings", "rules", "max_severity"]
_IN_CLUSTER = ("cluster.local", ".svc", ".internal", "in-addr.arpa", "localhost")
_WRITABLE = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/", "/home/", "/root/")


def _domain(name: str) -> str:
    n = name.strip().rstrip(".").lower()
    if not n or n.endswith(_IN_CLUSTER) or "." not in n:
        return ""
    return ".".join(n.split(".")[-2:])


def _names(v: Any) -> list[str]:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return []
    if isinstance(v, str):
        return [v] if v else []
    return [str(x) for x in v]


def _utc_naive(s: pd.Series) -> Any:
    """Times as naive UTC datetime64 values (what ``.values`` gave, without its deprecation)."""
    return s.dt.tz_convert(None).to_numpy() if isinstance(s.dtype, pd.DatetimeTZDtype) else s.to_numpy()


def indicators(tables: Mapping[str, pd.DataFrame], findings: pd.DataFrame, *, min_severity: str = "medium"
               ) -> pd.DataFrame:
    """The indicators behind the findings of at least ``min_severity``.

    Parameters
    ----------
    tables : mapping
        The case's source tables (``case.frames()``).
    findings : DataFrame
        Findings of :func:`kubeforensics.detect.run_rules`.
    min_severity : str
        Findings below this severity are ignored.

    Returns
    -------
    DataFrame
        ``kind`` (ip, domain, image, binary, service_account), ``value``, ``first_seen``, ``last_seen``,
        ``findings`` (how many findings rest on it), ``rules`` (their ids), ``max_severity``.
    """
    if findings.empty:
        return pd.DataFrame(columns=COLUMNS)
    floor = SEV_WEIGHT.get(min_severity, 2)
    f = findings[findings["severity"].astype(str).map(SEV_WEIGHT).fillna(0) >= floor].reset_index(drop=True)
    ex = f[["rule_id", "severity", "event_ids"]].explode("event_ids").dropna().rename(columns={"event_ids": "event_id"})
    hits: list[pd.DataFrame] = []

    def add(kind: str, df: pd.DataFrame, values: pd.Series) -> None:
        if df.empty:
            return
        hits.append(pd.DataFrame({"kind": kind, "value": values.values, "event_id": df["event_id"].values,
                                  "time": _utc_naive(df["time"])}))

    ids = set(ex["event_id"])
    a = tables["audit"][tables["audit"]["event_id"].isin(ids)]
    if not a.empty:
        add("ip", a, col(a, "source_ip"))
        users = col(a, "user")
        sa = a[users.str.startswith("system:serviceaccount:")]
        add("service_account", sa, col(sa, "user"))
        im = a[["event_id", "time", "pod_images"]].explode("pod_images").dropna()
        add("image", im, im["pod_images"].astype(str))
    p = tables["processes"][tables["processes"]["event_id"].isin(ids)]
    if not p.empty:
        add("ip", p, col(p, "daddr"))
        add("image", p, col(p, "image"))
        b = col(p, "binary")
        wr = p[b.str.startswith(_WRITABLE)]
        add("binary", wr, col(wr, "binary"))
    fl = tables["flows"][tables["flows"]["event_id"].isin(ids)]
    if not fl.empty:
        add("ip", fl, col(fl, "dst_ip"))
        add("ip", fl, col(fl, "src_ip"))
        q = fl[["event_id", "time"]].assign(d=col(fl, "dns_query").map(_domain))
        add("domain", q, q["d"])
        nm = fl[["event_id", "time", "dst_names"]].assign(n=fl["dst_names"].map(_names)).explode("n").dropna()
        add("domain", nm, nm["n"].map(_domain))
    al = tables["alerts"][tables["alerts"]["event_id"].isin(ids)]
    if not al.empty:
        add("image", al, col(al, "image"))
    # actors of process findings that are binaries dropped in writable paths
    acts = f[col(f, "actor").str.startswith(_WRITABLE)]
    if not acts.empty:
        hits.append(pd.DataFrame({"kind": "binary", "value": acts["actor"].values,
                                  "event_id": acts["event_ids"].map(lambda v: v[0] if len(v) else "").values,
                                  "time": _utc_naive(acts["first_seen"])}))
    if not hits:
        return pd.DataFrame(columns=COLUMNS)
    h = pd.concat(hits, ignore_index=True)
    h = h[h["value"].astype(str) != ""]
    h = h[(h["kind"] != "ip") | h["value"].map(is_public)]
    h = h.merge(ex, on="event_id", how="left")
    h["w"] = h["severity"].astype(str).map(SEV_WEIGHT).fillna(0)
    g = h.groupby(["kind", "value"])
    out = pd.DataFrame({
        "first_seen": g["time"].min(), "last_seen": g["time"].max(),
        "findings": g["rule_id"].nunique(), "rules": g["rule_id"].agg(lambda s: sorted({x for x in s if isinstance(x, str)})),
        "max_severity": g["w"].max().map({v: k for k, v in SEV_WEIGHT.items()}),
    }).reset_index()
    out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True)
    out["last_seen"] = pd.to_datetime(out["last_seen"], utc=True)
    order = {k: n for n, k in enumerate(KINDS)}
    out = out.sort_values(["kind", "findings"], key=lambda s: s.map(order) if s.name == "kind" else -s)
    return out[COLUMNS].reset_index(drop=True)
