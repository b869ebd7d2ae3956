"""Entities at a point in time: which pod/container/node/service account was X at T.

Pod IPs are reused after a pod dies, container ids appear as 64-hex ids and
31-, 24- and 12-character prefixes, hostNetwork pods share their node's IP and
bound service-account tokens carry the pod name and a credential id.  The
resolver is built from whatever is present: object dumps, audit pod
creates/deletes/status updates, Tetragon pod blocks, Hubble endpoints, Falco
alerts and Events.

Example
-------
>>> r = EntityResolver.from_tables(case.frames())          # doctest: +SKIP
>>> r.ip("10.244.1.7", "2026-03-01T10:02:00Z").pod          # doctest: +SKIP
'web-7d9f'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kubeforensics.correlate import observations as obs_
from kubeforensics.correlate.frames import Tables, cid, normalise
from kubeforensics.correlate.observations import POD_COLS, token_key

log = logging.getLogger(__name__)

FORWARD_TOLERANCE = pd.Timedelta(seconds=60)


@dataclass(frozen=True)
class Entity:
    """What an identifier stood for at a moment (empty strings when unknown)."""

    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    node: str = ""
    service_account: str = ""
    container_id: str = ""
    host_network: bool = False
    owned_by_api: bool = False
    valid_from: pd.Timestamp | None = None
    valid_to: pd.Timestamp | None = None
    ip: str = ""
    candidates: tuple[str, ...] = ()  # hostNetwork pods sharing a node IP ("ns/pod")


def _ts(at: Any) -> pd.Timestamp:
    t = pd.Timestamp(at)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


class EntityResolver:
    """Point-in-time resolution of IPs, container ids, exec ids and pods.

    Build it with :meth:`from_tables`.  ``pods`` holds one row per pod
    lifetime, ``ip_bindings`` the IP each pod held and when, ``containers``
    one row per container and ``tokens`` one row per service-account token.
    """

    def __init__(
        self,
        pods: pd.DataFrame,
        containers: pd.DataFrame,
        node_ips: pd.DataFrame,
        tokens: pd.DataFrame,
        processes: pd.DataFrame,
    ) -> None:
        self.pods = pods
        self.containers = containers
        self.node_ips = node_ips
        self.tokens = tokens
        self._procs = processes
        self.ip_bindings = (
            pods[(pods["ip"] != "") & ~pods["host_network"]].sort_values("start").reset_index(drop=True)
        )
        self._pod_idx = {(r.namespace, r.pod): i for i, r in enumerate(pods.itertuples())}

    # ------------------------------------------------------------------ build
    @classmethod
    def from_tables(cls, tables: Tables) -> EntityResolver:
        """Build the resolver from the canonical tables (missing tables are empty).

        Parameters
        ----------
        tables : mapping
            ``audit``, ``processes``, ``flows``, ``alerts``, ``k8s_events``,
            ``objects`` (any subset) as DataFrames or Arrow tables.
        """
        t = normalise(tables, ("audit", "processes", "flows", "alerts", "k8s_events", "objects"))
        parts = [
            obs_._pods_from_objects(t["objects"]),
            *obs_._pods_from_audit(t["audit"]),
            obs_._pods_from_processes(t["processes"]),
            obs_._pods_from_flows(t["flows"]),
            obs_._pods_from_events(t["k8s_events"]),
        ]
        obs = (
            pd.concat([p for p in parts if not p.empty], ignore_index=True)
            if any(not p.empty for p in parts)
            else pd.DataFrame(columns=POD_COLS + ["deleted"])
        )
        pods = obs_.merge_pods(obs)
        procs = t["processes"]
        procs = procs.loc[
            procs["exec_id"] != "", ["exec_id", "time", "node", "namespace", "pod", "pod_uid", "container_id"]
        ]
        procs = procs.drop_duplicates("exec_id")
        return cls(
            pods,
            obs_.containers(t, pods),
            obs_.node_ips(obs),
            obs_.tokens(t["audit"]),
            procs.set_index("exec_id"),
        )

    # ---------------------------------------------------------------- queries
    def pod(self, namespace: str, name: str) -> Entity | None:
        """The pod ``namespace/name`` (its latest known lifetime), or None."""
        i = self._pod_idx.get((namespace, name))
        return None if i is None else self._entity(self.pods.iloc[i])

    def ip(self, ip: str, at: Any) -> Entity | None:
        """Which pod (or node) held ``ip`` at time ``at``; None when nothing known did."""
        res = self.resolve_ips(pd.Series([ip]), pd.Series([_ts(at)]))
        r = res.iloc[0]
        if r["pod"]:
            e = self.pod(r["namespace"], r["pod"])
            return None if e is None else _replace(e, ip=ip)
        if r["node"]:
            cands = tuple(
                self.pods.loc[self.pods["host_network"] & (self.pods["node"] == r["node"])].pipe(
                    lambda d: d["namespace"] + "/" + d["pod"]
                )
            )
            if len(cands) == 1:
                ns, name = cands[0].split("/", 1)
                e = self.pod(ns, name)
                if e is not None:
                    return _replace(e, ip=ip, candidates=cands)
            return Entity(node=r["node"], host_network=True, ip=ip, owned_by_api=True, candidates=cands)
        return None

    def resolve_ips(self, ips: pd.Series, times: pd.Series) -> pd.DataFrame:
        """Vectorised :meth:`ip`: a frame aligned with ``ips`` (namespace, pod, node, matched).

        A pod owns an IP from its first evidence until its deletion; a lookup
        slightly before the first evidence (within 60 s) still matches.
        """
        q = pd.DataFrame(
            {
                "ip": ips.fillna("").astype(str).values,
                "t": pd.to_datetime(pd.Series(times).reset_index(drop=True), utc=True).dt.as_unit("ns"),
                "_i": range(len(ips)),
            }
        )
        out = pd.DataFrame({"namespace": "", "pod": "", "node": "", "matched": False}, index=range(len(ips)))
        b = self.ip_bindings[["ip", "start", "end", "namespace", "pod", "node", "source"]].dropna(
            subset=["start"]
        )
        b = b.assign(start=b["start"].dt.as_unit("ns"))
        qv = q[q["t"].notna() & (q["ip"] != "")].sort_values("t")
        if not b.empty and not qv.empty:
            b = b.sort_values("start")
            back = pd.merge_asof(qv, b, left_on="t", right_on="start", by="ip", direction="backward")
            ok = back["pod"].notna() & (back["end"].isna() | (back["end"] >= back["t"]))
            # only pods known from observations (not from their creation) may be matched a little early
            obs_only = b[~b["source"].str.contains("objects|audit")]
            fwd = pd.merge_asof(
                qv,
                obs_only,
                left_on="t",
                right_on="start",
                by="ip",
                direction="forward",
                tolerance=FORWARD_TOLERANCE,
            )
            use_fwd = ~ok & fwd["pod"].notna()
            for frame, mask in ((back, ok), (fwd, use_fwd)):
                sel = frame[mask.values]
                out.loc[sel["_i"].values, ["namespace", "pod", "node"]] = sel[
                    ["namespace", "pod", "node"]
                ].values
                out.loc[sel["_i"].values, "matched"] = True
        if not self.node_ips.empty:
            node_of = self.node_ips.set_index("ip")["node"]
            miss = ~out["matched"].values
            nodes = q["ip"].map(node_of)
            hit = miss & nodes.notna().values
            out.loc[hit, "node"] = nodes[hit].values
            out.loc[hit, "matched"] = True
        return out

    def container(self, cid_or_prefix: str, at: Any = None) -> Entity | None:
        """The container whose id is or starts with ``cid_or_prefix`` (64, 31, 24 or 12 hex)."""
        key = cid(pd.Series([cid_or_prefix])).iloc[0]
        if len(key) < 12:
            return None
        c = self.containers[self.containers["key"] == key[:12]]
        c = c[[x.startswith(key) or key.startswith(x) for x in c["container_id"]]]
        if c.empty:
            return None
        if at is not None and len(c) > 1:
            t = _ts(at)
            live = c[
                (c["first_seen"] <= t + FORWARD_TOLERANCE) & (c["last_seen"].isna() | (c["last_seen"] >= t))
            ]
            c = live if not live.empty else c
        r = c.iloc[-1]
        base = self.pod(r["namespace"], r["pod"]) if r["pod"] else None
        return Entity(
            namespace=r["namespace"],
            pod=r["pod"],
            pod_uid=r["pod_uid"] or (base.pod_uid if base else ""),
            node=r["node"] or (base.node if base else ""),
            service_account=base.service_account if base else "",
            container_id=r["container_id"],
            host_network=bool(base.host_network) if base else False,
            owned_by_api=bool(r["owned_by_api"]),
            valid_from=r["first_seen"],
            valid_to=r["last_seen"],
        )

    def exec_id(self, exec_id: str) -> Entity | None:
        """The pod/container/node a Tetragon ``exec_id`` ran in."""
        if exec_id not in self._procs.index:
            return None
        r = self._procs.loc[exec_id]
        if r["container_id"]:
            e = self.container(r["container_id"], r["time"])
            if e is not None:
                return e
        if r["pod"]:
            e = self.pod(r["namespace"], r["pod"])
            if e is not None:
                return e
        return Entity(node=r["node"], owned_by_api=False)

    def _entity(self, r: pd.Series) -> Entity:
        return Entity(
            namespace=r["namespace"],
            pod=r["pod"],
            pod_uid=r["pod_uid"],
            node=r["node"],
            service_account=r["service_account"],
            host_network=bool(r["host_network"]),
            owned_by_api=bool(r["owned_by_api"]),
            valid_from=r["start"],
            valid_to=None if pd.isna(r["end"]) else r["end"],
            ip=r["ip"],
        )


def _replace(e: Entity, **kw: Any) -> Entity:
    from dataclasses import replace

    return replace(e, **kw)


__all__ = ["Entity", "EntityResolver", "token_key"]
