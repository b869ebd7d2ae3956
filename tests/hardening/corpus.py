"""Realistic records of every format and the hostile variants built from them.

Nothing here is committed as data: every hostile file is generated at test time
into a temporary folder.  ``RECORDS[fmt](n)`` gives the n-th realistic record of
a format (shaped as the upstream tools write them; see ../shared/FORMATS.md);
``KEY_FIELDS[fmt]`` lists the fields a reader relies on (paths of keys, as
tuples because Falco's ``output_fields`` keys contain dots); ``TIME_FIELDS[fmt]``
the fields a reader takes the time from.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubeforensics.sources.records import BOM

Path_ = tuple[str, ...]
FORMATS = ("audit", "tetragon", "hubble", "falco", "k8s-events", "k8s-objects")
#: Main table of each format.
TABLE = {"audit": "audit", "tetragon": "processes", "hubble": "flows", "falco": "alerts",
         "k8s-events": "k8s_events", "k8s-objects": "objects"}


def _t(n: int, base: str = "2026-03-02T12") -> str:
    return f"{base}:{n // 60 % 60:02d}:{n % 60:02d}.{123456 + n:06d}Z"


def audit(n: int) -> dict[str, Any]:
    """An audit.k8s.io/v1 event: a pod listing by a service account."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": f"4f3c0e1a-0000-4000-8000-{n:012d}", "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/shop/pods?limit={500 + n}", "verb": "list",
        "user": {"username": "system:serviceaccount:shop:web", "uid": "8c1d6b6e-3a52-4a8e-9d0c-3b7f5c0e1a01",
                 "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"]},
        "sourceIPs": ["10.244.1.17"], "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
        "objectRef": {"resource": "pods", "namespace": "shop", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": _t(n), "stageTimestamp": _t(n),
        "annotations": {"authorization.k8s.io/decision": "allow",
                        "authorization.k8s.io/reason": 'RBAC: allowed by RoleBinding "web-read/shop" of Role "pod-reader" to ServiceAccount "web/shop"'},
    }


def tetragon(n: int) -> dict[str, Any]:
    """A Tetragon process_exec event of a shell in a pod."""
    return {
        "process_exec": {
            "process": {
                "exec_id": f"d29ya2VyLTE6MTIzNDU2Nzg5MDox{n:06d}", "pid": 4100 + n, "uid": 0, "cwd": "/",
                "binary": "/bin/sh", "arguments": f"-c \"id; cat /etc/hostname #{n}\"", "flags": "execve rootcwd clone",
                "start_time": _t(n), "auid": 4294967295,
                "pod": {"namespace": "shop", "name": "web-7d9c5f-x2x9q",
                        "container": {"id": "containerd://" + "ab12" * 16, "name": "web",
                                      "image": {"id": "docker.io/shop/web@sha256:" + "cd" * 32,
                                                "name": "docker.io/shop/web:1.4"},
                                      "start_time": "2026-03-02T11:00:00Z", "pid": 7},
                        "pod_labels": {"app": "web", "pod-template-hash": "7d9c5f"}},
                "docker": "ab12ab12ab12ab12ab12ab12ab12ab1",
                "parent_exec_id": "d29ya2VyLTE6MTIzNDU2Nzg5MDoxMDAwMDA=", "refcnt": 1,
            },
            "parent": {"exec_id": "d29ya2VyLTE6MTIzNDU2Nzg5MDoxMDAwMDA=", "pid": 4000, "uid": 0, "cwd": "/",
                       "binary": "/usr/local/bin/web", "arguments": "--port 8080", "flags": "execve",
                       "start_time": "2026-03-02T11:00:01Z", "auid": 4294967295},
        },
        "node_name": "worker-1", "time": _t(n),
    }


