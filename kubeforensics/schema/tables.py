"""Declarations of every canonical table.

A column is declared as ``(name, type, ecs, description)``.  Types are short
names mapped to Arrow types by :data:`TYPES`; ``json`` is a string holding a
JSON document (already redacted).  ``ecs`` is the Elastic Common Schema field
the column corresponds to ("" when ECS has none); it is the documented mapping
used by the Elasticsearch collector and by exports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa

TS = pa.timestamp("ns", tz="UTC")
TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "json": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "ts": TS,
    "list<str>": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    ecs: str = ""
    description: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return TYPES[self.type]


@dataclass(frozen=True)
class TableSpec:
    """A canonical table: its name in the case store and its columns."""

    name: str
    columns: tuple[Column, ...]
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema (built once: the bulk readers ask for it on every batch)."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def ecs_mapping(self) -> dict[str, str]:
        return {c.name: c.ecs for c in self.columns if c.ecs}


def _cols(rows: Iterable[Sequence[str]]) -> tuple[Column, ...]:
    return tuple(Column(*r) for r in rows)


PROVENANCE: tuple[Column, ...] = _cols(
    [
        ("event_id", "str", "event.id", "stable id: <evidence sha256[:12]>:<line>[:<n>]"),
        ("time", "ts", "@timestamp", "when it happened (UTC)"),
        ("evidence", "str", "log.file.path", "evidence file name inside the case"),
        ("line", "int64", "log.offset", "1-based line number in the evidence file"),
    ]
)

AUDIT = TableSpec(
    "audit",
    PROVENANCE
    + _cols(
        [
            ("request_time", "ts", "event.start", "requestReceivedTimestamp (or timestamp)"),
            ("stage_time", "ts", "event.end", "stageTimestamp"),
            ("time_field", "str", "", "which field gave `time`"),
            ("audit_id", "str", "kubernetes.audit.auditID", ""),
            ("stage", "str", "kubernetes.audit.stage", ""),
            ("level", "str", "kubernetes.audit.level", ""),
            ("audit_version", "str", "", "audit.k8s.io/v1, v1beta1 or '' when absent"),
            ("wrapper", "str", "", "'' or aks, eks, gke: the cloud export the event came in"),
            ("verb", "str", "kubernetes.audit.verb", ""),
            ("user", "str", "user.name", ""),
            ("user_uid", "str", "user.id", ""),
            ("user_groups", "list<str>", "user.group.name", ""),
            ("impersonated_user", "str", "user.target.name", ""),
            ("source_ip", "str", "source.ip", "last of sourceIPs: what the API server saw"),
            ("source_ips", "list<str>", "", "all sourceIPs (earlier ones may be X-Forwarded-For)"),
            ("user_agent", "str", "user_agent.original", ""),
            ("resource", "str", "kubernetes.audit.objectRef.resource", ""),
            ("subresource", "str", "kubernetes.audit.objectRef.subresource", ""),
            ("namespace", "str", "kubernetes.audit.objectRef.namespace", ""),
            ("name", "str", "kubernetes.audit.objectRef.name", ""),
            ("api_group", "str", "kubernetes.audit.objectRef.apiGroup", ""),
            ("api_version", "str", "kubernetes.audit.objectRef.apiVersion", ""),
            ("object_uid", "str", "kubernetes.audit.objectRef.uid", ""),
            ("request_uri", "str", "url.original", ""),
            ("code", "int32", "http.response.status_code", ""),
            ("status_reason", "str", "", "responseStatus.reason"),
            ("status_message", "str", "", "responseStatus.message"),
            ("decision", "str", "", "authorization.k8s.io/decision"),
            ("authz_reason", "str", "", "authorization.k8s.io/reason: which binding allowed it"),
            ("sa_pod_name", "str", "", "user.extra authentication.kubernetes.io/pod-name"),
            ("sa_pod_uid", "str", "", "user.extra authentication.kubernetes.io/pod-uid"),
            ("sa_node_name", "str", "", "user.extra authentication.kubernetes.io/node-name"),
            ("sa_credential_id", "str", "", "user.extra authentication.kubernetes.io/credential-id"),
            ("exec_command", "str", "process.command_line", "command decoded from requestURI (exec/attach)"),
            ("exec_container", "str", "container.name", "container= query parameter"),
            ("exec_stdin", "bool", "", ""),
            ("exec_tty", "bool", "", ""),
            ("pod_privileged", "bool", "", "requestObject: any container privileged"),
            ("pod_host_pid", "bool", "", ""),
            ("pod_host_network", "bool", "", ""),
            ("pod_host_ipc", "bool", "", ""),
            ("pod_host_paths", "list<str>", "", "hostPath volume paths"),
            ("pod_capabilities", "list<str>", "", "added capabilities of any container"),
            ("pod_service_account", "str", "", ""),
            ("pod_images", "list<str>", "container.image.name", ""),
            ("pod_node_name", "str", "", "spec.nodeName"),
            ("annotations", "json", "", "all annotations"),
            ("user_extra", "json", "", "user.extra (redacted)"),
            ("request_object", "json", "", "requestObject (redacted; Secret data removed)"),
            ("response_object", "json", "", "responseObject (redacted; Secret data removed)"),
        ]
    ),
    "Kubernetes API-server audit events, one row per record (stages are merged at query time).",
)

PROCESSES = TableSpec(
    "processes",
    PROVENANCE
    + _cols(
        [
            ("time_source", "str", "", "'time', 'process.start_time' or 'missing'"),
            ("event_type", "str", "event.action", "exec, exit, kprobe, tracepoint, lsm, uprobe, ... or the unknown key"),
            ("node", "str", "host.name", ""),
            ("cluster", "str", "orchestrator.cluster.name", ""),
            ("exec_id", "str", "process.entity_id", ""),
            ("parent_exec_id", "str", "process.parent.entity_id", ""),
            ("pid", "int64", "process.pid", ""),
            ("tid", "int64", "process.thread.id", ""),
            ("uid", "int64", "user.id", ""),
            ("auid", "int64", "", ""),
            ("binary", "str", "process.executable", ""),
            ("args", "str", "process.args", "arguments as one string (redacted)"),
            ("cwd", "str", "process.working_directory", ""),
            ("flags", "str", "", ""),
            ("start_time", "ts", "process.start", ""),
            ("namespace", "str", "orchestrator.namespace", ""),
            ("pod", "str", "orchestrator.resource.name", ""),
            ("pod_uid", "str", "", ""),
            ("container_id", "str", "container.id", "64-hex when known, else the prefix we have"),
            ("container_name", "str", "container.name", ""),
            ("image", "str", "container.image.name", ""),
            ("image_id", "str", "container.image.hash.all", ""),
            ("workload", "str", "", ""),
            ("workload_kind", "str", "", ""),
            ("pod_labels", "json", "", ""),
            ("parent_binary", "str", "process.parent.executable", ""),
            ("parent_args", "str", "process.parent.args", ""),
            ("parent_pid", "int64", "process.parent.pid", ""),
            ("ancestors", "list<str>", "", "exec_ids of the ancestors, nearest first"),
            ("caps_effective", "list<str>", "", ""),
            ("caps_permitted", "list<str>", "", ""),
            ("host_namespaces", "list<str>", "", "namespaces (mnt, pid, net, ...) whose is_host is true"),
            ("function_name", "str", "", "kprobe/tracepoint/lsm/uprobe function"),
            ("policy_name", "str", "rule.name", ""),
            ("action", "str", "", "kprobe action"),
            ("return_value", "int64", "", ""),
            ("exit_status", "int64", "process.exit_code", ""),
            ("exit_signal", "str", "", ""),
            ("sock_family", "str", "", ""),
            ("sock_protocol", "str", "network.transport", ""),
            ("saddr", "str", "source.ip", ""),
            ("daddr", "str", "destination.ip", ""),
            ("sport", "int32", "source.port", ""),
            ("dport", "int32", "destination.port", ""),
            ("file_path", "str", "file.path", "first file_arg/path_arg of the event"),
            ("decoded_args", "json", "", "kprobe/tracepoint args, decoded, as a JSON list"),
            ("raw", "json", "", "the whole event, kept for unknown event keys only"),
        ]
    ),
    "Tetragon events of every type, one row per event.",
)

FLOWS = TableSpec(
    "flows",
    PROVENANCE
    + _cols(
        [
            ("uuid", "str", "", ""),
            ("node", "str", "host.name", ""),
            ("verdict", "str", "event.outcome", ""),
            ("drop_reason", "str", "", "drop_reason_desc"),
            ("flow_type", "str", "", "L3_L4, L7, SOCK"),
            ("traffic_direction", "str", "network.direction", ""),
            ("is_reply", "bool", "", "is_reply, or the older reply; null when unknown"),
            ("src_ip", "str", "source.ip", ""),
            ("dst_ip", "str", "destination.ip", ""),
            ("ip_version", "str", "network.type", ""),
            ("protocol", "str", "network.transport", "TCP, UDP, ICMPv4, ICMPv6, SCTP"),
            ("src_port", "int32", "source.port", ""),
            ("dst_port", "int32", "destination.port", ""),
            ("tcp_flags", "str", "", "comma-joined set flags"),
            ("src_namespace", "str", "", ""),
            ("src_pod", "str", "", ""),
            ("src_labels", "list<str>", "", ""),
            ("src_identity", "int64", "", ""),
            ("src_workload", "str", "", ""),
            ("dst_namespace", "str", "", ""),
            ("dst_pod", "str", "", ""),
            ("dst_labels", "list<str>", "", ""),
            ("dst_identity", "int64", "", ""),
            ("dst_workload", "str", "", ""),
            ("dst_names", "list<str>", "destination.domain", "destination_names"),
            ("src_service", "str", "", ""),
            ("dst_service", "str", "", ""),
            ("l7_type", "str", "", "REQUEST, RESPONSE, SAMPLE"),
            ("dns_query", "str", "dns.question.name", ""),
            ("dns_ips", "list<str>", "dns.resolved_ip", ""),
            ("dns_rcode", "int32", "dns.response_code", ""),
            ("dns_qtypes", "list<str>", "dns.question.type", ""),
            ("http_method", "str", "http.request.method", ""),
            ("http_url", "str", "url.full", "redacted"),
            ("http_code", "int32", "http.response.status_code", ""),
            ("http_protocol", "str", "", ""),
            ("http_headers", "json", "", "redacted headers"),
            ("summary", "str", "message", "Summary (deprecated upstream)"),
        ]
    ),
    "Hubble flows, one row per flow.",
)

FLOW_AUX = TableSpec(
    "flow_aux",
    PROVENANCE
    + _cols(
        [
            ("kind", "str", "", "node_status, lost_events, agent_event, debug_event, ..."),
            ("node", "str", "host.name", ""),
            ("raw", "json", "", "the envelope's payload"),
        ]
    ),
    "Hubble envelopes that are not flows, counted and kept aside.",
)

ALERTS = TableSpec(
    "alerts",
    PROVENANCE
    + _cols(
        [
            ("rule", "str", "rule.name", ""),
            ("priority", "str", "event.severity_name", "Emergency ... Debug"),
            ("priority_rank", "int32", "event.severity", "0 Emergency ... 7 Debug"),
            ("falco_source", "str", "", "syscall, k8s_audit, plugin name"),
            ("hostname", "str", "host.name", ""),
            ("output", "str", "message", "rendered message (redacted)"),
            ("tags", "list<str>", "tags", ""),
            ("uuid", "str", "", "falcosidekick uuid"),
            ("container_id", "str", "container.id", ""),
            ("image", "str", "container.image.name", ""),
            ("namespace", "str", "orchestrator.namespace", ""),
            ("pod", "str", "orchestrator.resource.name", ""),
            ("proc_name", "str", "process.name", ""),
            ("proc_cmdline", "str", "process.command_line", ""),
            ("proc_pname", "str", "process.parent.name", ""),
            ("proc_exepath", "str", "process.executable", ""),
            ("proc_pid", "int64", "process.pid", ""),
            ("user_name", "str", "user.name", ""),
            ("fd_name", "str", "file.path", ""),
            ("ka_user", "str", "", "k8s_audit: ka.user.name"),
            ("ka_verb", "str", "", ""),
            ("ka_resource", "str", "", ""),
            ("ka_namespace", "str", "", ""),
            ("ka_name", "str", "", ""),
            ("ka_uri", "str", "", ""),
            ("ka_response_code", "str", "", ""),
            ("output_fields", "json", "", "all output_fields (redacted)"),
        ]
    ),
    "Falco alerts, one row per alert.",
)

K8S_EVENTS = TableSpec(
    "k8s_events",
    PROVENANCE
    + _cols(
        [
            ("time_field", "str", "", "which field gave `time`"),
            ("first_time", "ts", "event.start", ""),
            ("last_time", "ts", "event.end", ""),
            ("count", "int64", "", "occurrences this Event stands for"),
            ("api", "str", "", "v1 or events.k8s.io/v1"),
            ("type", "str", "", "Normal, Warning"),
            ("reason", "str", "event.reason", ""),
            ("message", "str", "message", ""),
            ("kind", "str", "", "involvedObject/regarding kind"),
            ("namespace", "str", "orchestrator.namespace", ""),
            ("name", "str", "orchestrator.resource.name", ""),
            ("object_uid", "str", "", ""),
            ("field_path", "str", "", ""),
            ("component", "str", "", "source.component or reportingController"),
            ("host", "str", "host.name", "source.host"),
            ("reporting_instance", "str", "", ""),
            ("action", "str", "", ""),
            ("event_name", "str", "", "metadata.name of the Event"),
            ("event_uid", "str", "", "metadata.uid of the Event"),
        ]
    ),
    "Kubernetes Events (core/v1 and events.k8s.io/v1).",
)

OBJECTS = TableSpec(
    "objects",
    PROVENANCE
    + _cols(
        [
            ("kind", "str", "orchestrator.resource.type", ""),
            ("api_version", "str", "", ""),
            ("namespace", "str", "orchestrator.namespace", ""),
            ("name", "str", "orchestrator.resource.name", ""),
            ("uid", "str", "", ""),
            ("created", "ts", "", "metadata.creationTimestamp"),
            ("deleted", "ts", "", "metadata.deletionTimestamp"),
            ("labels", "json", "", ""),
            ("owner_kind", "str", "", "first ownerReference kind"),
            ("owner_name", "str", "", ""),
            ("node", "str", "", "spec.nodeName (pods)"),
            ("service_account", "str", "", "spec.serviceAccountName (pods, workloads)"),
            ("pod_ip", "str", "", ""),
            ("pod_ips", "list<str>", "", ""),
            ("host_ip", "str", "", ""),
            ("phase", "str", "", ""),
            ("host_pid", "bool", "", ""),
            ("host_network", "bool", "", ""),
            ("host_ipc", "bool", "", ""),
            ("privileged", "bool", "", "any container privileged"),
            ("host_paths", "list<str>", "", ""),
            ("capabilities", "list<str>", "", "added capabilities"),
            ("images", "list<str>", "", ""),
            ("container_names", "list<str>", "", ""),
            ("container_ids", "list<str>", "", "64-hex ids without the runtime scheme"),
            ("rules", "json", "", "Role/ClusterRole rules"),
            ("subjects", "json", "", "RoleBinding/ClusterRoleBinding subjects"),
            ("role_ref", "str", "", "binding roleRef as Kind/name"),
            ("spec", "json", "", "the rest of the object (redacted)"),
        ]
    ),
    "Inventory of Kubernetes objects from dumps or the live API.",
)

TIMELINE = TableSpec(
    "timeline",
    (
        _cols(
            [
                ("time", "ts", "@timestamp", ""),
                ("source", "str", "event.module", "audit, tetragon, hubble, falco, k8s-events"),
                ("action", "str", "event.action", ""),
                ("actor", "str", "user.name", ""),
                ("namespace", "str", "orchestrator.namespace", ""),
                ("pod", "str", "orchestrator.resource.name", ""),
                ("container_id", "str", "container.id", ""),
                ("node", "str", "host.name", ""),
                ("process", "str", "process.executable", ""),
                ("args", "str", "process.args", ""),
                ("src_ip", "str", "source.ip", ""),
                ("dst_ip", "str", "destination.ip", ""),
                ("dst_port", "int32", "destination.port", ""),
                ("verdict", "str", "event.outcome", ""),
                ("severity", "str", "event.severity_name", ""),
                ("techniques", "list<str>", "threat.technique.id", ""),
                ("summary", "str", "message", ""),
                ("event_id", "str", "event.id", ""),
            ]
        )
    ),
    "The unified timeline: one row per event across all sources.",
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (AUDIT, PROCESSES, FLOWS, FLOW_AUX, ALERTS, K8S_EVENTS, OBJECTS)
}


def empty_table(spec: TableSpec) -> pa.Table:
    return spec.arrow_schema.empty_table()


def to_arrow(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Build a table of ``spec`` from row dicts (missing keys are null).

    Values must already have the declared Python types (``datetime``/``int``
    nanoseconds for ``ts``).  Raises ``pa.ArrowInvalid``/``TypeError`` on a
    wrong type: readers coerce per record first so this does not happen.
    """
    if not rows:
        return empty_table(spec)
    return pa.Table.from_pylist(list(rows), schema=spec.arrow_schema)


#: What identifies one API request in the audit table: the stages of a request share its audit id, user, verb
#: and request URI.  Records that share only the audit id (two clusters' logs, a forged line reusing an id)
#: are different requests, and stay two rows when stages are merged.
AUDIT_REQUEST_KEY = ("audit_id", "user", "verb", "request_uri")


def audit_request_keys(audit: Any) -> Any:
    """Per row of an audit DataFrame, its request key (:data:`AUDIT_REQUEST_KEY` joined by U+001F), or ``""``
    where ``audit_id`` is null or empty (such a row is a request of its own)."""
    ids = audit["audit_id"].astype(object)
    has = ids.notna() & (ids != "")
    key = ids.where(has, "").astype(str)
    for col in AUDIT_REQUEST_KEY[1:]:
        if col in audit:  # a hand-made frame may lack one: it then does not tell requests apart
            key = key + "\x1f" + audit[col].astype(object).where(audit[col].notna(), "").astype(str)
    return key.where(has, "")
