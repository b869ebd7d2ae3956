"""Elasticsearch documents -> the raw record shapes our readers accept.

Two document shapes, chosen per index pattern (:class:`IndexSpec`):

``raw``
    The original record as shipped by fluent-bit/Filebeat: either the whole ``_source``
    (an audit event, Tetragon event, Hubble flow or Falco alert indexed as-is, maybe with
    an added ``@timestamp``), or the original JSON under a field such as ``message`` or
    ``log`` (a string to parse, or an object).
``ecs``
    Elastic Agent integrations: the Kubernetes audit-logs integration keeps the audit
    event under ``kubernetes.audit.*`` (same camelCase keys as the API server writes);
    the Falco integration keeps the alert under ``falco.*`` (``rule``, ``priority``,
    ``output``, ``output_fields`` as nested objects, ``time``, ``hostname``, ``source``,
    ``tags``), with ECS fields (``rule.name``, ``event.severity``, ``orchestrator.*``,
    ``container.id``, ``process.*``) as a fallback when ``falco.*`` was not kept.

The result of :func:`to_record` is ``(format, record)``: ``format`` names the staging
file (``audit``, ``falco``, ``raw`` for records the readers will recognise themselves,
``unmapped`` for documents no mapping fits; those are still ingested, and then
quarantined by the readers with a reason, so every document is accounted for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SHAPES = ("raw", "ecs")

#: Fields that name an entity, per shape; filters are pushed down as a ``should`` over them.
ENTITY_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw": {
        "namespace": ("objectRef.namespace", "output_fields.k8s.ns.name", "process_exec.process.pod.namespace",
                      "process_kprobe.process.pod.namespace", "flow.source.namespace",
                      "flow.destination.namespace", "involvedObject.namespace", "kubernetes.namespace_name"),
        "pod": ("objectRef.name", "output_fields.k8s.pod.name", "process_exec.process.pod.name",
                "process_kprobe.process.pod.name", "flow.source.pod_name", "flow.destination.pod_name",
                "involvedObject.name", "kubernetes.pod_name"),
        "user": ("user.username", "impersonatedUser.username", "output_fields.user.name", "output_fields.ka.user.name"),
        "ip": ("sourceIPs", "flow.IP.source", "flow.IP.destination", "output_fields.fd.cip", "output_fields.fd.sip"),
    },
    "ecs": {
        "namespace": ("kubernetes.audit.objectRef.namespace", "orchestrator.namespace", "kubernetes.namespace",
                      "falco.output_fields.k8s.ns.name"),
        "pod": ("kubernetes.audit.objectRef.name", "orchestrator.resource.name", "kubernetes.pod.name",
                "falco.output_fields.k8s.pod.name"),
        "user": ("kubernetes.audit.user.username", "kubernetes.audit.impersonatedUser.username", "user.name"),
        "ip": ("kubernetes.audit.sourceIPs", "source.ip", "client.ip", "destination.ip"),
    },
}

#: ``_source`` includes per shape: only what the mapping needs travels (the raw field is added).
SOURCE_INCLUDES: dict[str, tuple[str, ...]] = {
    "ecs": ("@timestamp", "kubernetes.audit", "falco", "Falco", "rule", "event", "message", "log.level",
            "orchestrator", "container", "process", "user", "host", "source", "destination"),
}


@dataclass(frozen=True)
class IndexSpec:
    """One index pattern and how to read its documents.

    Parameters
    ----------
    pattern
        Index name or pattern (``logs-kubernetes.audit_logs-*``).
    shape
        ``raw`` or ``ecs`` (see the module documentation).
    raw_field
        For ``raw``: the field that holds the original JSON (``message``, ``log``); ``None``
        tries ``message`` and ``log`` when they hold a JSON object, else takes ``_source``.
    time_field
        The document's time, used for the window, sorting and the histogram.
    entity_fields
        Override of :data:`ENTITY_FIELDS` for this index (``{"pod": ("kubernetes.pod_name",)}``).
    """

    pattern: str
    shape: str = "raw"
    raw_field: str | None = None
    time_field: str = "@timestamp"
    entity_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            from kubeforensics.errors import CollectorError

            raise CollectorError(f"unknown document shape {self.shape!r} for {self.pattern}",
                                 hint="use raw or ecs")

    def fields_for(self, entity: str) -> tuple[str, ...]:
        return tuple(self.entity_fields.get(entity) or ENTITY_FIELDS[self.shape].get(entity, ()))

    def source_filter(self) -> list[str] | bool:
        """The ``_source`` includes for this shape (``True``: the whole document is the record)."""
        if self.shape == "ecs":
            return list(SOURCE_INCLUDES["ecs"])
        if self.raw_field:
            return [self.raw_field, self.time_field]
        return True

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        """``PATTERN[:shape[:raw_field]]`` as given on the command line (``audit-*:raw:message``)."""
        parts = text.split(":")
        shape = parts[1] if len(parts) > 1 and parts[1] else "raw"
        raw = parts[2] if len(parts) > 2 and parts[2] else None
        return cls(parts[0], shape, raw)


def dig(obj: Mapping[str, Any], path: str) -> Any:
    """A value by dotted path, whether the document nests objects or keeps dotted keys."""
    if path in obj:
        return obj[path]
    head, _, rest = path.partition(".")
    while rest:
        node = obj.get(head)
        if isinstance(node, Mapping):
            found = dig(node, rest)
            if found is not None:
                return found
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return obj.get(head) if head != path else None


def expand_dots(obj: Any) -> Any:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` recursively (ES keeps dotted keys as sent)."""
    if isinstance(obj, list):
        return [expand_dots(v) for v in obj]
    if not isinstance(obj, Mapping):
        return obj
    out: dict[str, Any] = {}
    for k, v in obj.items():
        v = expand_dots(v)
        parts = k.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        last = parts[-1]
        if isinstance(node.get(last), dict) and isinstance(v, dict):
            node[last].update(v)
        else:
            node[last] = v
    return out


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects -> dotted keys (Falco ``output_fields`` are flat ``k8s.ns.name`` keys)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _json_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _raw(source: Mapping[str, Any], spec: IndexSpec) -> tuple[str, dict[str, Any]]:
    if spec.raw_field:
        rec = _json_object(dig(source, spec.raw_field))
        return ("raw", rec) if rec is not None else ("unmapped", dict(source))
    for key in ("message", "log"):
        rec = _json_object(source.get(key))
        if rec is not None and len(rec) > 1:
            return "raw", rec
    return "raw", dict(source)


