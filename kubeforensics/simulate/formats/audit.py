"""API-server audit events (``audit.k8s.io/v1``), keys in the order the API server writes them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kubeforensics.simulate.clock import rfc6
from kubeforensics.simulate.cluster import K8S_COMMIT, K8S_VERSION, Node, Pod, ServiceAccount

UA_KUBELET = f"kubelet/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"
UA_KCM = f"kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"
UA_SCHED = f"kube-scheduler/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/scheduler"
UA_KUBECTL_OLD = "kubectl/v1.28.9 (linux/amd64) kubernetes/587f5fe"
UA_KUBECTL_NEW = "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46"

REASON_PHRASE = {403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 422: "Invalid"}


def sa_user(sa: ServiceAccount, pod: Pod | None = None, jti: str | None = None) -> dict[str, Any]:
    """A service-account identity; a bound token carries the pod and credential id in ``extra``."""
    user: dict[str, Any] = {
        "username": sa.username,
        "uid": sa.uid,
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa.namespace}", "system:authenticated"],
    }
    extra: dict[str, list[str]] = {}
    if jti:
        extra["authentication.kubernetes.io/credential-id"] = [f"JTI={jti}"]
    if pod is not None:
        extra["authentication.kubernetes.io/node-name"] = [pod.node.name]
        extra["authentication.kubernetes.io/node-uid"] = [pod.node.uid]
        extra["authentication.kubernetes.io/pod-name"] = [pod.name]
        extra["authentication.kubernetes.io/pod-uid"] = [pod.uid]
    if extra:
        user["extra"] = extra
    return user


def node_user(node: Node) -> dict[str, Any]:
    return {"username": f"system:node:{node.name}", "groups": ["system:nodes", "system:authenticated"]}


def system_user(name: str) -> dict[str, Any]:
    return {"username": name, "groups": ["system:authenticated"]}


def human_user(name: str, groups: list[str]) -> dict[str, Any]:
    return {"username": name, "groups": [*groups, "system:authenticated"]}


def rbac_reason(kind: str, binding: str, role_kind: str, role: str, subject: str) -> str:
    return f'RBAC: allowed by {kind} "{binding}" of {role_kind} "{role}" to {subject}'


def exec_uri(ns: str, pod: str, container: str, command: list[str], sub: str = "exec") -> str:
    q = "&".join(f"command={quote(c, safe='')}" for c in command)
    return (
        f"/api/v1/namespaces/{ns}/pods/{pod}/{sub}?{q}&container={quote(container, safe='')}"
        f"&stdin=true&stdout=true&tty=true"
    )


def event(
    *,
    audit_id: str,
    stage: str,
    t_recv: int,
    t_stage: int,
    level: str,
    verb: str,
    uri: str,
    user: dict[str, Any],
    source_ips: list[str],
    user_agent: str,
    object_ref: dict[str, Any] | None,
    code: int | None,
    annotations: dict[str, str] | None,
    message: str = "",
    request_object: Any = None,
    response_object: Any = None,
    impersonated: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit record; ``code=None`` for the RequestReceived stage (no response yet)."""
    e: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": user,
    }
    if impersonated:
        e["impersonatedUser"] = impersonated
    e["sourceIPs"] = source_ips
    e["userAgent"] = user_agent
    if object_ref is not None:
        e["objectRef"] = object_ref
    if code is not None:
        if code >= 400:
            reason = REASON_PHRASE.get(code, "InternalError")
            e["responseStatus"] = {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
        else:
            e["responseStatus"] = {"metadata": {}, "code": code}
    if request_object is not None and level in ("Request", "RequestResponse"):
        e["requestObject"] = request_object
    if response_object is not None and level == "RequestResponse" and code is not None:
        e["responseObject"] = response_object
    e["requestReceivedTimestamp"] = rfc6(t_recv)
    e["stageTimestamp"] = rfc6(t_stage)
    if annotations:
        e["annotations"] = annotations
    return e


def ref(resource: str, namespace: str | None = None, name: str | None = None, *, api_group: str = "",
        api_version: str = "v1", subresource: str | None = None, uid: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"resource": resource}
    if namespace:
        r["namespace"] = namespace
    if name:
        r["name"] = name
    if uid:
        r["uid"] = uid
    if api_group:
        r["apiGroup"] = api_group
    r["apiVersion"] = api_version
    if subresource:
        r["subresource"] = subresource
    return r
