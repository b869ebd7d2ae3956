"""Realistic documents for the Elasticsearch tests, in both shapes, seeded through ``_bulk``.

``raw``: API-server audit events indexed as-is (Filebeat ``decode_json_fields`` into the root,
plus ``@timestamp``), or kept as a JSON string in ``message`` (fluent-bit).  ``ecs``: Elastic
Agent's Kubernetes audit-logs integration (``kubernetes.audit.*``) and Falco integration
(``falco.*``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from elasticsearch import Elasticsearch, helpers

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
NAMESPACES = ["shop", "payments", "monitoring", "kube-system"]
VERBS = ["get", "list", "watch", "create", "patch", "delete"]


def iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def pod_name(i: int) -> str:
    return f"web-7d9f8c6b5d-{i % 20:05d}"


def audit_event(i: int, step_ms: int = 1000) -> dict[str, Any]:
    t = T0 + timedelta(milliseconds=i * step_ms)
    ns = NAMESPACES[i % 4]
    pod = pod_name(i)
    verb = VERBS[i % 6]
    user = "system:serviceaccount:shop:default" if i % 3 else "alice@example.com"
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": f"{i:08x}-5c1e-4d0a-9b1e-3f3a2b1c0d9e", "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{ns}/pods/{pod}", "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": [f"10.0.{i % 7}.{i % 250 + 1}"], "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
        "objectRef": {"resource": "pods", "namespace": ns, "name": pod, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": iso(t), "stageTimestamp": iso(t + timedelta(milliseconds=3)),
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }


def raw_doc(i: int, in_message: bool = False) -> dict[str, Any]:
    ev = audit_event(i)
    if in_message:
        return {"@timestamp": ev["requestReceivedTimestamp"], "message": orjson.dumps(ev).decode(),
                "kubernetes": {"namespace_name": ev["objectRef"]["namespace"]}}
    return {"@timestamp": ev["requestReceivedTimestamp"], **ev}


def ecs_audit_doc(i: int) -> dict[str, Any]:
    ev = audit_event(i)
    audit = {k: v for k, v in ev.items() if k not in ("kind", "apiVersion")}
    return {"@timestamp": ev["requestReceivedTimestamp"], "data_stream": {"dataset": "kubernetes.audit_logs"},
            "event": {"dataset": "kubernetes.audit_logs", "module": "kubernetes"},
            "kubernetes": {"audit": audit}, "source": {"ip": ev["sourceIPs"][0]},
            "user": {"name": ev["user"]["username"]}, "orchestrator": {"namespace": ev["objectRef"]["namespace"]}}


def ecs_falco_doc(i: int) -> dict[str, Any]:
    t = T0 + timedelta(seconds=i * 7)
    ns, pod = NAMESPACES[i % 4], pod_name(i)
    return {"@timestamp": iso(t), "event": {"dataset": "falco.alerts", "module": "falco", "severity": 3},
            "rule": {"name": "Terminal shell in container"},
            "falco": {"time": iso(t)[:-1] + "123Z", "rule": "Terminal shell in container",
                      "priority": "Notice", "source": "syscall", "hostname": "ip-10-0-1-11",
                      "tags": ["container", "shell", "mitre_execution"],
                      "output": f"Notice A shell was spawned in a container (user=root k8s.ns={ns} k8s.pod={pod})",
                      "output_fields": {"container": {"id": f"{i:012x}"}, "k8s": {"ns": {"name": ns},
                                                                                "pod": {"name": pod}},
                                        "proc": {"cmdline": "bash -il", "name": "bash"}, "user": {"name": "root"}}},
            "orchestrator": {"namespace": ns, "resource": {"name": pod}}}


KW = {"type": "keyword"}
RAW_MAPPING = {"properties": {"@timestamp": {"type": "date"},
                              "objectRef": {"properties": {"namespace": KW, "name": KW, "resource": KW}},
                              "user": {"properties": {"username": KW}}, "sourceIPs": KW, "verb": KW,
                              "kubernetes": {"properties": {"namespace_name": KW}},
                              "message": {"type": "text", "index": False}}}
ECS_MAPPING = {"properties": {"@timestamp": {"type": "date"},
                              "kubernetes": {"properties": {"audit": {"properties": {
                                  "objectRef": {"properties": {"namespace": KW, "name": KW}},
                                  "user": {"properties": {"username": KW}}, "sourceIPs": KW, "verb": KW}}}},
                              "orchestrator": {"properties": {"namespace": KW, "resource": {"properties": {
                                  "name": KW}}}},
                              "user": {"properties": {"name": KW}}, "source": {"properties": {"ip": KW}},
                              "falco": {"properties": {"time": {"type": "date_nanos"}}}}}


def seed(es: Elasticsearch, index: str, docs: Iterator[dict[str, Any]], mapping: dict[str, Any]) -> int:
    es.options(ignore_status=404).indices.delete(index=index)
    es.indices.create(index=index, mappings=mapping)
    ok, _ = helpers.bulk(es, ({"_index": index, "_id": f"{index}-{n}", "_source": d} for n, d in enumerate(docs)),
                         chunk_size=5000, refresh=True)
    return ok