def hubble(n: int) -> dict[str, Any]:
    """A Hubble L7 HTTP flow envelope (``hubble observe -o jsonpb``)."""
    return {
        "flow": {
            "time": _t(n), "verdict": "FORWARDED",
            "IP": {"source": "10.244.1.17", "destination": "10.96.0.1", "ipVersion": "IPv4"},
            "l4": {"TCP": {"source_port": 40000 + n, "destination_port": 443}},
            "source": {"ID": 3871, "identity": 16781, "namespace": "shop", "pod_name": "web-7d9c5f-x2x9q",
                       "labels": ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"]},
            "destination": {"identity": 2, "labels": ["reserved:world"]},
            "Type": "L7", "node_name": "worker-1",
            "l7": {"type": "REQUEST", "http": {"method": "GET", "url": f"https://10.96.0.1/api/v1/secrets?n={n}",
                                                "protocol": "HTTP/1.1",
                                                "headers": [{"key": "User-Agent", "value": "curl/8.5.0"}]}},
            "event_type": {"type": 129}, "traffic_direction": "EGRESS", "is_reply": False,
            "Summary": f"HTTP/1.1 GET https://10.96.0.1/api/v1/secrets?n={n}",
        },
        "node_name": "worker-1", "time": _t(n),
    }


def falco(n: int) -> dict[str, Any]:
    """A Falco JSON alert."""
    return {
        "hostname": "worker-1", "priority": "Warning", "rule": "Terminal shell in container", "source": "syscall",
        "output": f"12:00:{n % 60:02d}.000000000: Warning A shell was spawned in a container (user=root n={n})",
        "tags": ["container", "shell", "mitre_execution"], "time": _t(n),
        "output_fields": {"container.id": "ab12ab12ab12", "proc.cmdline": "sh -c id", "proc.pid": 4100 + n,
                          "k8s.ns.name": "shop", "k8s.pod.name": "web-7d9c5f-x2x9q", "user.name": "root"},
    }


def k8s_event(n: int) -> dict[str, Any]:
    """A core/v1 Event."""
    return {
        "kind": "Event", "apiVersion": "v1",
        "metadata": {"name": f"web-7d9c5f-x2x9q.17{n:014x}", "namespace": "shop", "uid": f"e-{n}",
                     "creationTimestamp": _t(n)},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-7d9c5f-x2x9q", "uid": "p-1",
                           "apiVersion": "v1", "fieldPath": "spec.containers{web}"},
        "reason": "BackOff", "message": f"Back-off restarting failed container web ({n})",
        "source": {"component": "kubelet", "host": "worker-1"},
        "firstTimestamp": _t(n), "lastTimestamp": _t(n), "count": 1 + n, "type": "Warning",
    }


def k8s_object(n: int) -> dict[str, Any]:
    """A Pod as ``kubectl get pod -o json`` prints it."""
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": f"web-7d9c5f-{n:05d}", "namespace": "shop", "uid": f"uid-{n}",
                     "creationTimestamp": _t(n), "labels": {"app": "web"}},
        "spec": {"nodeName": "worker-1", "serviceAccountName": "web",
                 "containers": [{"name": "web", "image": "shop/web:1.4", "args": ["--port", "8080"]}]},
        "status": {"phase": "Running", "podIP": "10.244.1.17", "hostIP": "192.168.1.10"},
    }


RECORDS: dict[str, Callable[[int], dict[str, Any]]] = {
    "audit": audit, "tetragon": tetragon, "hubble": hubble, "falco": falco,
    "k8s-events": k8s_event, "k8s-objects": k8s_object,
}

_P = ("process_exec", "process")
KEY_FIELDS: dict[str, list[Path_]] = {
    "audit": [("kind",), ("apiVersion",), ("auditID",), ("stage",), ("verb",), ("requestURI",), ("user",),
              ("user", "username"), ("user", "groups"), ("sourceIPs",), ("objectRef",), ("objectRef", "resource"),
              ("objectRef", "namespace"), ("responseStatus",), ("responseStatus", "code"),
              ("requestReceivedTimestamp",), ("stageTimestamp",), ("annotations",), ("userAgent",),
              ("requestObject",), ("impersonatedUser",)],
    "tetragon": [("process_exec",), _P, (*_P, "exec_id"), (*_P, "pid"), (*_P, "uid"), (*_P, "binary"),
                 (*_P, "arguments"), (*_P, "start_time"), (*_P, "pod"), (*_P, "pod", "name"),
                 (*_P, "pod", "container"), (*_P, "pod", "container", "id"), (*_P, "pod", "pod_labels"),
                 ("process_exec", "parent"), ("node_name",), ("time",)],
    "hubble": [("flow",), ("flow", "time"), ("flow", "verdict"), ("flow", "IP"), ("flow", "IP", "source"),
               ("flow", "l4"), ("flow", "l4", "TCP", "destination_port"), ("flow", "source"),
               ("flow", "source", "labels"), ("flow", "source", "pod_name"), ("flow", "destination"),
               ("flow", "l7"), ("flow", "l7", "http"), ("flow", "l7", "http", "headers"),
               ("flow", "is_reply"), ("flow", "traffic_direction"), ("node_name",), ("time",)],
    "falco": [("time",), ("priority",), ("rule",), ("output",), ("output_fields",), ("hostname",), ("tags",),
              ("source",), ("output_fields", "proc.pid"), ("output_fields", "container.id"),
              ("output_fields", "k8s.pod.name")],
    "k8s-events": [("metadata",), ("metadata", "name"), ("metadata", "creationTimestamp"), ("involvedObject",),
                   ("involvedObject", "name"), ("reason",), ("message",), ("firstTimestamp",),
                   ("lastTimestamp",), ("count",), ("type",), ("source",), ("source", "host")],
    "k8s-objects": [("kind",), ("metadata",), ("metadata", "name"), ("metadata", "namespace"),
                    ("metadata", "creationTimestamp"), ("metadata", "labels"), ("spec",), ("spec", "containers"),
                    ("spec", "nodeName"), ("status",), ("status", "podIP"), ("status", "phase")],
}

