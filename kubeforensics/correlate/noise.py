"""Timeline noise: a baseline of normal system actors and collapsing of repetitive rows.

``baseline_mask`` marks rows that the control plane and node agents produce
all the time (``system:node:*`` kubelets, controller-manager, scheduler,
kube-system controller service accounts, leases, probes, node status).
``collapse_noise`` turns repetitive rows (the same action by the same actor
on the same target: probes, leases, periodic beacons) into one row with
``count``, ``first_seen`` and ``last_seen``; with ``hide_baseline=True`` the
baseline disappears altogether -- the one switch an analyst flips.

Example
-------
>>> collapse_noise(timeline, hide_baseline=True)              # doctest: +SKIP
"""

from __future__ import annotations

import re

import pandas as pd

SYSTEM_ACTORS = re.compile(
    r"^(system:node:.+|system:kube-(controller-manager|scheduler|proxy)|system:apiserver|system:volume-scheduler"
    r"|system:serviceaccount:kube-system:[a-z0-9-]*(controller|garbage-collector|controller-manager|scheduler"
    r"|attachdetach|pvc-protection|pv-protection|root-ca-cert-publisher|ttl-after-finished|resourcequota)"
    r"|system:serviceaccount:kube-system:(coredns|kube-proxy|cilium|tetragon|falco|metrics-server))$"
)
SYSTEM_ACTIONS = re.compile(
    r"\bleases?\b|nodes/status|(?<![a-z])probe|healthz|readyz|livez|leader-election", re.IGNORECASE
)
KEY = ["source", "action", "actor", "namespace", "pod", "process", "args", "dst_ip", "dst_port", "verdict"]
HIGH = {"high", "critical"}


def baseline_mask(timeline: pd.DataFrame) -> pd.Series:
    """True for rows of normal system actors or routine system actions (never for high-severity rows).

    Parameters
    ----------
    timeline : DataFrame
        Rows with the columns of :data:`kubeforensics.schema.TIMELINE`.
    """

    def col(name: str) -> pd.Series:
        return (
            timeline[name].astype(object).fillna("").astype(str)
            if name in timeline.columns
            else pd.Series("", index=timeline.index)
        )

    actor_ok = col("actor").str.match(SYSTEM_ACTORS)
    action_ok = col("action").str.contains(SYSTEM_ACTIONS) | col("summary").str.contains(
        r"\b(?:liveness|readiness|startup) probe\b|\blease\b", case=False, regex=True
    )
    return (actor_ok | action_ok) & ~col("severity").str.lower().isin(HIGH)


def collapse_noise(
    timeline: pd.DataFrame, *, min_count: int = 5, hide_baseline: bool = False, keys: list[str] | None = None
) -> pd.DataFrame:
    """Collapse repetitive rows into one row each and optionally hide the system baseline.

    Parameters
    ----------
    timeline : DataFrame
        Rows with the columns of :data:`kubeforensics.schema.TIMELINE`.
    min_count : int
        Rows sharing a key at least this often become one row.
    hide_baseline : bool
        Drop the rows :func:`baseline_mask` marks.
    keys : list of str, optional
        What makes two rows "the same"; defaults to source, action, actor,
        namespace, pod, process, args, dst_ip, dst_port, verdict.

    Returns
    -------
    DataFrame
        The timeline columns plus ``count``, ``first_seen``, ``last_seen`` and
        ``baseline`` (bool), ordered by time.  A collapsed row keeps the time,
        summary and event_id of the first occurrence.
    """
    tl = timeline.copy()
    tl["baseline"] = baseline_mask(tl) if not tl.empty else pd.Series(dtype=bool)
    if hide_baseline:
        tl = tl[~tl["baseline"]]
    keys = [k for k in (keys or KEY) if k in tl.columns]
    if tl.empty:
        return tl.assign(count=pd.Series(dtype="int64"), first_seen=tl.get("time"), last_seen=tl.get("time"))
    kf = tl[keys].astype(object).fillna("").astype(str)
    gid = kf.groupby(keys, sort=False).ngroup()
    tl = tl.assign(_g=gid.values)
    size = tl.groupby("_g")["_g"].transform("size")
    rep = size >= min_count
    single = tl[~rep].assign(count=1, first_seen=tl.loc[~rep, "time"], last_seen=tl.loc[~rep, "time"])
    many = tl[rep].sort_values("time", kind="stable")
    if not many.empty:
        g = many.groupby("_g", sort=False)
        firsts = g.head(1).set_index("_g")
        firsts["count"] = g.size()
        firsts["first_seen"] = g["time"].min()
        firsts["last_seen"] = g["time"].max()
        firsts["summary"] = (
            firsts["summary"].astype(str) + " (x" + firsts["count"].astype(str) + ")"
            if ("summary" in firsts.columns)
            else None
        )
        many = firsts.reset_index()
    out = pd.concat([single, many], ignore_index=True).drop(columns="_g")
    return out.sort_values("time", kind="stable").reset_index(drop=True)
