"""Canonical tables: column names, Arrow types and ECS mapping.

Every reader produces exactly the columns declared here (missing values are
null), so that the case store, correlation, detections and widgets can rely on
one vocabulary.  Times are UTC ``timestamp[ns, tz=UTC]`` (pandas
``datetime64[ns, UTC]``); the display time zone is a setting, never a
conversion of stored data.

Each table starts with the same provenance columns (see :data:`PROVENANCE`):
``event_id`` is stable across re-ingests (sha256 prefix of the evidence file
plus the line number, plus ``:n`` for the n-th record of a JSON array or List
on that line) and leads back to the raw record.
"""

from __future__ import annotations

from kubeforensics.schema.tables import (
    ALERTS,
    AUDIT,
    AUDIT_REQUEST_KEY,
    FLOW_AUX,
    FLOWS,
    K8S_EVENTS,
    OBJECTS,
    PROCESSES,
    PROVENANCE,
    TABLES,
    TIMELINE,
    Column,
    TableSpec,
    audit_request_keys,
    empty_table,
    to_arrow,
)

__all__ = [
    "ALERTS",
    "AUDIT",
    "AUDIT_REQUEST_KEY",
    "FLOWS",
    "FLOW_AUX",
    "K8S_EVENTS",
    "OBJECTS",
    "PROCESSES",
    "PROVENANCE",
    "TABLES",
    "TIMELINE",
    "Column",
    "TableSpec",
    "audit_request_keys",
    "empty_table",
    "to_arrow",
]