TIME_FIELDS: dict[str, list[Path_]] = {
    "audit": [("requestReceivedTimestamp",), ("stageTimestamp",)],
    "tetragon": [("time",), (*_P, "start_time")],
    "hubble": [("time",), ("flow", "time")],
    "falco": [("time",)],
    "k8s-events": [("firstTimestamp",), ("lastTimestamp",), ("metadata", "creationTimestamp")],
    "k8s-objects": [("metadata", "creationTimestamp")],
}

#: A free-text field of each format that lands in a table column (for huge strings).
TEXT_FIELD: dict[str, Path_] = {
    "audit": ("requestURI",), "tetragon": (*_P, "arguments"), "hubble": ("flow", "l7", "http", "url"),
    "falco": ("output",), "k8s-events": ("message",), "k8s-objects": ("spec", "nodeName"),
}

#: Values of the wrong type (or shape) put into key fields.
WRONG_VALUES: list[Any] = [[1, "two", {"three": 3}], {"nested": {"object": True}}, 123456789012, True, -1.5,
                           "\u202e\u0000<script>alert(1)</script>\ud7ff"]


def setpath(obj: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``path`` set to ``value`` (intermediate objects created)."""
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    node[path[-1]] = value
    return out


def line(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, ensure_ascii=False).encode("utf-8", "surrogatepass")


def lines(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(line(r) + b"\n" for r in recs)


def deep(depth: int) -> bytes:
    """A JSON value nested ``depth`` objects deep (as text: too deep to build in Python)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


#: name -> (builder(fmt) -> bytes, (records, ingested, quarantined) expected, reason prefix of the quarantined)
def hostile_files(fmt: str) -> dict[str, tuple[bytes, tuple[int, int, int], str]]:
    """Every hostile variant of one format: file content, expected accounting, reason of the bad records."""
    rec = RECORDS[fmt]
    good = [rec(n) for n in range(4)]
    whole = lines(good)
    cut = line(rec(9))
    deep_rec = line(setpath(rec(7), KEY_FIELDS[fmt][0], {"x": 1})).replace(b'{"x": 1}', deep(5000), 1)
    return {
        "truncated-last-line": (whole + cut[: len(cut) // 2], (5, 4, 1), "invalid JSON"),
        "truncated-middle-line": (line(good[0]) + b"\n" + cut[:-7] + b"\n" + lines(good[1:]), (5, 4, 1),
                                  "invalid JSON"),
        "invalid-utf8": (whole + line(rec(5))[:2] + b"\xff\xfe" + line(rec(5))[2:] + b"\n", (5, 4, 1),
                         "invalid UTF-8 at byte 2"),
        "bom-crlf": (BOM + whole.replace(b"\n", b"\r\n"), (4, 4, 0), ""),
        "json-array": (json.dumps([*good[:2], 42, "x", None]).encode(), (5, 2, 3), "element "),
        "pretty-array-bom": (BOM + json.dumps(good, indent=2).encode(), (4, 4, 0), ""),
        "deep-nesting": (whole + deep_rec + b"\n", (5, 4, 1), ""),
        "deep-array-line": (whole + b"[" * 5000 + b"]" * 5000 + b"\n", (5, 4, 1), ""),
        "duplicate-keys": (whole + line(rec(5))[:-1] + b', "zz_dup": 1, "zz_dup": 2}\n', (5, 5, 0), ""),
        "nul-and-controls": (whole + line(setpath(rec(6), TEXT_FIELD[fmt], "a\u0000b\u001b[31mred\u2028x")) + b"\n",
                             (5, 5, 0), ""),
        "gzip": (gzip.compress(whole), (4, 4, 0), ""),
    }


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
