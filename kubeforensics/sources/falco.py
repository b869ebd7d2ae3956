"""Falco alerts (JSON output, one object per line) and falcosidekick payloads.

A Falco alert looks like::

    {"time": "2016-08-04T16:17:57.881781397Z", "rule": "open_from_cat",
     "priority": "Warning", "source": "syscall", "hostname": "node-1",
     "output": "... Warning An open was seen (command=cat /dev/null)",
     "tags": ["filesystem"], "output_fields": {"proc.cmdline": "cat /dev/null", ...}}

falcosidekick forwards the same shape with an added ``uuid``.  ``time`` is
RFC 3339 with nanoseconds; when it is absent the reader falls back to
``output_fields`` ``evt.time`` (integer nanoseconds), ``evt.time.iso8601`` or
``jevt.time.iso8601`` (older ``k8s_audit`` alerts).  ``output_fields`` values
may be null.  Alerts of the ``k8s_audit`` source carry ``ka.*`` fields, kept in
the ``ka_*`` columns; when their target is a pod, ``namespace``/``pod`` are
taken from ``ka.target.namespace``/``ka.target.name`` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kubeforensics import redact
from kubeforensics.errors import RecordError
from kubeforensics.schema import ALERTS, TableSpec
from kubeforensics.sources import fields as f

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

#: Falco priorities, most severe first; the index is ``priority_rank`` (syslog severity).
PRIORITIES: tuple[str, ...] = (
    "Emergency",
    "Alert",
    "Critical",
    "Error",
    "Warning",
    "Notice",
    "Informational",
    "Debug",
)
_RANK: dict[str, int] = {p.lower(): n for n, p in enumerate(PRIORITIES)}
_RANK["info"] = _RANK["informational"]
_RANK["warn"] = _RANK["warning"]
_RANK["err"] = _RANK["error"]
_RANK["crit"] = _RANK["critical"]
_RANK["emerg"] = _RANK["emergency"]

#: output_fields keys that may give the time when ``time`` is absent, in order of preference.
_TIME_FALLBACKS: tuple[str, ...] = ("evt.time", "evt.time.iso8601", "jevt.time.iso8601")


def priority(value: Any) -> tuple[str, int]:
    """Canonical Falco priority name and its rank (0 Emergency ... 7 Debug).

    Raises
    ------
    RecordError
        When the priority is missing or not one Falco knows.
    """
    name = f.text(value, "priority")
    if name is None or not name.strip():
        raise RecordError("'priority' is missing")
    rank = _RANK.get(name.strip().lower())
    if rank is None:
        raise RecordError(f"'priority' is not a Falco priority: {name[:40]!r} (expected one of {', '.join(PRIORITIES)})")
    return PRIORITIES[rank], rank


def _time(obj: Mapping[str, Any], of: Mapping[str, Any]) -> int:
    t = f.ts(obj.get("time"), "time")
    if t is not None:
        return t
    for key in _TIME_FALLBACKS:
        t = f.ts(of.get(key), f"output_fields.{key}")
        if t is not None:
            return t
    raise RecordError("'time' is missing (and output_fields has no evt.time)")


def _image(of: Mapping[str, Any]) -> str | None:
    repo = f.text(of.get("container.image.repository"), "output_fields.container.image.repository")
    tag = f.text(of.get("container.image.tag"), "output_fields.container.image.tag")
    if repo:
        return f"{repo}:{tag}" if tag else repo
    return f.text(of.get("container.image"), "output_fields.container.image")


class FalcoReader:
    """Falco JSON alerts -> the ``alerts`` table."""

    name: ClassVar[str] = "falco"
    tables: ClassVar[tuple[TableSpec, ...]] = (ALERTS,)

    def sniff(self, obj: Mapping[str, Any]) -> bool:
        """An alert has ``rule`` and ``priority`` and ``output`` or ``output_fields``."""
        return "rule" in obj and "priority" in obj and ("output" in obj or "output_fields" in obj)

    def bulk(self, path: Path, evidence: str, evidence_id: str) -> BulkResult | None:
        """Vectorised path for whole JSON-lines alert files (see :mod:`kubeforensics.sources.falco_fast`)."""
        from kubeforensics.sources import falco_fast

        return falco_fast.bulk(path, evidence, evidence_id)

    def extract(self, obj: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """One ``alerts`` row per alert; raises RecordError for an unusable alert."""
        of = f.obj(obj.get("output_fields"), "output_fields")
        rule = f.text(obj.get("rule"), "rule")
        if not rule:
            raise RecordError("'rule' is missing")
        prio, rank = priority(obj.get("priority"))

        def o(key: str) -> str | None:
            return f.text(of.get(key), f"output_fields.{key}")

        source = f.text(obj.get("source"), "source")
        ka_resource = o("ka.target.resource")
        namespace = o("k8s.ns.name")
        pod = o("k8s.pod.name")
        if ka_resource in ("pods", "pod"):
            namespace = namespace or o("ka.target.namespace")
            pod = pod or o("ka.target.name")
        row: dict[str, Any] = {
            "time": _time(obj, of),
            "rule": rule,
            "priority": prio,
            "priority_rank": rank,
            "falco_source": source,
            "hostname": f.text(obj.get("hostname"), "hostname"),
            "output": redact.text(f.text(obj.get("output"), "output")),
            "tags": f.strings(obj.get("tags"), "tags"),
            "uuid": f.text(obj.get("uuid"), "uuid"),
            "container_id": f.container_hex(o("container.id")),
            "image": _image(of),
            "namespace": namespace,
            "pod": pod,
            "proc_name": o("proc.name"),
            "proc_cmdline": redact.text(o("proc.cmdline")),
            "proc_pname": o("proc.pname"),
            "proc_exepath": o("proc.exepath"),
            "proc_pid": f.integer(of.get("proc.pid"), "output_fields.proc.pid"),
            "user_name": o("user.name"),
            "fd_name": redact.text(o("fd.name")),
            "ka_user": o("ka.user.name"),
            "ka_verb": o("ka.verb"),
            "ka_resource": ka_resource,
            "ka_namespace": o("ka.target.namespace"),
            "ka_name": o("ka.target.name"),
            "ka_uri": redact.text(o("ka.uri")),
            "ka_response_code": o("ka.response.code"),
            "output_fields": _fields_json(of),
        }
        yield ALERTS.name, row


def _fields_json(of: Mapping[str, Any]) -> str | None:
    if not of:
        return None
    try:
        redacted = redact.k8s_object(dict(of))
    except RecursionError as exc:
        raise RecordError("'output_fields' is nested too deeply") from exc
    return f.as_json(redacted)
