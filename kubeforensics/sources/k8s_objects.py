"""Kubernetes object dumps (``kubectl get -o json``, list wrappers, one object per line).

Every object with a ``kind`` and a ``metadata`` object becomes one inventory
row of the ``objects`` table.  Some kinds fill more columns:

* ``Pod``: node, service account, IPs, phase (kept as written, even a value
  Kubernetes never reports), host namespaces, privileged (any container, init
  and ephemeral ones included), hostPath volumes, added capabilities, images,
  container names and ids (64-hex, runtime scheme removed), first owner.
* workloads (``Deployment``, ``DaemonSet``, ``StatefulSet``, ``ReplicaSet``,
  ``ReplicationController``, ``Job``, ``CronJob``, ``PodTemplate``): the same
  security fields, read from the pod template.
* ``Role``/``ClusterRole``: ``rules``; ``RoleBinding``/``ClusterRoleBinding``:
  ``subjects`` and ``role_ref`` (``Kind/name``).
* ``Node``: ``node`` is the node's own name and ``host_ip`` its InternalIP.
* ``Secret``: never a value.  Only metadata, ``type`` and the *names* of the
  data keys are kept; the ``last-applied-configuration`` annotation (which
  holds the whole Secret, values included) is removed.  ``ConfigMap`` is
  treated the same way (keys only), since configuration often holds
  credentials.

``spec`` holds the rest of the object as redacted JSON
(:func:`kubeforensics.redact.k8s_object`), without ``metadata.managedFields``.
``time`` is ``metadata.creationTimestamp`` (else ``deletionTimestamp``); an
object with neither is quarantined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson

from kubeforensics import redact
from kubeforensics.errors import RecordError
from kubeforensics.schema import OBJECTS, TableSpec
from kubeforensics.sources import fields as f

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: Where the pod spec sits in each workload kind.
POD_SPEC_PATH: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
_ROLES = ("Role", "ClusterRole")
_BINDINGS = ("RoleBinding", "ClusterRoleBinding")
#: Kinds whose values are never kept, only their key names.
_KEYS_ONLY: dict[str, tuple[str, ...]] = {
    "Secret": ("data", "stringData"),
    "ConfigMap": ("data", "binaryData"),
}
_AUDIT_KEYS = ("auditID", "requestURI", "stage", "stageTimestamp")


def _dig(obj: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    node: Mapping[str, Any] = obj
    for n, key in enumerate(path):
        node = f.obj(node.get(key), ".".join(path[: n + 1]))
    return node


def _dicts(value: Any, field: str) -> list[Mapping[str, Any]]:
    """A list of objects (null/absent is empty); a non-object element is an error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"'{field}' is {type(value).__name__}, not a list")
    out = []
    for n, item in enumerate(value):
        if item is None:
            continue
        out.append(f.obj(item, f"{field}[{n}]"))
    return out


