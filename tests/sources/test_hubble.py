"""HubbleReader on the real upstream flows and on realistic generated envelopes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeforensics.redact import MARK
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.hubble import HubbleReader
from tests.conftest import conformance_files

READERS = {"hubble": HubbleReader()}
NODE = "kind-worker2"
T = "2024-05-06T10:21:04.512093871Z"


def flow(**over: Any) -> dict[str, Any]:
    """A flow shaped like `hubble observe -o jsonpb` output from Cilium 1.15."""
    f: dict[str, Any] = {
        "time": T,
        "uuid": "b7a2d0c4-5e1f-4f0a-9c3b-2d8e6f1a0b9c",
        "verdict": "FORWARDED",
        "IP": {"source": "10.244.1.17", "destination": "10.244.2.31", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 51234, "destination_port": 8080, "flags": {"ACK": True, "SYN": True}}},
        "source": {
            "ID": 1834,
            "identity": 48213,
            "cluster_name": "prod-eu1",
            "namespace": "payments",
            "labels": ["k8s:app=checkout", "k8s:io.kubernetes.pod.namespace=payments"],
            "pod_name": "checkout-7d9f8b6c5-x2x4k",
            "workloads": [{"name": "checkout", "kind": "Deployment"}],
        },
        "destination": {
            "ID": 911,
            "identity": 20117,
            "namespace": "payments",
            "labels": ["k8s:app=ledger", "k8s:io.kubernetes.pod.namespace=payments"],
            "pod_name": "ledger-5c8d7f9b4-q7w2e",
            "workloads": [{"name": "ledger", "kind": "Deployment"}],
        },
        "Type": "L3_L4",
        "node_name": NODE,
        "event_type": {"type": 4},
        "traffic_direction": "EGRESS",
        "trace_observation_point": "TO_ENDPOINT",
        "is_reply": False,
        "destination_service": {"name": "ledger", "namespace": "payments"},
        "Summary": "TCP Flags: SYN, ACK",
    }
    f.update(over)
    return f


def envelope(f: dict[str, Any]) -> dict[str, Any]:
    return {"flow": f, "node_name": NODE, "time": f.get("time", T)}


def read(tmp_path: Path, records: list[dict[str, Any]], fmt: str | None = "hubble") -> ReadResult:
    path = tmp_path / "hubble.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return read_file(path, fmt, readers=READERS)


def one_flow(tmp_path: Path, record: dict[str, Any]) -> dict[str, Any]:
    res = read(tmp_path, [record])
    assert res.account.quarantined == 0, res.quarantine
    rows = res.frame("flows").to_dict("records")
    assert len(rows) == 1
    return rows[0]


# --- real upstream flows -------------------------------------------------------------------

HUBBLE_FILES = conformance_files("hubble")


@pytest.mark.parametrize("path", HUBBLE_FILES, ids=lambda p: p.name)
def test_conformance_files_ingest_fully(path: Path) -> None:
    res = read_file(path, None, readers=READERS)  # also proves sniffing
    acc = res.account
    assert acc.format == "hubble"
    assert acc.records > 0
    assert acc.quarantined == 0, res.quarantine[:3]
    assert acc.records == acc.ingested == acc.rows["flows"]
    df = res.frame("flows")
    assert df.time.notna().all() and df.node.notna().all()
    assert set(df.protocol) == {"TCP"}
    assert df.src_ip.notna().all() and df.dst_port.notna().all()


@pytest.mark.parametrize("path", [p for p in HUBBLE_FILES if "dns" in p.name], ids=lambda p: p.name)
def test_conformance_dns_flows(path: Path) -> None:
    df = read_file(path, "hubble", readers=READERS).frame("flows")
    queries = set(df.dns_query.dropna())
    assert "istiod-istio-1611.istio-system.svc.istio-system.svc.cluster.local." in queries
    assert set(df.l7_type.dropna()) <= {"REQUEST", "RESPONSE"}
    assert 3 in set(df.dns_rcode.dropna())  # NXDOMAIN answers
    assert all(list(q) == ["A"] or "AAAA" in list(q) for q in df.dns_qtypes.dropna())
    assert (df.src_namespace == "kube-system").any()


def test_conformance_dns_resolved_ips(conformance: Path) -> None:
    df = read_file(
        conformance / "hubble" / "basic-sample-330-dns-flows.json", "hubble", readers=READERS
    ).frame("flows")
    ips = {ip for lst in df.dns_ips.dropna() for ip in lst}
    assert "10.160.0.203" in ips


@pytest.mark.parametrize("path", [p for p in HUBBLE_FILES if "http" in p.name], ids=lambda p: p.name)
def test_conformance_http_flows(path: Path) -> None:
    df = read_file(path, "hubble", readers=READERS).frame("flows")
    first = df.iloc[0]
    assert (first.http_method, first.http_url, first.http_protocol) == (
        "GET",
        "http://10.128.0.4:9990/metrics",
        "HTTP/1.1",
    )
    assert first.src_pod == "prometheus-6655946b9f-6xcpf" and first.src_namespace == "istio-system"
    assert first.is_reply == False
    headers = json.loads(first.http_headers)
    assert {"key": "User-Agent", "value": "Prometheus/2.15.1"} in headers
    assert 503 in set(df.http_code.dropna())
    responses = df[df.http_code.notna()]
    assert (responses.is_reply == True).all()


def test_conformance_reply_and_endpoints(conformance: Path) -> None:
    df = read_file(conformance / "hubble" / "basic-sample-10-flows.json", "hubble", readers=READERS).frame(
        "flows"
    )
    first = df.iloc[0]
    # older `reply` field (no is_reply in this capture)
    assert first.is_reply == True
    assert pd.isna(df.is_reply[1])  # neither field: unknown, not False
    assert first.src_pod == "reviews-v1-545db77b95-s6jb8" and first.src_namespace == "bookinfo"
    assert "k8s:app=reviews" in list(first.src_labels)
    assert first.src_identity == 25339
    assert list(first.dst_labels) == ["reserved:host"] and pd.isna(first.dst_pod)
    assert df.dst_pod[1] == "reviews-v1-545db77b95-s6jb8"
    assert (first.src_ip, first.src_port, first.dst_ip, first.dst_port) == (
        "10.0.2.16",
        15020,
        "10.0.2.1",
        42044,
    )
    assert first.tcp_flags == "FIN,ACK"
    assert (
        first.traffic_direction == "INGRESS" and first.flow_type == "L3_L4" and first.verdict == "FORWARDED"
    )
    assert first.time == pd.Timestamp("2021-06-16T16:52:13.136834446Z")


# --- generated flows -------------------------------------------------------------------------


def test_envelope_flow_all_fields(tmp_path: Path) -> None:
    row = one_flow(tmp_path, envelope(flow(destination_names=["ledger.payments.svc.cluster.local"])))
    assert row["uuid"] == "b7a2d0c4-5e1f-4f0a-9c3b-2d8e6f1a0b9c"
    assert row["time"] == pd.Timestamp(T)
    assert row["tcp_flags"] == "SYN,ACK"
    assert (row["src_workload"], row["dst_workload"]) == ("checkout", "ledger")
    assert (row["src_identity"], row["dst_identity"]) == (48213, 20117)
    assert row["dst_service"] == "payments/ledger" and pd.isna(row["src_service"])
    assert list(row["dst_names"]) == ["ledger.payments.svc.cluster.local"]
    assert row["is_reply"] == False
    assert row["summary"] == "TCP Flags: SYN, ACK"
    assert row["ip_version"] == "IPv4"


def test_dropped_udp_and_icmp(tmp_path: Path) -> None:
    drop = flow(
        verdict="DROPPED",
        drop_reason=133,
        drop_reason_desc="POLICY_DENIED",
        l4={"UDP": {"source_port": 40211, "destination_port": 53}},
        destination={"identity": 2, "labels": ["reserved:world"]},
        destination_service=None,
        IP={"source": "fd00:10:244:1::17", "destination": "2001:4860:4860::8888", "ipVersion": "IPv6"},
    )
    icmp = flow(l4={"ICMPv4": {"type": 8}}, Summary="ICMPv4 EchoRequest")
    res = read(tmp_path, [envelope(drop), envelope(icmp)])
    assert res.account.quarantined == 0, res.quarantine
    df = res.frame("flows")
    assert (df.verdict[0], df.drop_reason[0], df.protocol[0], df.dst_port[0]) == (
        "DROPPED",
        "POLICY_DENIED",
        "UDP",
        53,
    )
    assert df.ip_version[0] == "IPv6" and df.dst_ip[0] == "2001:4860:4860::8888"
    assert list(df.dst_labels[0]) == ["reserved:world"] and pd.isna(df.dst_namespace[0])
    assert df.protocol[1] == "ICMPv4" and pd.isna(df.dst_port[1]) and pd.isna(df.tcp_flags[1])


def test_legacy_bare_flow(tmp_path: Path) -> None:
    bare = flow(reply=True, source_service={"name": "checkout"})
    del bare["is_reply"], bare["uuid"]
    res = read(tmp_path, [bare], fmt=None)  # sniffed as hubble
    assert res.account.format == "hubble" and res.account.quarantined == 0
    row = res.frame("flows").iloc[0]
    assert row.is_reply == True
    assert row.src_pod == "checkout-7d9f8b6c5-x2x4k" and row.node == NODE
    assert row.src_service == "checkout"
    assert row.time == pd.Timestamp(T)


def test_dns_response_flow(tmp_path: Path) -> None:
    dns = flow(
        Type="L7",
        l4={"UDP": {"source_port": 53, "destination_port": 40211}},
        l7={
            "type": "RESPONSE",
            "latency_ns": "1203311",
            "dns": {
                "query": "pool.minexmr.com.",
                "ips": ["94.130.165.87", "94.130.164.163"],
                "ttl": 30,
                "rcode": 0,
                "qtypes": ["A"],
                "rrtypes": ["A"],
                "observation_source": "proxy",
            },
        },
        is_reply=True,
    )
    row = one_flow(tmp_path, envelope(dns))
    assert row["l7_type"] == "RESPONSE"
    assert row["dns_query"] == "pool.minexmr.com."
    assert list(row["dns_ips"]) == ["94.130.165.87", "94.130.164.163"]
    assert row["dns_rcode"] == 0 and list(row["dns_qtypes"]) == ["A"]


def test_http_secrets_are_redacted(tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpkZWZhdWx0In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    url = "http://ledger.payments:8080/v1/transfer?access_token=AbC123xyz9&amount=10"
    http = flow(
        Type="L7",
        l7={
            "type": "REQUEST",
            "http": {
                "method": "POST",
                "url": url,
                "protocol": "HTTP/1.1",
                "headers": [
                    {"key": "Authorization", "value": f"Bearer {jwt}"},
                    {"key": "Cookie", "value": "session=9f8e7d6c5b4a"},
                    {"key": "User-Agent", "value": "curl/8.5.0"},
                ],
            },
        },
        Summary=f"HTTP/1.1 POST {url}",
    )
    row = one_flow(tmp_path, envelope(http))
    assert row["http_method"] == "POST" and row["http_protocol"] == "HTTP/1.1" and pd.isna(row["http_code"])
    assert "AbC123xyz9" not in row["http_url"] and "amount=10" in row["http_url"]
    headers = {h["key"]: h["value"] for h in json.loads(row["http_headers"])}
    assert headers == {"Authorization": MARK, "Cookie": MARK, "User-Agent": "curl/8.5.0"}
    assert jwt not in row["http_headers"]
    assert "AbC123xyz9" not in row["summary"]


def test_non_flow_envelopes_go_to_flow_aux(tmp_path: Path) -> None:
    records = [
        envelope(flow()),
        {
            "lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "42", "cpu": {"value": 1}},
            "node_name": NODE,
            "time": "2024-05-06T10:21:05.000000001Z",
        },
        {
            "node_status": {
                "state_change": "NODE_UNAVAILABLE",
                "node_names": ["kind-worker3"],
                "message": "connection refused",
            },
            "node_name": "kind-control-plane",
            "time": "2024-05-06T10:21:06Z",
        },
        {
            "agent_event": {"type": "ENDPOINT_CREATED", "endpoint_regenerate": {"id": 911}},
            "time": "2024-05-06T10:21:07Z",
        },
        {
            "debug_event": {"type": "DBG_CT_VERDICT", "source": {"ID": 911}},
            "node_name": NODE,
            "time": "2024-05-06T10:21:08Z",
        },
        {"some_future_event": {"detail": 1}, "node_name": NODE, "time": "2024-05-06T10:21:09Z"},
    ]
    res = read(tmp_path, records)
    acc = res.account
    assert (acc.records, acc.ingested, acc.quarantined) == (6, 6, 0)
    assert acc.rows["flows"] == 1 and acc.rows["flow_aux"] == 5
    aux = res.frame("flow_aux")
    assert list(aux.kind) == ["lost_events", "node_status", "agent_event", "debug_event", "some_future_event"]
    assert aux.node[1] == "kind-control-plane" and pd.isna(aux.node[2])
    assert json.loads(aux.raw[0])["num_events_lost"] == "42"
    assert aux.time[0] == pd.Timestamp("2024-05-06T10:21:05.000000001Z")


def test_aux_without_any_time_is_quarantined(tmp_path: Path) -> None:
    res = read(
        tmp_path,
        [{"lost_events": {"source": "OBSERVER_EVENTS_QUEUE", "num_events_lost": "7"}, "node_name": NODE}],
    )
    assert res.account.quarantined == 1 and res.account.ingested == 0
    assert "'lost_events' envelope has no 'time'" in res.quarantine[0].reason


def test_flow_time_falls_back_to_envelope(tmp_path: Path) -> None:
    f = flow()
    del f["time"]
    row = one_flow(tmp_path, {"flow": f, "node_name": NODE, "time": "2024-05-06T10:21:04.5Z"})
    assert row["time"] == pd.Timestamp("2024-05-06T10:21:04.5Z")


# --- bad input -------------------------------------------------------------------------------


def _no_time() -> dict[str, Any]:
    f = flow()
    del f["time"]
    return {"flow": f, "node_name": NODE}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (envelope(flow(IP="10.0.0.1")), "'flow.IP' is str, not an object"),
        (envelope(flow(l4={"TCP": {"source_port": "http"}})), "'flow.l4.source_port' is not an integer"),
        (envelope(flow(source={"labels": {"app": "x"}})), "'flow.source.labels' is dict, not a list"),
        (envelope(flow(time="yesterday")), "'flow.time' is not a timestamp"),
        (envelope(flow(is_reply="maybe")), "'flow.is_reply'"),
        (
            envelope(flow(l7={"type": "REQUEST", "http": {"headers": "Authorization: x"}})),
            "'flow.l7.http.headers' is str",
        ),
        (_no_time(), "flow has no 'time'"),
        ({"flow": ["x"], "time": T}, "'flow' is list, not an object"),
        ({"node_name": NODE, "time": T}, "not a Hubble record"),
    ],
)
def test_wrong_types_are_quarantined_with_reason(tmp_path: Path, record: dict[str, Any], reason: str) -> None:
    res = read(tmp_path, [envelope(flow()), record])
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (2, 1, 1)
    (q,) = res.quarantine
    assert q.line == 2
    assert reason in q.reason


def test_sniff() -> None:
    r = HubbleReader()
    assert r.sniff(envelope(flow()))
    assert r.sniff(flow())
    assert r.sniff({"lost_events": {"num_events_lost": "1"}, "time": T})
    assert r.sniff({"node_status": {"state_change": "NODE_CONNECTED"}, "node_name": NODE})
    assert not r.sniff({"process_exec": {"process": {}}, "node_name": NODE, "time": T})
    assert not r.sniff({"rule": "Terminal shell in container", "source": "syscall", "output": "x"})
    assert not r.sniff({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "get"})
