"""Cloud exports of Kubernetes audit events, unwrapped into plain ``audit.k8s.io`` Events.

Three managed-Kubernetes services hand out the API-server audit log in their
own envelope:

* **AKS** diagnostic logs: ``{"category": "kube-audit" | "kube-audit-admin",
  "properties": {"log": <the event, as an object or as a JSON string>, "pod": ...}}``.
* **EKS** CloudWatch Logs exports: the event JSON is a string in ``message``
  (``aws logs filter-log-events``) or ``@message`` (Logs Insights), beside
  ``logStream``/``@logStream``/``logStreamName`` = ``kube-apiserver-audit-...``.
* **GKE** Cloud Logging: a ``LogEntry`` whose ``protoPayload`` is a
  ``google.cloud.audit.AuditLog`` (``methodName`` ``io.k8s.core.v1.pods.exec.create``,
  ``resourceName`` ``core/v1/namespaces/default/pods/nginx/exec``, ...).  It has a
  different schema, which :func:`gke_event` maps onto the fields of an audit Event.

:func:`unwrap` returns the plain event so that one mapping
(:mod:`kubeforensics.sources.audit`) fills the same columns for every origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from kubeforensics.errors import RecordError
from kubeforensics.sources import fields

AKS_CATEGORIES = frozenset(("kube-audit", "kube-audit-admin"))
GKE_PAYLOAD_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
EKS_STREAM_PREFIX = "kube-apiserver-audit"

#: google.rpc.Code -> (name, HTTP status), as documented in google/rpc/code.proto.
GRPC_CODES: dict[int, tuple[str, int]] = {
    0: ("OK", 200),
    1: ("CANCELLED", 499),
    2: ("UNKNOWN", 500),
    3: ("INVALID_ARGUMENT", 400),
    4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404),
    6: ("ALREADY_EXISTS", 409),
    7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429),
    9: ("FAILED_PRECONDITION", 400),
    10: ("ABORTED", 409),
    11: ("OUT_OF_RANGE", 400),
    12: ("UNIMPLEMENTED", 501),
    13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503),
    15: ("DATA_LOSS", 500),
    16: ("UNAUTHENTICATED", 401),
}


def _eks_message(obj: Mapping[str, Any]) -> tuple[str, Any]:
    if "message" in obj:
        return "message", obj["message"]
    return "@message", obj.get("@message")


def _is_gke(pp: Any) -> bool:
    if not isinstance(pp, dict):
        return False
    if pp.get("serviceName") == "k8s.io":
        return True
    method = pp.get("methodName")
    return isinstance(method, str) and method.startswith("io.k8s.") and pp.get("@type", GKE_PAYLOAD_TYPE) == GKE_PAYLOAD_TYPE


def sniff(obj: Mapping[str, Any]) -> bool:
    """True when ``obj`` is an AKS, EKS or GKE envelope around a Kubernetes audit event."""
    if obj.get("category") in AKS_CATEGORIES:
        return isinstance(obj.get("properties"), dict)
    if "protoPayload" in obj:
        return _is_gke(obj["protoPayload"])
    _, msg = _eks_message(obj)
    if isinstance(msg, str):
        stream = obj.get("logStream") or obj.get("@logStream") or obj.get("logStreamName")
        if isinstance(stream, str) and stream.startswith(EKS_STREAM_PREFIX):
            return True
        return msg[:1] == "{" and '"auditID"' in msg and "Event" in msg
    if isinstance(msg, dict):
        return msg.get("kind") == "Event" and "auditID" in msg
    return False


def _decode(value: Any, field: str) -> Mapping[str, Any]:
    """An event given as an object or as a JSON string holding one."""
    if value is None or value == "":
        raise RecordError(f"'{field}' is missing: no audit event inside the envelope")
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"'{field}' is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RecordError(f"'{field}' is {type(value).__name__}, not an audit event object")
    return value


def unwrap(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str] | None:
    """Unwrap an AKS, EKS or GKE envelope.

    Returns
    -------
    tuple or None
        ``(event, wrapper, timestamp_label)``: the plain audit event, ``aks``/``eks``/``gke``,
        and the envelope field that the event's ``timestamp`` came from (only GKE sets it
        to something other than ``timestamp``).  None when ``obj`` is no known envelope.

    Raises
    ------
    RecordError
        When the envelope is recognised but its event is missing or unusable.
    """
    if obj.get("category") in AKS_CATEGORIES:
        props = fields.obj(obj.get("properties"), "properties")
        return _decode(props.get("log"), "properties.log"), "aks", "timestamp"
    if "protoPayload" in obj:
        if not _is_gke(obj["protoPayload"]):
            pp = fields.obj(obj["protoPayload"], "protoPayload")
            raise RecordError(
                f"'protoPayload' is a Cloud Audit Log entry of service {pp.get('serviceName')!r} "
                f"(method {pp.get('methodName')!r}), not a Kubernetes API call"
            )
        return gke_event(obj)
    key, msg = _eks_message(obj)
    if msg is not None:
        return _decode(msg, key), "eks", "timestamp"
    return None


def _method_parts(method: str) -> tuple[str | None, str | None, str | None]:
    """``io.k8s.core.v1.pods.exec.create`` -> (verb, resource, subresource)."""
    if not method.startswith("io.k8s."):
        return None, None, None
    segs = method.split(".")
    verb = segs[-1] or None
    for i in range(2, len(segs) - 1):
        s = segs[i]
        if s[:1] == "v" and s[1:2].isdigit():
            rest = segs[i + 1 : -1]
            return verb, (rest[0] if rest else None), (rest[1] if len(rest) > 1 else None)
    return verb, None, None


def _resource_ref(resource_name: str, m_res: str | None, m_sub: str | None) -> dict[str, Any]:
    """Build an objectRef from ``<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]``."""
    ref: dict[str, Any] = {}
    segs = resource_name.split("/") if resource_name else []
    rest: list[str] = []
    if len(segs) >= 3:
        group, version, rest = segs[0], segs[1], segs[2:]
        ref["apiGroup"] = "" if group == "core" else group
        ref["apiVersion"] = version
        if m_res != "namespaces" and len(rest) >= 2 and rest[0] == "namespaces":
            ref["namespace"] = rest[1]
            rest = rest[2:]
    resource = m_res or (rest[0] if rest else None)
    if resource:
        ref["resource"] = resource
    if len(rest) > 1 and rest[1]:
        ref["name"] = rest[1]
        if resource == "namespaces":
            ref["namespace"] = rest[1]
    sub = m_sub or (rest[2] if len(rest) > 2 else None)
    if sub:
        ref["subresource"] = sub
    return ref


def gke_event(entry: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
    """Map a GKE Cloud Logging ``LogEntry`` onto the fields of an ``audit.k8s.io`` Event.

    The result has ``auditID`` (``insertId``, else ``operation.id``), ``verb`` (last
    ``methodName`` segment), ``objectRef`` (from ``methodName`` and ``resourceName``),
    ``user.username`` (``authenticationInfo.principalEmail``), ``sourceIPs``
    (``requestMetadata.callerIp``), ``userAgent``, ``requestObject``/``responseObject``
    (``request``/``response``), ``annotations`` (the entry ``labels``, where GKE puts
    ``authorization.k8s.io/decision``) and ``responseStatus``: GKE reports a
    ``google.rpc.Code``; it is translated to the HTTP code, the code name becomes
    ``reason``.  No requestURI is invented: GKE does not log one.
    """
    pp = fields.obj(entry.get("protoPayload"), "protoPayload")
    method = fields.text(pp.get("methodName"), "protoPayload.methodName") or ""
    rname = fields.text(pp.get("resourceName"), "protoPayload.resourceName") or ""
    verb, m_res, m_sub = _method_parts(method)
    auth = fields.obj(pp.get("authenticationInfo"), "protoPayload.authenticationInfo")
    meta = fields.obj(pp.get("requestMetadata"), "protoPayload.requestMetadata")
    status = fields.obj(pp.get("status"), "protoPayload.status")
    op = fields.obj(entry.get("operation"), "operation")
    grpc = fields.integer(status.get("code"), "protoPayload.status.code", bits=32) or 0
    name, http = GRPC_CODES.get(grpc, (f"CODE_{grpc}", 500))
    caller_ip = fields.text(meta.get("callerIp"), "protoPayload.requestMetadata.callerIp")
    ev: dict[str, Any] = {
        "kind": "Event",
        "auditID": fields.text(entry.get("insertId"), "insertId") or fields.text(op.get("id"), "operation.id"),
        "verb": verb,
        "user": {"username": auth.get("principalEmail")},
        "sourceIPs": [caller_ip] if caller_ip else None,
        "userAgent": meta.get("callerSuppliedUserAgent"),
        "objectRef": _resource_ref(rname, m_res, m_sub),
        "responseStatus": {
            "code": http,
            "reason": None if grpc == 0 else name,
            "message": status.get("message") or None,
        },
        "annotations": entry.get("labels"),
        "requestObject": pp.get("request"),
        "responseObject": pp.get("response"),
    }
    label = "timestamp"
    ts = entry.get("timestamp")
    if not ts:
        ts, label = entry.get("receiveTimestamp"), "receiveTimestamp"
    ev["timestamp"] = ts
    return ev, "gke", label