def _unique(items: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        if i:
            seen.setdefault(i, None)
    return list(seen)


def pod_security(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Security-relevant fields of a pod spec (a Pod's ``spec`` or a workload's template spec).

    Parameters
    ----------
    spec
        The pod spec.
    where
        Its path in the object, for error messages (``spec``, ``spec.template.spec``).
    """
    containers: list[tuple[str, Mapping[str, Any]]] = []
    for key in _CONTAINER_LISTS:
        for n, c in enumerate(_dicts(spec.get(key), f"{where}.{key}")):
            containers.append((f"{where}.{key}[{n}]", c))
    privileged = False
    caps: list[str | None] = []
    for path, c in containers:
        sc = f.obj(c.get("securityContext"), f"{path}.securityContext")
        if f.boolean(sc.get("privileged"), f"{path}.securityContext.privileged"):
            privileged = True
        add = f.obj(sc.get("capabilities"), f"{path}.securityContext.capabilities").get("add")
        caps.extend(f.strings(add, f"{path}.securityContext.capabilities.add") or [])
    host_paths = []
    for n, v in enumerate(_dicts(spec.get("volumes"), f"{where}.volumes")):
        hp = f.obj(v.get("hostPath"), f"{where}.volumes[{n}].hostPath")
        if hp:
            host_paths.append(f.text(hp.get("path"), f"{where}.volumes[{n}].hostPath.path"))
    return {
        "service_account": f.text(spec.get("serviceAccountName"), f"{where}.serviceAccountName")
        or f.text(spec.get("serviceAccount"), f"{where}.serviceAccount"),
        "host_pid": bool(f.boolean(spec.get("hostPID"), f"{where}.hostPID")),
        "host_network": bool(f.boolean(spec.get("hostNetwork"), f"{where}.hostNetwork")),
        "host_ipc": bool(f.boolean(spec.get("hostIPC"), f"{where}.hostIPC")),
        "privileged": privileged,
        "host_paths": _unique(host_paths),
        "capabilities": _unique(caps),
        "images": _unique(f.text(c.get("image"), f"{p}.image") for p, c in containers),
        "container_names": _unique(f.text(c.get("name"), f"{p}.name") for p, c in containers),
    }


def _pod_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    status = f.obj(obj.get("status"), "status")
    ids: list[str | None] = []
    for key in _STATUS_LISTS:
        for n, cs in enumerate(_dicts(status.get(key), f"status.{key}")):
            ids.append(f.container_hex(f.text(cs.get("containerID"), f"status.{key}[{n}].containerID")))
    pod_ips = [
        f.text(p.get("ip"), f"status.podIPs[{n}].ip") for n, p in enumerate(_dicts(status.get("podIPs"), "status.podIPs"))
    ]
    pod_ip = f.text(status.get("podIP"), "status.podIP")
    return {
        "pod_ip": pod_ip,
        "pod_ips": _unique(pod_ips) or ([pod_ip] if pod_ip else None),
        "host_ip": f.text(status.get("hostIP"), "status.hostIP"),
        "phase": f.text(status.get("phase"), "status.phase"),
        "container_ids": _unique(ids),
    }


def _node_ip(obj: Mapping[str, Any]) -> str | None:
    status = f.obj(obj.get("status"), "status")
    for n, a in enumerate(_dicts(status.get("addresses"), "status.addresses")):
        if a.get("type") == "InternalIP":
            return f.text(a.get("address"), f"status.addresses[{n}].address")
    return None


def _sanitise(obj: Mapping[str, Any], kind: str | None) -> dict[str, Any]:
    """The object without managedFields, keys-only kinds reduced to key names, last-applied cleaned."""
    out = dict(obj)
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        ann = meta.get("annotations")
        if isinstance(ann, Mapping) and LAST_APPLIED in ann:
            meta["annotations"] = {**ann, LAST_APPLIED: _last_applied(ann[LAST_APPLIED], kind)}
        out["metadata"] = meta
    keys_only = _KEYS_ONLY.get(kind or "")
    if keys_only:
        allowed = ("apiVersion", "kind", "metadata", "type", "immutable")
        out = {k: v for k, v in out.items() if k in allowed}
        for key in keys_only:
            value = obj.get(key)
            if isinstance(value, Mapping):
                out[f"{key}_keys"] = sorted(str(k) for k in value)
    return out


def _last_applied(value: Any, kind: str | None) -> Any:
    if kind in _KEYS_ONLY or not isinstance(value, str):
        return redact.MARK
    try:
        applied = orjson.loads(value)
    except orjson.JSONDecodeError:
        return redact.MARK
    if not isinstance(applied, Mapping):
        return redact.MARK
    applied_kind = applied.get("kind") if isinstance(applied.get("kind"), str) else kind
    if applied_kind in _KEYS_ONLY:
        return redact.MARK
    return _sanitise(applied, applied_kind)


class K8sObjectsReader:
    """Kubernetes objects of any kind -> the ``objects`` inventory table."""

    name: ClassVar[str] = "k8s-objects"
    tables: ClassVar[tuple[TableSpec, ...]] = (OBJECTS,)

    def sniff(self, obj: Mapping[str, Any]) -> bool:
        """A ``kind`` (not Event, not a List) and a ``metadata`` object; never an audit event."""
        kind = obj.get("kind")
        if not isinstance(kind, str) or kind == "Event" or kind.endswith("List"):
            return False
        api = obj.get("apiVersion")
        if isinstance(api, str) and api.startswith("audit.k8s.io/"):
            return False
        return isinstance(obj.get("metadata"), Mapping) and not any(k in obj for k in _AUDIT_KEYS)

    def extract(self, obj: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """One ``objects`` row per object; raises RecordError for an unusable object."""
        kind = f.text(obj.get("kind"), "kind")
        if not kind:
            raise RecordError("'kind' is missing")
        meta = f.obj(obj.get("metadata"), "metadata")
        name = f.text(meta.get("name"), "metadata.name")
        if not name:
            raise RecordError(f"'metadata.name' is missing in a {kind[:60]} object")
        created = f.ts(meta.get("creationTimestamp"), "metadata.creationTimestamp")
        deleted = f.ts(meta.get("deletionTimestamp"), "metadata.deletionTimestamp")
        time = created if created is not None else deleted
        if time is None:
            raise RecordError(f"'metadata.creationTimestamp' is missing in {kind[:60]} {name[:120]!r}")
        owners = _dicts(meta.get("ownerReferences"), "metadata.ownerReferences")
        labels = f.obj(meta.get("labels"), "metadata.labels")
        row: dict[str, Any] = {
            "time": time,
            "kind": kind,
            "api_version": f.text(obj.get("apiVersion"), "apiVersion"),
            "namespace": f.text(meta.get("namespace"), "metadata.namespace"),
            "name": name,
            "uid": f.text(meta.get("uid"), "metadata.uid"),
            "created": created,
            "deleted": deleted,
            "labels": f.as_json(dict(labels)) if labels else None,
            "owner_kind": f.text(owners[0].get("kind"), "metadata.ownerReferences[0].kind") if owners else None,
            "owner_name": f.text(owners[0].get("name"), "metadata.ownerReferences[0].name") if owners else None,
        }
        path = POD_SPEC_PATH.get(kind)
        if path is not None:
            row.update(pod_security(_dig(obj, path), ".".join(path)))
        if kind == "Pod":
            row["node"] = f.text(f.obj(obj.get("spec"), "spec").get("nodeName"), "spec.nodeName")
            row.update(_pod_status(obj))
        elif kind == "Node":
            row["node"] = name
            row["host_ip"] = _node_ip(obj)
        elif kind in _ROLES:
            row["rules"] = _json(obj.get("rules"), "rules")
        elif kind in _BINDINGS:
            row["subjects"] = _json(obj.get("subjects"), "subjects")
            ref = f.obj(obj.get("roleRef"), "roleRef")
            if ref:
                row["role_ref"] = (
                    f"{f.text(ref.get('kind'), 'roleRef.kind') or '?'}/{f.text(ref.get('name'), 'roleRef.name') or '?'}"
                )
        row["spec"] = _json(_sanitise(obj, kind), "object")
        yield OBJECTS.name, row


def _json(value: Any, field: str) -> str | None:
    """Redacted JSON text of a value; a value nested too deeply is a RecordError."""
    try:
        return f.as_json(redact.k8s_object(value))
    except RecursionError as exc:
        raise RecordError(f"'{field}' is nested too deeply to store") from exc