_PRIORITY_BY_SEVERITY = {0: "Emergency", 1: "Alert", 2: "Critical", 3: "Error", 4: "Warning", 5: "Notice",
                         6: "Informational", 7: "Debug"}
_ECS_TO_FALCO_FIELD = {"container.id": "container.id", "container.image.name": "container.image.repository",
                       "orchestrator.namespace": "k8s.ns.name", "orchestrator.resource.name": "k8s.pod.name",
                       "process.command_line": "proc.cmdline", "process.name": "proc.name",
                       "process.parent.name": "proc.pname", "user.name": "user.name"}


def _falco(source: Mapping[str, Any]) -> dict[str, Any] | None:
    f = source.get("falco") or source.get("Falco")
    ts = source.get("@timestamp")
    if isinstance(f, Mapping):
        f = expand_dots(f)
        rec: dict[str, Any] = {"time": f.get("time") or ts, "rule": f.get("rule"), "priority": f.get("priority"),
                               "output": f.get("output") or source.get("message"), "source": f.get("source"),
                               "hostname": f.get("hostname"), "tags": f.get("tags") or [],
                               "output_fields": flatten(f.get("output_fields") or {})}
        return {k: v for k, v in rec.items() if v is not None}
    rule = dig(source, "rule.name")
    module = dig(source, "event.module") or dig(source, "event.dataset") or ""
    if rule and "falco" in str(module):
        sev = dig(source, "event.severity")
        prio = dig(source, "log.level") or (_PRIORITY_BY_SEVERITY.get(sev) if isinstance(sev, int) else None)
        of = {falco: dig(source, ecs) for ecs, falco in _ECS_TO_FALCO_FIELD.items() if dig(source, ecs) is not None}
        return {"time": ts, "rule": rule, "priority": prio or "Notice", "output": source.get("message") or rule,
                "source": "syscall", "output_fields": of}
    return None


def _audit(source: Mapping[str, Any]) -> dict[str, Any] | None:
    audit = dig(source, "kubernetes.audit")
    if not isinstance(audit, Mapping):
        return None
    rec = expand_dots(audit)
    rec.setdefault("kind", "Event")
    rec.setdefault("apiVersion", "audit.k8s.io/v1")
    ts = source.get("@timestamp")
    if ts and not rec.get("requestReceivedTimestamp") and not rec.get("stageTimestamp"):
        rec["stageTimestamp"] = ts
    return rec


def to_record(source: Mapping[str, Any], spec: IndexSpec) -> tuple[str, dict[str, Any]]:
    """One document's ``_source`` -> ``(format, record)`` in a shape the readers accept."""
    if spec.shape == "raw":
        return _raw(source, spec)
    rec = _audit(source)
    if rec is not None:
        return "audit", rec
    rec = _falco(source)
    if rec is not None:
        return "falco", rec
    return "unmapped", dict(source)
