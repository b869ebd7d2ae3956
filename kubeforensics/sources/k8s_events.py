"""Kubernetes Events: core/v1 ``Event`` and events.k8s.io/v1 ``Event``.

Both APIs describe the same objects with different field names:

==========================  ===============================  ==============================
column                      core/v1                          events.k8s.io/v1
==========================  ===============================  ==============================
first_time                  firstTimestamp, else eventTime   deprecatedFirstTimestamp, else eventTime
last_time                   lastTimestamp,                   series.lastObservedTime,
                            else series.lastObservedTime     else deprecatedLastTimestamp
count                       count, else series.count         series.count, else deprecatedCount
message                     message                          note
kind/namespace/name/...     involvedObject                   regarding
component / host            source.component / source.host   reportingController / deprecatedSource.host
                            (else reportingComponent)
==========================  ===============================  ==============================

Which time goes into ``time``
-----------------------------
One Event object can stand for many occurrences (``count``, ``series``) between
its first and last observation.  ``time`` is the **first** occurrence, because

* a timeline is read as cause and effect: with the last occurrence, a
  ``Pulling`` Event repeated five times would sort after the ``Pulled`` and
  ``Failed`` it caused, and a ``BackOff`` repeated for half an hour would sit
  at the end of the story instead of where the crash loop began;
* the first occurrence never changes while the Event is updated, so the same
  Event dumped twice (with a higher ``count``) keeps the same ``time`` and can
  be de-duplicated on ``event_uid`` + ``time``;
* it is what events.k8s.io/v1 calls ``eventTime`` ("the time when this Event
  was first observed").

The span stays available: ``first_time``, ``last_time`` and ``count`` are kept,
so a time-window filter should test the overlap of ``[first_time, last_time]``
with the window rather than ``time`` alone.

Order of preference for ``time`` (named in ``time_field``): ``eventTime``
(microseconds), ``firstTimestamp`` / ``deprecatedFirstTimestamp`` (whole
seconds), ``lastTimestamp`` / ``series.lastObservedTime`` /
``deprecatedLastTimestamp``, ``metadata.creationTimestamp``.  An Event with
none of them is quarantined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from kubeforensics import redact
from kubeforensics.errors import RecordError
from kubeforensics.schema import K8S_EVENTS, TableSpec
from kubeforensics.sources import fields as f

#: Keys only API-server audit events have (they are also ``kind: Event``).
_AUDIT_KEYS = ("auditID", "requestURI", "stage", "stageTimestamp", "requestReceivedTimestamp")
_CORE_API = ("v1", None)
_EVENTS_API_PREFIX = "events.k8s.io/"


def _is_audit(obj: Mapping[str, Any]) -> bool:
    api = obj.get("apiVersion")
    return any(k in obj for k in _AUDIT_KEYS) or (isinstance(api, str) and api.startswith("audit.k8s.io/"))


def _first(*candidates: tuple[str, int | None]) -> tuple[str, int] | None:
    for name, value in candidates:
        if value is not None:
            return name, value
    return None


class K8sEventsReader:
    """Kubernetes Events (core/v1 and events.k8s.io/v1) -> the ``k8s_events`` table."""

    name: ClassVar[str] = "k8s-events"
    tables: ClassVar[tuple[TableSpec, ...]] = (K8S_EVENTS,)

    def sniff(self, obj: Mapping[str, Any]) -> bool:
        """``kind: Event`` of core/v1 or events.k8s.io, never an API-server audit event."""
        if obj.get("kind") != "Event" or _is_audit(obj):
            return False
        api = obj.get("apiVersion")
        if isinstance(api, str) and api.startswith(_EVENTS_API_PREFIX):
            return True
        return api in _CORE_API and any(k in obj for k in ("involvedObject", "reason", "regarding"))

    def extract(self, obj: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """One ``k8s_events`` row per Event; raises RecordError when no time is usable."""
        if _is_audit(obj):
            raise RecordError("this is an API-server audit event, not a Kubernetes Event (read it as 'audit')")
        api = f.text(obj.get("apiVersion"), "apiVersion")
        new_api = bool(api and api.startswith(_EVENTS_API_PREFIX))
        meta = f.obj(obj.get("metadata"), "metadata")
        series = f.obj(obj.get("series"), "series")

        event_time = f.ts(obj.get("eventTime"), "eventTime")
        series_last = f.ts(series.get("lastObservedTime"), "series.lastObservedTime")
        series_count = f.integer(series.get("count"), "series.count")
        created = f.ts(meta.get("creationTimestamp"), "metadata.creationTimestamp")

        if new_api:
            first_name = "deprecatedFirstTimestamp"
            last_name = "deprecatedLastTimestamp"
            first_ts = f.ts(obj.get(first_name), first_name)
            last_ts = f.ts(obj.get(last_name), last_name)
            count = series_count if series_count is not None else f.integer(obj.get("deprecatedCount"), "deprecatedCount")
            target = f.obj(obj.get("regarding"), "regarding")
            message = f.text(obj.get("note"), "note")
            source = f.obj(obj.get("deprecatedSource"), "deprecatedSource")
            component = f.text(obj.get("reportingController"), "reportingController") or f.text(
                source.get("component"), "deprecatedSource.component"
            )
            instance = f.text(obj.get("reportingInstance"), "reportingInstance")
            last_candidates = (("series.lastObservedTime", series_last), (last_name, last_ts))
        else:
            first_name, last_name = "firstTimestamp", "lastTimestamp"
            first_ts = f.ts(obj.get(first_name), first_name)
            last_ts = f.ts(obj.get(last_name), last_name)
            count = f.integer(obj.get("count"), "count")
            if count is None:
                count = series_count
            target = f.obj(obj.get("involvedObject"), "involvedObject")
            message = f.text(obj.get("message"), "message")
            source = f.obj(obj.get("source"), "source")
            component = f.text(source.get("component"), "source.component") or f.text(
                obj.get("reportingComponent"), "reportingComponent"
            )
            instance = f.text(obj.get("reportingInstance"), "reportingInstance")
            last_candidates = ((last_name, last_ts), ("series.lastObservedTime", series_last))

        best = _first(
            ("eventTime", event_time),
            (first_name, first_ts),
            *last_candidates,
            ("metadata.creationTimestamp", created),
        )
        if best is None:
            raise RecordError(
                "no usable time: eventTime, firstTimestamp, lastTimestamp and metadata.creationTimestamp are all missing"
            )
        time_field, time = best
        first = _first(("eventTime", event_time), (first_name, first_ts))
        last = _first(*last_candidates)
        first_time = first[1] if first else None
        last_time = last[1] if last else first_time
        if count is None:
            count = 1  # an Event without count or series stands for one occurrence
        tk = "regarding" if new_api else "involvedObject"
        host_field = "deprecatedSource.host" if new_api else "source.host"

        row: dict[str, Any] = {
            "time": time,
            "time_field": time_field,
            "first_time": first_time,
            "last_time": last_time,
            "count": count,
            "api": api or "v1",
            "type": f.text(obj.get("type"), "type"),
            "reason": f.text(obj.get("reason"), "reason"),
            "message": redact.text(message),
            "kind": f.text(target.get("kind"), f"{tk}.kind"),
            "namespace": f.text(target.get("namespace"), f"{tk}.namespace")
            or f.text(meta.get("namespace"), "metadata.namespace"),
            "name": f.text(target.get("name"), f"{tk}.name"),
            "object_uid": f.text(target.get("uid"), f"{tk}.uid"),
            "field_path": f.text(target.get("fieldPath"), f"{tk}.fieldPath"),
            "component": component,
            "host": f.text(source.get("host"), host_field),
            "reporting_instance": instance,
            "action": f.text(obj.get("action"), "action"),
            "event_name": f.text(meta.get("name"), "metadata.name"),
            "event_uid": f.text(meta.get("uid"), "metadata.uid"),
        }
        yield K8S_EVENTS.name, row
