"""Hubble flows (``hubble observe -o json|jsonpb``, the Hubble exporter file) -> ``flows`` and ``flow_aux``.

Each line is an envelope ``{"flow": {...}, "node_name": ..., "time": ...}`` (hubble CLI
0.11 and later) or, from older CLIs, the bare flow object.  Envelopes that carry
something else (``node_status``, ``lost_events``, ``agent_event``, ``debug_event``, or
any other single payload key) become one :data:`~kubeforensics.schema.FLOW_AUX` row
(kind, node, time, redacted payload), so they are counted and never dropped.

Flow mapping notes: ``is_reply`` falls back to the older ``reply`` and stays null when
both are absent (unknown, not "no"); TCP flags are joined with ``,`` in the order of
the ``TCPFlags`` message (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS); HTTP URLs and
``Summary`` go through :func:`kubeforensics.redact.text`, HTTP headers through
:func:`kubeforensics.redact.headers`; a service is ``namespace/name`` (``name`` when
it has no namespace); an endpoint's workload is its first ``workloads[].name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kubeforensics import redact
from kubeforensics.errors import RecordError
from kubeforensics.schema import FLOW_AUX, FLOWS, TableSpec
from kubeforensics.sources.fields import as_json, boolean, integer, obj, strings, text, ts

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

#: Non-flow payloads a ``GetFlowsResponse`` envelope can carry.
AUX_KEYS = ("node_status", "lost_events", "agent_event", "debug_event")
_ENVELOPE_KEYS = frozenset({"node_name", "time"})
#: Keys by which a bare (pre-envelope) flow object is recognised when reading.
_BARE_FLOW_KEYS = ("verdict", "IP", "l4", "source", "destination", "Type")
TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
_PORTED = ("TCP", "UDP", "SCTP")


def _obj(value: Any, field: str) -> Mapping[str, Any]:
    """:func:`fields.obj` with a fast path for plain dicts (the common case, millions of times)."""
    return value if value.__class__ is dict else obj(value, field)


class HubbleReader:
    """Reader for Hubble flow exports (see the module docstring for the mapping)."""

    name: ClassVar[str] = "hubble"
    tables: ClassVar[tuple[TableSpec, ...]] = (FLOWS, FLOW_AUX)

    def sniff(self, record: Mapping[str, Any]) -> bool:
        """True for a flow envelope, a known non-flow envelope, or a bare flow object.

        Parameters
        ----------
        record
            One JSON object from the evidence.
        """
        if isinstance(record.get("flow"), dict):
            return True
        for k in AUX_KEYS:
            if isinstance(record.get(k), dict):
                return True
        return "verdict" in record and ("IP" in record or "l4" in record or "source" in record)

    def extract(self, record: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """One ``flows`` row for a flow, or one ``flow_aux`` row for any other envelope.

        Parameters
        ----------
        record
            One JSON object: an envelope or a bare flow.

        Raises
        ------
        RecordError
            A field of the wrong type, no usable time, or an object that is no Hubble record.
        """
        flow = record.get("flow")
        if flow is not None:
            return (("flows", _flow(_obj(flow, "flow"), record)),)
        if any(k in record for k in _BARE_FLOW_KEYS):
            return (("flows", _flow(record, record)),)
        payload_keys = [k for k in record if k not in _ENVELOPE_KEYS]
        if len(payload_keys) != 1:
            raise RecordError(
                "not a Hubble record: expected a 'flow' envelope, a bare flow or one payload key "
                f"beside node_name/time, found keys {sorted(map(str, record))[:10]}"
            )
        return (("flow_aux", _aux(payload_keys[0], record)),)

    def bulk(self, path: Path, evidence: str, evidence_id: str) -> BulkResult | None:
        """Vectorised path for whole JSON-lines files (see :mod:`kubeforensics.sources.hubble_fast`)."""
        from kubeforensics.sources import hubble_fast

        return hubble_fast.bulk(path, evidence, evidence_id)


def _aux(kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
    payload = record[kind]
    inner = payload if isinstance(payload, Mapping) else {}
    t = inner.get("time")
    if t is None or t == "":
        t = record.get("time")
    if t is None or t == "":
        raise RecordError(f"'{kind}' envelope has no 'time' (neither in the payload nor in the envelope)")
    node = record.get("node_name")
    if node is None:
        node = inner.get("node_name")
    return {
        "time": ts(t, f"{kind}.time"),
        "kind": kind,
        "node": text(node, "node_name"),
        "raw": as_json(redact.k8s_object(payload)),
    }


def _endpoint(e: Any, side: str, row: dict[str, Any], p: str) -> None:
    """Fill ``<p>_namespace``, ``_pod``, ``_labels``, ``_identity``, ``_workload`` from a flow endpoint."""
    if e is None:
        return
    e = _obj(e, side)
    row[p + "_namespace"] = text(e.get("namespace"), side + ".namespace") or None
    row[p + "_pod"] = text(e.get("pod_name"), side + ".pod_name") or None
    row[p + "_labels"] = strings(e.get("labels"), side + ".labels")
    row[p + "_identity"] = integer(e.get("identity"), side + ".identity")
    workloads = e.get("workloads")
    if workloads:
        if not isinstance(workloads, list):
            raise RecordError(f"'{side}.workloads' is {type(workloads).__name__}, not a list")
        row[p + "_workload"] = text(
            _obj(workloads[0], side + ".workloads[0]").get("name"), side + ".workloads[0].name"
        )


def _service(s: Any, field: str) -> str | None:
    if s is None:
        return None
    s = _obj(s, field)
    name = text(s.get("name"), field + ".name")
    ns = text(s.get("namespace"), field + ".namespace")
    if name and ns:
        return f"{ns}/{name}"
    return name or None


def _flow(f: Mapping[str, Any], envelope: Mapping[str, Any]) -> dict[str, Any]:
    get = f.get
    t = get("time")
    if t is None or t == "":
        t = envelope.get("time")
        if t is None or t == "":
            raise RecordError("flow has no 'time' (neither flow.time nor the envelope's time)")
    node = get("node_name")
    if node is None:
        node = envelope.get("node_name")
    reply = get("is_reply")
    if reply is None:
        reply = get("reply")
    drop = get("drop_reason_desc")
    if drop is None and get("drop_reason"):
        drop = get("drop_reason")
    row: dict[str, Any] = {
        "time": ts(t, "flow.time"),
        "uuid": text(get("uuid"), "flow.uuid"),
        "node": text(node, "flow.node_name"),
        "verdict": text(get("verdict"), "flow.verdict"),
        "drop_reason": text(drop, "flow.drop_reason_desc"),
        "flow_type": text(get("Type"), "flow.Type"),
        "traffic_direction": text(get("traffic_direction"), "flow.traffic_direction"),
        "is_reply": boolean(reply, "flow.is_reply"),
        "src_service": _service(get("source_service"), "flow.source_service"),
        "dst_service": _service(get("destination_service"), "flow.destination_service"),
        "dst_names": strings(get("destination_names"), "flow.destination_names"),
        "summary": redact.text(text(get("Summary"), "flow.Summary")),
    }
    ip = get("IP")
    if ip is not None:
        ip = _obj(ip, "flow.IP")
        row["src_ip"] = text(ip.get("source"), "flow.IP.source")
        row["dst_ip"] = text(ip.get("destination"), "flow.IP.destination")
        row["ip_version"] = text(ip.get("ipVersion"), "flow.IP.ipVersion")
    l4 = get("l4")
    if l4:
        for proto, v in _obj(l4, "flow.l4").items():
            if v is None:
                continue
            layer = _obj(v, "flow.l4." + str(proto))
            row["protocol"] = proto
            if proto in _PORTED:
                row["src_port"] = integer(layer.get("source_port"), "flow.l4.source_port", bits=32)
                row["dst_port"] = integer(layer.get("destination_port"), "flow.l4.destination_port", bits=32)
                flags = layer.get("flags")
                if flags:
                    flags = _obj(flags, "flow.l4.TCP.flags")
                    row["tcp_flags"] = ",".join(
                        [k for k in TCP_FLAGS if flags.get(k) is True]
                        + sorted(k for k, on in flags.items() if on is True and k not in TCP_FLAGS)
                    )
            break
    _endpoint(get("source"), "flow.source", row, "src")
    _endpoint(get("destination"), "flow.destination", row, "dst")
    l7 = get("l7")
    if l7:
        _l7(_obj(l7, "flow.l7"), row)
    return row


def _l7(l7: Mapping[str, Any], row: dict[str, Any]) -> None:
    row["l7_type"] = text(l7.get("type"), "flow.l7.type")
    dns = l7.get("dns")
    if dns is not None:
        dns = _obj(dns, "flow.l7.dns")
        row["dns_query"] = text(dns.get("query"), "flow.l7.dns.query")
        row["dns_ips"] = strings(dns.get("ips"), "flow.l7.dns.ips")
        row["dns_rcode"] = integer(dns.get("rcode"), "flow.l7.dns.rcode", bits=32)
        row["dns_qtypes"] = strings(dns.get("qtypes"), "flow.l7.dns.qtypes")
    http = l7.get("http")
    if http is not None:
        http = _obj(http, "flow.l7.http")
        row["http_method"] = text(http.get("method"), "flow.l7.http.method")
        row["http_url"] = redact.text(text(http.get("url"), "flow.l7.http.url"))
        row["http_code"] = integer(http.get("code"), "flow.l7.http.code", bits=32)
        row["http_protocol"] = text(http.get("protocol"), "flow.l7.http.protocol")
        headers = http.get("headers")
        if headers is not None:
            if not isinstance(headers, (list, Mapping)):
                raise RecordError(f"'flow.l7.http.headers' is {type(headers).__name__}, not a list")
            row["http_headers"] = as_json(redact.headers(headers))
