"""Kubernetes API-server audit events (``audit.k8s.io`` v1, v1beta1 and unversioned) -> ``audit`` rows.

One record gives one row.  Besides the plain event fields, the reader decodes
what an investigator needs from the places Kubernetes hides it:

* the ``kubectl exec``/``attach`` command, container, stdin and tty from the
  ``requestURI`` query (repeated, URL-encoded ``command=`` parameters), whether
  the verb is ``create`` (SPDY) or ``get`` (WebSocket, kubectl >= 1.30), or from
  a ``PodExecOptions`` request object when there is no URI (GKE);
* the risky parts of a pod spec in the request object (privileged containers,
  host namespaces, hostPath volumes, added capabilities, service account,
  images, node), also inside the pod template of workloads and CronJobs;
* the bound service-account token claims in ``user.extra`` (pod name and uid,
  node, credential id), the authorization decision and the binding that allowed it.

Request and response objects are stored as JSON after
:func:`kubeforensics.redact.k8s_object`.  AKS, EKS and GKE envelopes are
unwrapped by :mod:`kubeforensics.sources.audit_cloud`.

``name`` is ``objectRef.name``; for a ``create`` whose objectRef has no name (older
API servers, ``generateName``) it falls back to the created object's
``metadata.name`` (response first, then request).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote_plus

import orjson

from kubeforensics import redact
from kubeforensics.errors import RecordError
from kubeforensics.schema import AUDIT, TableSpec
from kubeforensics.sources import audit_cloud, fields

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

Row = dict[str, Any]

AUDIT_KEYS = ("auditID", "requestURI", "verb", "stage", "objectRef", "user")
_EMPTY: Mapping[str, Any] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_NS, _MAX_NS = -(2**63) + 1, 2**63 - 1  # what Arrow's timestamp[ns] holds
_SA_EXTRA = (
    ("sa_pod_name", "authentication.kubernetes.io/pod-name"),
    ("sa_pod_uid", "authentication.kubernetes.io/pod-uid"),
    ("sa_node_name", "authentication.kubernetes.io/node-name"),
    ("sa_credential_id", "authentication.kubernetes.io/credential-id"),
)
#: Workload kinds (and their resources) whose pod spec is ``spec.template.spec``.
_TEMPLATED = frozenset(("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "ReplicationController", "Job"))
_TEMPLATED_RES = frozenset(
    ("deployments", "daemonsets", "statefulsets", "replicasets", "replicationcontrollers", "jobs")
)
_STREAM_SUBRESOURCES = frozenset(("exec", "attach"))
_EXEC_OPTION_KINDS = frozenset(("PodExecOptions", "PodAttachOptions"))
#: Substrings that every pattern of ``redact.text`` needs; a query without any of them is left as is.
_URI_SECRET_HINTS = ("bearer", "basic", "token", "passw", "secret", "api", "key", "eyj", "://", "auth", "cred",
                     "cookie", "ls0tls1crudjt")
_QUERY_TRUE = frozenset(("true", "1", "True", "TRUE"))
_QUERY_FALSE = frozenset(("false", "0", "False", "FALSE"))


def _ts(value: Any, field: str) -> int | None:
    """RFC 3339 to nanoseconds, with a fast path for the API server's own formats.

    ``2018-10-26T13:38:34.867116Z`` (microseconds) and ``2018-10-26T13:38:34Z``
    go through :meth:`datetime.fromisoformat`; everything else, and every error,
    through :func:`fields.ts` (which names the field in its reason).
    """
    if value.__class__ is str:
        n = len(value)
        if (n == 27 and value[19] == "." or n == 20) and value[-1] == "Z" and value[10] == "T":
            try:
                d = datetime.fromisoformat(value) - _EPOCH
            except ValueError:
                return fields.ts(value, field)
            ns = (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000
            if _MIN_NS < ns < _MAX_NS:
                return ns
    return fields.ts(value, field)


def _s(value: Any, field: str) -> str | None:
    return value if value.__class__ is str or value is None else fields.text(value, field)


def _o(value: Any, field: str) -> Mapping[str, Any]:
    if value.__class__ is dict:
        return value
    return fields.obj(value, field)


def _str_list(value: Any, field: str) -> list[str] | None:
    """A list of strings, checked at C speed (``str.join`` refuses anything else)."""
    if value.__class__ is list:
        try:
            "".join(value)
            return value
        except TypeError:
            pass
    return None if value is None else fields.strings(value, field)


def _flag(value: Any) -> bool:
    """Lenient truth of a nested request-object flag (the API server already validated it)."""
    return value is True or value == "true"


def _dump(value: Any) -> str | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise RecordError(f"value cannot be stored as JSON: {exc}") from exc


def _quote(args: list[str]) -> str:
    """Join argv with spaces, shell-quoting the arguments that contain whitespace (or are empty)."""
    return " ".join(shlex.quote(a) if (not a or any(c.isspace() for c in a)) else a for a in args)


def _query_bool(value: str) -> bool | None:
    if value in _QUERY_TRUE:
        return True
    if value in _QUERY_FALSE:
        return False
    return None


def exec_from_uri(uri: str) -> tuple[list[str], str | None, bool | None, bool | None]:
    """Decode ``command`` (repeated), ``container`` (first), ``stdin`` and ``tty`` from a requestURI.

    Returns
    -------
    tuple
        ``(argv, container, stdin, tty)``; absent options are None, argv is then empty.

    >>> exec_from_uri("/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&command=id+-u&tty=true")
    (['sh', '-c', 'id -u'], None, None, True)
    """
    command: list[str] = []
    container = stdin = tty = None
    query = uri.partition("?")[2]
    if not query:
        return command, container, stdin, tty
    for part in query.split("&"):
        key, _, val = part.partition("=")
        if key == "command":
            command.append(unquote_plus(val))
        elif key == "container":
            if container is None:
                container = unquote_plus(val)
        elif key == "stdin":
            stdin = _query_bool(val)
        elif key == "tty":
            tty = _query_bool(val)
    return command, container, stdin, tty


def _safe_uri(uri: str) -> str:
    """Redact secrets in the query of a request URI; most queries hold none and are not scanned.

    Each parameter is redacted in its decoded form (``--password%3Dx`` is
    ``--password=x``); a parameter that held a secret is kept decoded with the
    mark, the others stay exactly as logged.
    """
    q = uri.find("?")
    if q < 0:
        return uri
    query = uri[q + 1 :]
    low = query.lower()
    for hint in _URI_SECRET_HINTS:
        if hint in low:
            break
    else:
        return uri
    parts = query.split("&")
    for n, part in enumerate(parts):
        decoded = unquote_plus(part)
        red = redact.text(decoded)
        if red != decoded:
            parts[n] = red or ""
    return uri[: q + 1] + "&".join(parts)


def pod_spec_of(ro: Mapping[str, Any], resource: str | None) -> Mapping[str, Any] | None:
    """The pod spec inside a request object: a Pod, a workload's template, a CronJob's job template."""
    kind = ro.get("kind")
    if kind is None:  # patches carry no kind: go by the resource
        if resource == "pods":
            kind = "Pod"
        elif resource in _TEMPLATED_RES:
            kind = "Deployment"
        elif resource == "cronjobs":
            kind = "CronJob"
        elif resource == "podtemplates":
            kind = "PodTemplate"
        else:
            return None
    node: Any
    if kind == "Pod":
        node = ro.get("spec")
    elif kind in _TEMPLATED:
        node = ro.get("spec")
        node = node.get("template") if isinstance(node, dict) else None
        node = node.get("spec") if isinstance(node, dict) else None
    elif kind == "CronJob":
        node = ro
        for key in ("spec", "jobTemplate", "spec", "template", "spec"):
            node = node.get(key) if isinstance(node, dict) else None
    elif kind == "PodTemplate":
        node = ro.get("template")
        node = node.get("spec") if isinstance(node, dict) else None
    else:
        return None
    return node if isinstance(node, dict) else None


def pod_columns(spec: Mapping[str, Any], row: Row) -> None:
    """Fill the ``pod_*`` columns of ``row`` from a pod spec (lenient: never raises on odd shapes)."""
    privileged = False
    caps: dict[str, None] = {}
    images: dict[str, None] = {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        for c in containers:
            if not isinstance(c, dict):
                continue
            image = c.get("image")
            if isinstance(image, str):
                images[image] = None
            sc = c.get("securityContext")
            if isinstance(sc, dict):
                if _flag(sc.get("privileged")):
                    privileged = True
                cap = sc.get("capabilities")
                add = cap.get("add") if isinstance(cap, dict) else None
                if isinstance(add, list):
                    for a in add:
                        if isinstance(a, str):
                            caps[a] = None
    paths: list[str] = []
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for v in volumes:
            hp = v.get("hostPath") if isinstance(v, dict) else None
            if isinstance(hp, dict) and isinstance(hp.get("path"), str):
                paths.append(hp["path"])
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    node = spec.get("nodeName")
    row["pod_privileged"] = privileged
    row["pod_host_pid"] = _flag(spec.get("hostPID"))
    row["pod_host_network"] = _flag(spec.get("hostNetwork"))
    row["pod_host_ipc"] = _flag(spec.get("hostIPC"))
    row["pod_host_paths"] = paths
    row["pod_capabilities"] = list(caps)
    row["pod_service_account"] = sa if isinstance(sa, str) else None
    row["pod_images"] = list(images)
    row["pod_node_name"] = node if isinstance(node, str) else None


def _first(value: Any, field: str) -> str | None:
    """First element of a ``user.extra`` value (a list of strings; a bare string is tolerated)."""
    if value.__class__ is list:
        return _s(value[0], field) if value else None
    return _s(value, field)


def event_row(ev: Mapping[str, Any], wrapper: str = "", timestamp_label: str = "timestamp") -> Row:
    """Map one audit Event (already unwrapped) to an ``audit`` row.

    Parameters
    ----------
    ev : Mapping
        An ``audit.k8s.io`` Event (v1, v1beta1 or without apiVersion).
    wrapper : str
        ``""`` for a plain event, else ``aks``, ``eks`` or ``gke``.
    timestamp_label : str
        The name reported in ``time_field`` when ``ev["timestamp"]`` gives the time.

    Returns
    -------
    dict
        Column name to value (timestamps as int nanoseconds), without provenance columns.

    Raises
    ------
    RecordError
        When a key field has the wrong type (the reason names it) or no time is usable.
    """
    get = ev.get
    kind = get("kind")
    if kind is not None and kind != "Event":
        if isinstance(kind, str):
            shown = repr(kind[:60])
        else:
            shown = repr(kind) if isinstance(kind, (int, float)) else "a list" if isinstance(kind, list) else "an object"
        raise RecordError(f"'kind' is {shown}, not 'Event': this is not a Kubernetes audit event")

    # -- time ------------------------------------------------------------------------------------
    stage_time = _ts(get("stageTimestamp"), "stageTimestamp")
    time_field = "requestReceivedTimestamp"
    time = _ts(get("requestReceivedTimestamp"), "requestReceivedTimestamp")
    if time is None:
        time_field = timestamp_label
        time = _ts(get("timestamp"), timestamp_label)
        if time is None:
            meta = _o(get("metadata"), "metadata")
            time_field = "metadata.creationTimestamp"
            time = _ts(meta.get("creationTimestamp"), "metadata.creationTimestamp")
    request_time = time
    if time is None:
        if stage_time is None:
            raise RecordError(
                "no usable time: requestReceivedTimestamp, timestamp, metadata.creationTimestamp "
                "and stageTimestamp are all missing"
            )
        time, time_field = stage_time, "stageTimestamp"

    # -- who and from where ----------------------------------------------------------------------
    user = get("user")
    user = _EMPTY if user is None else _o(user, "user")
    groups = _str_list(user.get("groups"), "user.groups")
    ips = _str_list(get("sourceIPs"), "sourceIPs")
    imp = get("impersonatedUser")
    verb = _s(get("verb"), "verb")
    uri = _s(get("requestURI"), "requestURI")
    ref = get("objectRef")
    ref = _EMPTY if ref is None else _o(ref, "objectRef")
    resource = _s(ref.get("resource"), "objectRef.resource")
    subresource = _s(ref.get("subresource"), "objectRef.subresource")
    status = get("responseStatus")
    status = _EMPTY if status is None else _o(status, "responseStatus")
    code = status.get("code")
    if code is not None and (code.__class__ is not int or not -0x80000000 <= code < 0x80000000):
        code = fields.integer(code, "responseStatus.code", bits=32)
    message = _s(status.get("message"), "responseStatus.message")
    ann = get("annotations")
    ann = None if ann is None else _o(ann, "annotations")

    row: Row = {
        "time": time,
        "request_time": request_time,
        "stage_time": stage_time,
        "time_field": time_field,
        "audit_id": _s(get("auditID"), "auditID"),
        "stage": _s(get("stage"), "stage"),
        "level": _s(get("level"), "level"),
        "audit_version": _s(get("apiVersion"), "apiVersion") or "",
        "wrapper": wrapper,
        "verb": verb,
        "user": _s(user.get("username"), "user.username"),
        "user_uid": _s(user.get("uid"), "user.uid"),
        "user_groups": groups,
        "impersonated_user": _s(_o(imp, "impersonatedUser").get("username"), "impersonatedUser.username")
        if imp is not None
        else None,
        "source_ip": ips[-1] if ips else None,
        "source_ips": ips,
        "user_agent": _s(get("userAgent"), "userAgent"),
        "resource": resource,
        "subresource": subresource,
        "namespace": _s(ref.get("namespace"), "objectRef.namespace"),
        "name": _s(ref.get("name"), "objectRef.name"),
        "api_group": _s(ref.get("apiGroup"), "objectRef.apiGroup"),
        "api_version": _s(ref.get("apiVersion"), "objectRef.apiVersion"),
        "object_uid": _s(ref.get("uid"), "objectRef.uid"),
        "request_uri": _safe_uri(uri) if uri else uri,
        "code": code,
        "status_reason": _s(status.get("reason"), "responseStatus.reason"),
        "status_message": redact.text(message) if message else message,
        "decision": _s(ann.get("authorization.k8s.io/decision"), "annotations.authorization.k8s.io/decision")
        if ann
        else None,
        "authz_reason": _s(ann.get("authorization.k8s.io/reason"), "annotations.authorization.k8s.io/reason")
        if ann
        else None,
        "annotations": _dump(ann) if ann is not None else None,
    }

    extra = user.get("extra")
    if extra:
        extra = _o(extra, "user.extra")
        for col, key in _SA_EXTRA:
            if key in extra:
                row[col] = _first(extra[key], f"user.extra.{key}")
        row["user_extra"] = _dump(redact.k8s_object(extra))

    ro = get("requestObject")
    if ro is not None:
        row["request_object"] = _dump(redact.k8s_object(ro))
    resp = get("responseObject")
    if resp is not None:
        row["response_object"] = _dump(redact.k8s_object(resp))

    object_columns(row, ro, resp, uri, resource, subresource, verb)
    return row


def object_columns(
    row: Row, ro: Any, resp: Any, uri: str | None, resource: str | None, subresource: str | None, verb: str | None,
    *, pod_cols: Callable[[Mapping[str, Any], Row], None] = pod_columns,
) -> None:
    """Fill the exec/attach, ``pod_*`` and created-``name`` columns of ``row`` from the request and response.

    Shared by :func:`event_row` and the bulk path (:mod:`kubeforensics.sources.audit_fast`);
    ``row`` must hold ``name`` (None when objectRef has none).  ``pod_cols`` fills the ``pod_*``
    columns from a pod spec (:func:`pod_columns`; the bulk path passes a memo of it).
    """
    if subresource in _STREAM_SUBRESOURCES:
        _exec_columns(uri, ro, row)
    elif ro.__class__ is dict:
        spec = pod_spec_of(ro, resource)
        if spec is not None:
            pod_cols(spec, row)
        elif ro.get("kind") == "Binding":  # pods/binding: the scheduler placing a pod on a node
            target = ro.get("target")
            if isinstance(target, dict) and isinstance(target.get("name"), str):
                row["pod_node_name"] = target["name"]

    if row["name"] is None and verb == "create" and subresource is None:
        row["name"] = _created_name(resp) or _created_name(ro)


def _created_name(obj: Any) -> str | None:
    meta = obj.get("metadata") if obj.__class__ is dict else None
    name = meta.get("name") if meta.__class__ is dict else None
    return name if isinstance(name, str) and name else None


def _exec_columns(uri: str | None, ro: Any, row: Row) -> None:
    """exec/attach: the command and options from the URI, else from a Pod*Options request object."""
    command: list[str] = []
    container = stdin = tty = None
    if uri:
        command, container, stdin, tty = exec_from_uri(uri)
    if ro.__class__ is dict:
        kind = ro.get("kind") or str(ro.get("@type", "")).rpartition(".")[2]
        if kind in _EXEC_OPTION_KINDS:
            if not command and isinstance(ro.get("command"), list):
                command = [c for c in ro["command"] if isinstance(c, str)]
            if container is None and isinstance(ro.get("container"), str):
                container = ro["container"]
            if stdin is None and isinstance(ro.get("stdin"), bool):
                stdin = ro["stdin"]
            if tty is None and isinstance(ro.get("tty"), bool):
                tty = ro["tty"]
    row["exec_command"] = redact.text(_quote(command)) if command else None
    row["exec_container"] = container
    row["exec_stdin"] = stdin
    row["exec_tty"] = tty


def _looks_like_audit_event(obj: Mapping[str, Any]) -> bool:
    if "involvedObject" in obj or "regarding" in obj:  # core/v1 and events.k8s.io/v1 Events
        return False
    av = obj.get("apiVersion")
    if isinstance(av, str) and av.startswith("audit.k8s.io/"):
        return True
    return any(k in obj for k in AUDIT_KEYS)


class AuditReader:
    """Reader of Kubernetes API-server audit events, plain or in AKS/EKS/GKE envelopes."""

    name: ClassVar[str] = "audit"
    tables: ClassVar[tuple[TableSpec, ...]] = (AUDIT,)

    def sniff(self, obj: Mapping[str, Any]) -> bool:
        """Audit Events (not core/v1 Events) and cloud envelopes around them."""
        if obj.get("kind") == "Event":
            return _looks_like_audit_event(obj)
        return audit_cloud.sniff(obj)

    def extract(self, obj: Mapping[str, Any]) -> Iterator[tuple[str, Row]]:
        """One ``audit`` row per record; RecordError (quarantine) when the record is unusable."""
        if obj.get("kind") == "Event" or "auditID" in obj:
            yield "audit", event_row(obj)
            return
        unwrapped = audit_cloud.unwrap(obj)
        if unwrapped is None:
            if not obj:
                raise RecordError("empty object: not a Kubernetes audit event")
            yield "audit", event_row(obj)
            return
        event, wrapper, label = unwrapped
        yield "audit", event_row(event, wrapper, label)

    def bulk(self, path: Path, evidence: str, evidence_id: str) -> BulkResult | None:
        """Vectorised path for whole JSON-lines files (see :mod:`kubeforensics.sources.audit_fast`)."""
        from kubeforensics.sources import audit_fast

        return audit_fast.bulk(path, evidence, evidence_id)
