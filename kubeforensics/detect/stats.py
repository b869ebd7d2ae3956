"""Statistical single-source rules: bursts, entropy, periodicity, fan-out, unusual origins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from kubeforensics.detect.conditions import globs_regex
from kubeforensics.detect.model import Severity
from kubeforensics.detect.netutil import entropy, internal_mask, registered_domain, to_ns
from kubeforensics.detect.pyrule import Frames, Load, PyRule

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

T0 = "2024-05-01T10:00:00Z"


def _ts(offset_s: float) -> str:
    return (pd.Timestamp(T0) + pd.Timedelta(seconds=offset_s)).isoformat()


def _not_allowed(s: pd.Series, config: TuningConfig, *lists: str) -> pd.Series:
    pats = [p for name in lists for p in config.list(name)]
    return ~s.astype("string").str.match(globs_regex(pats), na=False).astype(bool)


def _outbound(flows: pd.DataFrame) -> pd.Series:
    r = flows["is_reply"]
    return r.isna() | (r == False)  # object column of True/False/None: compare by value, not `is`/`~`


class ForbiddenBurst(PyRule):
    id = "KF-AUD-201"
    title = "Burst of denied API requests (permission probing)"
    description = "One identity received many 401/403 answers in a short window: it is trying what it may do, as stolen tokens and enumeration tools do."
    severity = Severity.MEDIUM
    techniques = ("T1613", "T1069.003")
    tactic = "discovery"
    sources = ("audit",)
    fields = ("audit.code", "audit.user", "audit.source_ip", "audit.time", "audit.resource", "audit.verb")
    false_positives = "A misconfigured controller retrying a forbidden call (it repeats the same request: check the resources)."
    summary = "{user} was denied {denied} requests within {window} s from {source_ip} (e.g. {verb} {resource})"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "actor": "user"}
    key = ("user",)
    positive: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(i), "user": "system:serviceaccount:shop:web", "verb": "list", "resource": r, "code": 403, "source_ip": "10.244.1.7"} for i, r in enumerate(["pods", "secrets", "nodes", "namespaces", "roles", "configmaps", "services", "deployments", "daemonsets", "jobs", "cronjobs", "ingresses"])]}]
    negative: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(i * 300), "user": "alice", "verb": "get", "resource": "pods", "code": 403} for i in range(12)]}]

    loads: ClassVar[dict[str, Load]] = {"audit": Load(("code", "user", "source_ip", "verb", "resource"), "code IN (401, 403)")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        a = tables["audit"]
        d = a[a["code"].isin([401, 403])]
        d = d[_not_allowed(d["user"], config, "system_identities")]
        if d.empty:
            return d
        n = int(config.threshold("forbidden_burst", 10))
        w = pd.Timedelta(seconds=config.threshold("forbidden_window_s", 600))
        keep = []
        for _, g in d.sort_values("time").groupby("user", sort=False):
            t = to_ns(g["time"])
            if len(t) < n:
                continue
            ends = np.searchsorted(t, t + w.value, side="right")
            if (ends - np.arange(len(t))).max() >= n:
                keep.append(g.assign(denied=len(g), window=int(w.total_seconds())))
        return pd.concat(keep) if keep else d.iloc[0:0]


class HighEntropyDns(PyRule):
    id = "KF-NET-101"
    title = "Many high-entropy DNS names under one domain (DNS tunnelling)"
    description = "A source resolved many long, random-looking names under one domain: data encoded into DNS queries, or a tunnel."
    severity = Severity.HIGH
    techniques = ("T1071.004", "T1048")
    tactic = "exfiltration"
    sources = ("flows",)
    fields = ("flows.dns_query", "flows.src_namespace", "flows.src_pod", "flows.src_ip", "flows.time")
    false_positives = "CDNs and anti-virus lookups that encode hashes in names (add the domain to a suppress entry)."
    summary = "{src_namespace}/{src_pod} ({src_ip}) resolved {names} high-entropy names under {domain} (e.g. {dns_query})"
    entity: ClassVar[dict[str, str]] = {"namespace": "src_namespace", "pod": "src_pod", "actor": "src_ip"}
    key = ("src_namespace", "src_pod", "domain")
    positive: ClassVar[list[Frames]] = [{"flows": [{"time": _ts(i), "src_namespace": "shop", "src_pod": "web-1", "src_ip": "10.244.1.7", "dns_query": f"{h}.x.exfil-example.net.", "l7_type": "REQUEST"} for i, h in enumerate(__import__("hashlib").sha256(str(i).encode()).hexdigest()[:30] for i in range(25))]}]
    negative: ClassVar[list[Frames]] = [{"flows": [{"time": _ts(i), "src_namespace": "shop", "src_pod": "web-1", "src_ip": "10.244.1.7", "dns_query": q, "l7_type": "REQUEST"} for i, q in enumerate(["api.github.com.", "db.shop.svc.cluster.local.", "db.shop.svc.cluster.local.shop.svc.cluster.local."] * 10)]}]

    loads: ClassVar[dict[str, Load]] = {"flows": Load(("dns_query", "l7_type", "src_namespace", "src_pod", "src_ip"),
                           "dns_query IS NOT NULL AND (l7_type IS NULL OR l7_type <> 'RESPONSE')")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        f = tables["flows"]
        q = f[f["dns_query"].notna() & (f["l7_type"].isna() | (f["l7_type"] != "RESPONSE"))]
        if q.empty:
            return q
        bits = config.threshold("dns_entropy_bits", 3.0)
        min_len = int(config.threshold("dns_entropy_min_len", 16))
        uniq = pd.unique(q["dns_query"])
        score = {}
        for name in uniq:
            label = str(name).rstrip(".").split(".")[0]
            score[name] = len(label) >= min_len and entropy(label) >= bits and not str(name).rstrip(".").endswith(("cluster.local", "svc"))
        q = q[q["dns_query"].map(score).astype(bool)]
        if q.empty:
            return q
        q = q.assign(domain=q["dns_query"].map(lambda n: registered_domain(str(n))))
        src = q["src_pod"].astype(object).where(q["src_pod"].notna(), q["src_ip"])
        names = q.groupby([q["src_namespace"].astype(object).fillna(""), src.fillna(""), q["domain"]])["dns_query"].transform("nunique")
        q = q.assign(names=names)
        return q[q["names"] >= config.threshold("dns_entropy_min_queries", 20)]


class PeriodicBeacon(PyRule):
    id = "KF-NET-102"
    title = "Periodic connections to an external endpoint (beacon)"
    description = "One workload connected to the same external address and port at regular intervals: a C2 agent checking in, or a scheduled job calling home."
    severity = Severity.HIGH
    techniques = ("T1071.001",)
    tactic = "command-and-control"
    sources = ("flows",)
    fields = ("flows.time", "flows.src_namespace", "flows.src_workload", "flows.src_pod", "flows.src_ip", "flows.dst_ip", "flows.dst_port", "flows.dst_labels", "flows.tcp_flags", "flows.is_reply")
    false_positives = "Telemetry, licence checks and update pollers (suppress by pod and destination)."
    summary = "{source} connected to {dst_ip}:{dst_port} {connections} times every ~{period} s ({dst_names})"
    entity: ClassVar[dict[str, str]] = {"namespace": "src_namespace", "pod": "src_pod", "actor": "source"}
    key = ("src_namespace", "source", "dst_ip", "dst_port")
    positive: ClassVar[list[Frames]] = [{"flows": [{"time": _ts(i * 60 + (i % 2)), "src_namespace": "", "src_ip": "192.168.1.10", "src_labels": ["reserved:host"], "dst_ip": "203.0.113.50", "dst_port": 443, "protocol": "TCP", "tcp_flags": "SYN", "dst_labels": ["reserved:world"], "is_reply": False} for i in range(10)]}]
    negative: ClassVar[list[Frames]] = [{"flows": [{"time": _ts(t), "src_namespace": "shop", "src_pod": "web-1", "src_ip": "10.244.1.7", "dst_ip": "203.0.113.50", "dst_port": 443, "protocol": "TCP", "tcp_flags": "SYN", "dst_labels": ["reserved:world"], "is_reply": False} for t in (0, 5, 300, 320, 1900, 2000, 5000, 5003, 9000, 20000)]}]

    loads: ClassVar[dict[str, Load]] = {"flows": Load(("src_namespace", "src_workload", "src_pod", "src_ip", "dst_ip", "dst_port", "dst_pod", "dst_labels", "tcp_flags", "is_reply"),
                           "dst_pod IS NULL AND dst_port <> 53 AND (is_reply IS NULL OR NOT is_reply) AND list_contains(dst_labels, 'reserved:world')")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        f = tables["flows"]
        f = f[f["dst_pod"].isna() & (f["dst_port"] != 53)]
        f = f[_outbound(f)]
        f = f[f["dst_labels"].map(lambda v: v is not None and not isinstance(v, float) and "reserved:world" in list(v)).astype(bool)]
        if f.empty:
            return f
        flags = f["tcp_flags"].astype(object).fillna("")
        f = f[(flags == "") | (flags.str.contains("SYN") & ~flags.str.contains("ACK"))]
        src = f["src_workload"].astype(object).where(f["src_workload"].notna(), f["src_pod"])
        src = src.where(src.notna(), f["src_ip"])
        f = f.assign(source=src.astype(str))
        n = int(config.threshold("beacon_min_connections", 6))
        cv_max = config.threshold("beacon_max_cv", 0.25)
        keep = []
        for _, g in f.sort_values("time").groupby([f["src_namespace"].astype(object).fillna(""), "source", "dst_ip", "dst_port"], sort=False):
            if len(g) < n:
                continue
            t = to_ns(g["time"]) / 1e9
            gaps = np.diff(t)
            gaps = gaps[gaps > 1.0]  # retransmits and bursts within a second are one contact
            if len(gaps) < n - 1 or gaps.mean() <= 0:
                continue
            cv = gaps.std() / gaps.mean()
            if cv <= cv_max:
                keep.append(g.assign(connections=len(g), period=round(float(np.median(gaps)))))
        return pd.concat(keep) if keep else f.iloc[0:0]


class FanOutScan(PyRule):
    id = "KF-NET-103"
    title = "Connection fan-out from one pod (internal scan)"
    description = "One pod tried many distinct internal addresses and ports in a short window, mostly refused or dropped: service discovery by scanning."
    severity = Severity.MEDIUM
    techniques = ("T1046",)
    tactic = "discovery"
    sources = ("flows",)
    fields = ("flows.time", "flows.src_namespace", "flows.src_pod", "flows.src_ip", "flows.dst_ip", "flows.dst_port", "flows.verdict", "flows.is_reply")
    false_positives = "Monitoring scrapers and service meshes probing endpoints (they repeat the same targets)."
    summary = "{src_namespace}/{src_pod} ({src_ip}) tried {targets} distinct ip:port targets within {window} s ({dropped} dropped)"
    entity: ClassVar[dict[str, str]] = {"namespace": "src_namespace", "pod": "src_pod", "actor": "src_ip"}
    key = ("src_namespace", "src_pod", "src_ip")
    positive: ClassVar[list[Frames]] = [{"flows": [{"time": _ts(i), "src_namespace": "shop", "src_pod": "web-1", "src_ip": "10.244.1.7", "dst_ip": f"10.96.{i // 5}.{i}", "dst_port": 80 + i % 5, "verdict": "DROPPED", "tcp_flags": "SYN", "is_reply": False} for i in range(30)]}]
    negative: ClassVar[list[Frames]] = [{"flows": [{"time": _ts(i), "src_namespace": "shop", "src_pod": "web-1", "src_ip": "10.244.1.7", "dst_ip": "10.96.0.20", "dst_port": 5432, "verdict": "FORWARDED", "is_reply": False} for i in range(30)]}]

    loads: ClassVar[dict[str, Load]] = {"flows": Load(("src_namespace", "src_pod", "src_ip", "dst_ip", "dst_port", "verdict", "is_reply"),
                           "(is_reply IS NULL OR NOT is_reply) AND src_pod IS NOT NULL AND dst_ip IS NOT NULL")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        f = tables["flows"]
        f = f[_outbound(f) & f["src_pod"].notna() & f["dst_ip"].notna()]
        if f.empty:
            return f
        win = config.threshold("scan_window_s", 120)
        n = int(config.threshold("scan_min_targets", 20))
        bucket = pd.Series(to_ns(f["time"]) // int(win * 1e9), index=f.index)
        target = f["dst_ip"].astype(str) + ":" + f["dst_port"].astype(object).astype(str)
        f = f.assign(_b=bucket, _t=target)
        grp = [f["src_namespace"].astype(object).fillna(""), f["src_pod"].astype(object), "_b"]
        f = f.assign(targets=f.groupby(grp)["_t"].transform("nunique"))
        f = f[f["targets"] >= n]
        if f.empty:
            return f
        dropped = (f["verdict"] == "DROPPED").groupby([f["src_namespace"].astype(object).fillna(""), f["src_pod"].astype(object), f["_b"]]).transform("sum")
        return f.assign(dropped=dropped.astype(int), window=int(win))


class ServiceAccountFromOutside(PyRule):
    id = "KF-AUD-202"
    title = "Service-account token used from outside the cluster"
    description = "A service account's token was used from an address outside the cluster and private networks: the token left its pod."
    severity = Severity.HIGH
    techniques = ("T1078", "T1550.001")
    tactic = "lateral-movement"
    sources = ("audit",)
    fields = ("audit.user", "audit.source_ip", "audit.sa_pod_name", "audit.sa_credential_id", "audit.code")
    false_positives = "CI systems outside the cluster deploying with a service-account token (ci_identities)."
    summary = "{user} (pod {sa_pod_name}, credential {sa_credential_id}) was used from {source_ip}: {verb} {resource} ({user_agent})"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "actor": "user"}
    key = ("user", "source_ip")
    positive: ClassVar[list[Frames]] = [{"audit": [{"user": "system:serviceaccount:kube-system:kube-backup", "source_ip": "203.0.113.77", "verb": "list", "resource": "secrets", "code": 200, "sa_credential_id": "JTI=abc"}]}]
    negative: ClassVar[list[Frames]] = [{"audit": [{"user": "system:serviceaccount:shop:web", "source_ip": "10.244.1.7", "verb": "list", "resource": "pods", "code": 200}]}, {"audit": [{"user": "system:serviceaccount:ci:deployer", "source_ip": "203.0.113.77", "verb": "patch", "resource": "deployments", "code": 200}]}]

    loads: ClassVar[dict[str, Load]] = {"audit": Load(("user", "source_ip", "sa_pod_name", "sa_credential_id", "verb", "resource", "user_agent"),
                           "starts_with(\"user\", 'system:serviceaccount:') AND source_ip IS NOT NULL")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        a = tables["audit"]
        a = a[a["user"].astype("string").str.startswith("system:serviceaccount:", na=False).astype(bool) & a["source_ip"].notna()]
        a = a[_not_allowed(a["user"], config, "system_identities", "ci_identities")]
        if a.empty:
            return a
        return a[~internal_mask(a["source_ip"], config.list("internal_networks"))]


class CredentialNewOrigin(PyRule):
    id = "KF-AUD-203"
    title = "Credential used from several networks with different clients"
    description = "One user or service account was used from more than one network and with more than one client (user agent): typically a leaked credential used by someone besides its owner. Each origin is one finding, so the legitimate and the foreign use sit side by side."
    severity = Severity.MEDIUM
    techniques = ("T1078",)
    tactic = "initial-access"
    sources = ("audit",)
    fields = ("audit.user", "audit.source_ip", "audit.user_agent", "audit.time")
    false_positives = "People working from home and office with different kubectl builds; CI runners changing address and version together."
    summary = "{user} used from {source_ip} ({user_agent}); {origins} origins in all: {others}"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "actor": "user"}
    key = ("user", "source_ip", "user_agent")
    positive: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "user": "system:serviceaccount:ci:deployer", "source_ip": "10.20.0.5", "user_agent": "argocd/v2.9", "verb": "patch", "resource": "deployments", "code": 200},
                           {"time": _ts(900), "user": "system:serviceaccount:ci:deployer", "source_ip": "198.51.100.66", "user_agent": "kubectl/v1.30.1 (linux/amd64)", "verb": "create", "resource": "selfsubjectrulesreviews", "code": 201}]}]
    negative: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "user": "alice", "source_ip": "10.20.0.5", "user_agent": "kubectl/v1.30.1", "code": 200},
                           {"time": _ts(900), "user": "alice", "source_ip": "10.30.0.9", "user_agent": "kubectl/v1.30.1", "code": 200},
                           {"time": _ts(950), "user": "bob", "source_ip": "10.20.0.5", "user_agent": "kubectl/v1.30.1", "code": 200},
                           {"time": _ts(990), "user": "bob", "source_ip": "10.20.0.7", "user_agent": "Mozilla/5.0 (dashboard)", "code": 200}]}]

    # Only users seen from 2+ networks with 2+ clients can match (counted before the allow-lists,
    # so on at least the rows find() counts on).
    loads: ClassVar[dict[str, Load]] = {"audit": Load(("user", "source_ip", "user_agent"), """
        "user" IN (SELECT "user" FROM {audit}
                   WHERE "user" IS NOT NULL AND source_ip IS NOT NULL AND user_agent IS NOT NULL
                   GROUP BY "user"
                   HAVING count(DISTINCT regexp_replace(source_ip, '[.:][0-9a-f]+$', '')) >= 2
                      AND count(DISTINCT user_agent) >= 2)
        AND source_ip IS NOT NULL AND user_agent IS NOT NULL AND "user" <> 'system:anonymous'""")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        a = tables["audit"]
        a = a[a["user"].notna() & a["source_ip"].notna() & a["user_agent"].notna()]
        a = a[(a["user"] != "system:anonymous") & _not_allowed(a["user"], config, "system_identities")]
        if a.empty:
            return a
        net = a["source_ip"].astype(str).str.replace(r"[.:][0-9a-f]+$", "", regex=True)
        a = a.assign(_net=net.to_numpy())
        g = a.groupby("user")
        multi = (g["_net"].transform("nunique") >= 2) & (g["user_agent"].transform("nunique") >= 2)
        a = a[multi]
        if a.empty:
            return a
        # origins (network, agent) of each user; a row is flagged when its user has 2+ origins differing in both
        pairs = a.drop_duplicates(["user", "_net", "user_agent"])
        keep_users = [u for u, p in pairs.groupby("user") if any(
            (n1 != n2 and u1 != u2) for n1, u1 in zip(p["_net"], p["user_agent"]) for n2, u2 in zip(p["_net"], p["user_agent"]))]
        a = a[a["user"].isin(keep_users)]
        origins = {u: [f"{ip} ({ua})" for ip, ua in zip(p["source_ip"], p["user_agent"])] for u, p in
                   a.drop_duplicates(["user", "source_ip", "user_agent"]).groupby("user")}
        others = [", ".join(o for o in origins[u] if o != f"{ip} ({ua})")[:300] for u, ip, ua in zip(a["user"], a["source_ip"], a["user_agent"])]
        return a.assign(origins=a["user"].map(lambda u: len(origins[u])), others=others)


STATISTICAL_RULES: tuple[type[PyRule], ...] = (
    ForbiddenBurst,
    HighEntropyDns,
    PeriodicBeacon,
    FanOutScan,
    ServiceAccountFromOutside,
    CredentialNewOrigin,
)
