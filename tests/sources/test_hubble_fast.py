"""The DuckDB bulk path of the Hubble reader gives the same tables as the per-record path.

Differential tests: each file is read twice, once through ``HubbleReader`` (bulk
path first, declined lines record by record) and once through a reader without
``bulk`` (the reference); ``flows`` and ``flow_aux`` rows are matched by
``event_id`` and compared value by value (JSON text included), with the same
accounting and the same quarantined line numbers and reasons.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kubeforensics import redact
from kubeforensics.simulate import simulate
from kubeforensics.sources import hubble_fast
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.hubble import HubbleReader
from tests.conftest import conformance_files
from tests.sources import bulk_helpers
from tests.sources.bulk_helpers import (
    SCAN_TEXTS,
    assert_numbered,
    assert_same_tables,
    assert_scan_plain_agrees,
    bulk_with_wrong_mapping,
    write_lines,
    write_numbered,
)


@pytest.fixture(autouse=True)
def bulk_even_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubble_fast, "MIN_BULK_BYTES", 0)


class PlainHubbleReader(HubbleReader):
    """The reference: the same reader without its bulk path."""

    bulk = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hubble flows of a simulated incident (~10k lines: L3/L4, DNS, HTTP, drops, lost_events)."""
    out = simulate("ssrf-dns-exfil", tmp_path_factory.mktemp("sim"), scale=20_000)
    return out / "hubble" / "flows.json"


def read_both(path: Path, fmt: str | None = "hubble") -> tuple[ReadResult, ReadResult]:
    return bulk_helpers.read_both(path, "hubble", HubbleReader(), PlainHubbleReader(), fmt)


def assert_same(path: Path, *, min_vectorised: int = 0, fmt: str | None = "hubble") -> ReadResult:
    """Bulk + per-record equals per-record alone: accounting, quarantine, every value of every table."""
    return assert_same_tables(*read_both(path, fmt), min_vectorised=min_vectorised)


NODE = "retail-live-worker-79m6p"
T = "2026-10-26T06:34:03.818312679Z"
BASE_FLOW: dict[str, Any] = {
    "time": T, "uuid": "97379b7b-9766-4ea8-a1be-f874fbf2195a", "verdict": "FORWARDED",
    "IP": {"source": "10.1.49.14", "destination": "10.1.49.15", "ipVersion": "IPv4"},
    "l4": {"TCP": {"source_port": 47478, "destination_port": 6379, "flags": {"SYN": True}}},
    "source": {"ID": 1129, "identity": 20259, "cluster_name": "retail-live", "namespace": "shop",
               "labels": ["k8s:app.kubernetes.io/name=checkout-api", "k8s:io.kubernetes.pod.namespace=shop"],
               "pod_name": "checkout-api-p9jgt6d5f-2qtsw", "workloads": [{"name": "checkout-api", "kind": "Deployment"}]},
    "destination": {"ID": 1186, "identity": 20296, "namespace": "shop",
                    "labels": ["k8s:app.kubernetes.io/name=redis"], "pod_name": "redis-0",
                    "workloads": [{"name": "redis", "kind": "StatefulSet"}]},
    "Type": "L3_L4", "node_name": NODE, "is_reply": False, "event_type": {"type": 4, "sub_type": 3},
    "traffic_direction": "EGRESS", "trace_observation_point": "TO_STACK",
    "destination_service": {"name": "redis", "namespace": "shop"}, "Summary": "TCP Flags: SYN",
}


def fl(**changes: Any) -> dict[str, Any]:
    """The base flow with fields changed (``...`` removes one), in its envelope."""
    f = copy.deepcopy(BASE_FLOW)
    for k, v in changes.items():
        if v is ...:
            f.pop(k, None)
        else:
            f[k] = v
    return {"flow": f, "node_name": NODE, "time": T}


def ep(side: str = "source", **changes: Any) -> dict[str, Any]:
    e = copy.deepcopy(BASE_FLOW[side])
    for k, v in changes.items():
        if v is ...:
            e.pop(k, None)
        else:
            e[k] = v
    return fl(**{side: e})


def tcp(**layer: Any) -> dict[str, Any]:
    return fl(l4={"TCP": {"source_port": 1, "destination_port": 2, **layer}})


DNS = {"query": "exfil.attacker.example.", "ips": ["203.0.113.9"], "rcode": 3, "qtypes": ["A"], "rrtypes": ["A"],
       "ttl": 30, "observation_source": "proxy"}
HTTP = {"code": 200, "method": "GET", "url": "http://10.1.49.14:3000/healthz", "protocol": "HTTP/1.1",
        "headers": [{"key": "User-Agent", "value": "kube-probe/1.30"}]}


def l7(kind: str = "dns", **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in {**(DNS if kind == "dns" else HTTP), **changes}.items() if v is not ...}
    return fl(Type="L7", l7={"type": "RESPONSE", "latency_ns": "1874021", kind: body})


EDGE_CASES: list[Any] = [
    fl(),
    # time: envelope fallback, other forms, invalid
    fl(time=...), fl(time=""), fl(time="2026-10-26T08:34:03.5+02:00"), fl(time="2026-02-30T00:00:00Z"),
    fl(time=1792996441), fl(time="yesterday"), fl(time="2026-10-26T06:34:03Z"), fl(time="2026-10-26T06:34:03.1Z"),
    {"flow": {k: v for k, v in BASE_FLOW.items() if k != "time"}, "node_name": NODE},  # no time anywhere
    # text fields of other JSON types
    fl(uuid=5), fl(uuid=1.5), fl(uuid=12345678901234567890123), fl(uuid=18446744073709551615), fl(uuid={"x": 1}),
    fl(uuid=[1]), fl(uuid=True), fl(uuid="NaN"), fl(uuid=float("nan")), fl(uuid=float("inf")), fl(uuid="1e400"),
    fl(uuid=None), fl(verdict=1e300), fl(verdict=-0.0), fl(verdict="infra"), fl(verdict="6e5"),
    fl(node_name=...), fl(node_name=None), fl(node_name=7),
    # verdict and drop reason
    fl(verdict="DROPPED", drop_reason=133, drop_reason_desc="POLICY_DENIED"), fl(verdict="DROPPED", drop_reason=133),
    fl(drop_reason="133"), fl(drop_reason=0), fl(drop_reason="0"), fl(drop_reason=False), fl(drop_reason=""),
    fl(drop_reason_desc=""), fl(drop_reason={"a": 1}, drop_reason_desc="X"), fl(drop_reason={"a": 1}),
    fl(Type=...), fl(traffic_direction=...),
    # is_reply / reply
    fl(is_reply=..., reply=True), fl(is_reply="true"), fl(is_reply="TRUE"), fl(is_reply="yes"), fl(is_reply=1),
    fl(is_reply=None, reply=None), fl(is_reply=None, reply="False"), fl(is_reply=...),
    # services
    fl(source_service={"name": "kube-dns", "namespace": "kube-system"}), fl(destination_service={"name": "x"}),
    fl(destination_service={"namespace": "ns"}), fl(destination_service={"name": ""}),
    fl(destination_service={"name": 5, "namespace": "n"}), fl(destination_service={"name": {"a": 1}}),
    fl(destination_service=None), fl(destination_service={"name": "a\x1fnan", "namespace": "n"}),
    fl(source_service={"name": "x", "namespace": 1e300}), fl(source_service={"name": [1], "namespace": "n"}),
    # destination names, summary
    fl(destination_names=["api.stripe.com", "b"]), fl(destination_names=[]), fl(destination_names=[None, "x"]),
    fl(destination_names=["x", 5]), fl(destination_names=[{"x": 1}]),
    fl(Summary="curl -H 'Authorization: Bearer abcdefgh12345678' http://x"), fl(Summary="caf\u00e9"),
    fl(Summary="password=hunter2"), fl(Summary=""), fl(Summary=...), fl(Summary="[retry] SYN"),
    fl(Summary="TOKEN"), fl(Summary="TCP Flags: SYN"), fl(Summary=5),
    # IP
    fl(IP=...), fl(IP={}), fl(IP={"source": "fd00::1", "destination": "fd00::2", "ipVersion": "IPv6"}),
    # IP and direction of other JSON types (each column's odd-value check: per distinct value)
    fl(IP={"source": [1], "destination": "10.1.49.15", "ipVersion": "IPv4"}),
    fl(IP={"source": "10.1.49.14", "destination": 12345678901234567890123, "ipVersion": "IPv4"}),
    fl(IP={"source": "10.1.49.14", "destination": "10.1.49.15", "ipVersion": float("nan")}),
    fl(traffic_direction={"a": 1}), fl(traffic_direction=float("inf")),
    # l4
    fl(l4={"UDP": {"source_port": 58384, "destination_port": 53}}), fl(l4={"ICMPv4": {"type": 8, "code": 0}}),
    fl(l4={"ICMPv6": {"type": 128}}), fl(l4={}), fl(l4=None), fl(l4=...), fl(l4={"TCP": {}}),
    fl(l4={"SCTP": {"source_port": 9, "destination_port": 10}}), fl(l4={"VRRP": {"vrid": 1}}),
    fl(l4={"TCP": None, "UDP": {"source_port": 1, "destination_port": 2}}),
    fl(l4={"UDP": {"source_port": 1, "destination_port": 2}, "TCP": {"source_port": 3}}),
    fl(l4={"ICMPv4": {}}), fl(l4={"ICMPv4": {"nested": {"a": 1}}}), fl(l4=[]), fl(l4="TCP"),
    tcp(), tcp(flags={}), tcp(flags={"SYN": False, "ACK": False}), tcp(flags={"ACK": True, "SYN": True}),
    tcp(flags={"FIN": True, "SYN": True, "RST": True, "PSH": True, "ACK": True, "URG": True, "ECE": True,
               "CWR": True, "NS": True}),
    tcp(flags={"SYN": True, "XYZ": True}), tcp(flags={"SYN": "true"}), tcp(flags=None), tcp(flags=[]),
    fl(l4={"TCP": {"destination_port": 80, "source_port": 1}}), fl(l4={"TCP": {"source_port": "80"}}),
    fl(l4={"TCP": {"source_port": 4294967296}}), fl(l4={"TCP": {"source_port": 2147483648}}),
    fl(l4={"TCP": {"source_port": -1}}), fl(l4={"TCP": {"source_port": 80.0}}), fl(l4={"TCP": {"source_port": 8.5}}),
    fl(l4={"UDP": {"source_port": 1, "destination_port": 2, "flags": {"SYN": True}}}),
    # l4 templates (numbers after ':' as \x01): port digits, the int32 bound, numbers elsewhere
    fl(l4={"TCP": {"source_port": 12345678901, "destination_port": 80}}), fl(l4={"UDP": {"destination_port": 53}}),
    fl(l4={"TCP": {"source_port": 2147483647, "destination_port": 65535, "flags": {"ACK": True}}}),
    fl(l4={"TCP": {"source_port": 9999999999}}), fl(l4={"TCP": {"source_port": 1e3}}),
    fl(l4={"ICMPv6": {"type": 128, "code": 12345678901}}), fl(l4={"VRRP": {"x": "a:123", "y": 7}}),
    fl(l4={"Infinity": {}}), fl(l4={"nan": {"a": 1}}), tcp(flags={"SYN": 1}), tcp(flags={"SYN": True, "NS1": True}),
    # endpoints
    ep(labels=["k8s:app=x", None]), ep(labels=["k8s:app=x", 5]), ep(labels=[]), ep(labels=["reserved:host"]),
    ep(labels=["Io.cilium=1", "-x", "9lives", "nan", "inf", "[x]"]), ep(namespace=""), ep(pod_name=...),
    ep(identity="16777217"), ep(identity=18446744073709551615), ep(identity=-5), ep(identity=1.5),
    ep(identity=""), ep(identity=" 7"), ep(identity=True), ep(identity=123456789012345678),
    ep(identity=1234567890123456789), ep(identity="-0"), ep(identity="007"), ep("destination", identity="x"), ep(workloads=[]), ep(workloads=[{"kind": "X"}]),
    ep(workloads=[None]), ep(workloads=[{"name": 5}]), ep(workloads=[{"name": "a"}, {"name": "b"}]),
    ep("destination", namespace=7), fl(source=...), fl(destination=None), fl(source={}),
    # L7
    l7(), l7(rcode="3"), l7(rcode=...), l7(ips=[]), l7(query="caf\u00e9.example."),
    fl(Type="L7", l7={"type": "REQUEST"}), fl(l7={}), fl(l7=None), fl(l7={"type": 5, "dns": None}),
    l7("http"), l7("http", headers=[{"key": "Authorization", "value": "Bearer abcdefgh12345678"}]),
    l7("http", headers=[{"key": "X-Session-Id", "value": "s"}]), l7("http", headers=[{"key": "A", "value": "x/y"}]),
    l7("http", headers=[{"value": "v", "key": "k"}]), l7("http", headers={"a": "b"}), l7("http", headers="x"),
    l7("http", headers=[]), l7("http", headers=None), l7("http", headers=[{"key": "a", "value": "caf\u00e9"}]),
    l7("http", headers=[{"key": "a", "value": "tab\there"}]), l7("http", headers=[{"key": "a"}]),
    l7("http", url="http://x/?token=abcdef0123456789"), l7("http", url="http://u:pw@host/"), l7("http", code="200"),
    l7("http", code=99999999999), l7("http", code=None, method=...),
    # non-flow envelopes, wrappers, bare flows in an envelope file
    {"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "228", "cpu": 0},
     "node_name": NODE, "time": T},
    {"node_status": {"state_change": "NODE_CONNECTED", "node_names": ["a"]}, "node_name": NODE, "time": T},
    {"agent_event": {"type": "AGENT_STARTED"}, "time": T}, {"debug_event": {"type": "DBG_GENERIC"}, "node_name": NODE},
    {"something_new": {"a": 1}, "node_name": NODE, "time": T}, {"lost_events": {"a": 1}, "node_name": NODE},
    {**fl(), "lost_events": {"a": 1}}, {"kind": "FlowList", "items": [fl(), fl(uuid="second")]},
    {**fl(), "items": [1]}, BASE_FLOW, {"flow": {}, "node_name": NODE, "time": T}, {"flow": None, **BASE_FLOW},
    {"flow": None, "node_name": NODE, "time": T}, {"verdict": "FORWARDED"}, {"unrelated": 1},
    {"flow": {"time": T, "uuid": "u"}},
]


#: Lines DuckDB refuses (a structured field of another JSON type): the bulk path stops there.
STOPPERS: list[Any] = [l7(qtypes="A"), fl(source="x"), fl(destination_names="a.example."), {"flow": "x", "node_name": NODE, "time": T},
                       ep(workloads={"name": "a"}), ep(workloads=["a"]), fl(IP=[1]),
                       json.dumps(fl())[:-1] + ', "time": "2026-10-26T06:34:04Z"}',  # duplicate keys
                       json.dumps(fl()).replace('"verdict":', '"uuid": "dup", "verdict":', 1)]


@pytest.mark.parametrize("n", range(len(STOPPERS)))
def test_duckdb_refuses_these_lines(tmp_path: Path, n: int) -> None:
    res = hubble_fast.bulk(write_lines(tmp_path / "stop.json", [fl()] * 5 + [STOPPERS[n]]), "stop.json", "x")
    assert res is not None
    assert list(res.batches) == [] and not res.complete and res.next_line == 1


def test_lines_duckdb_refuses_after_batches_were_streamed(simulated: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB reads ~10 MB ahead: the batches it streamed before the refused line stand, the rest is read
    record by record (the refused lines are flows there)."""
    monkeypatch.setattr(hubble_fast, "BATCH_ROWS", 500)
    path = tmp_path / "stop.json"
    path.write_bytes(simulated.read_bytes() + "".join((o if isinstance(o, str) else json.dumps(o)) + "\n"
                                                        for o in STOPPERS + EDGE_CASES).encode())
    res = assert_same(path, min_vectorised=1000)
    assert res.account.notes["vectorised"] < res.tables["flows"].num_rows - len(EDGE_CASES)


def test_edge_cases_one_per_line(tmp_path: Path) -> None:
    res = assert_same(write_lines(tmp_path / "edge.json", EDGE_CASES), min_vectorised=60)
    assert res.account.quarantined >= 10  # bad times, NaN, wrong types...
    assert res.tables["flow_aux"].num_rows >= 5


def test_edge_cases_unforced_with_other_formats_mixed_in(tmp_path: Path) -> None:
    audit = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete",
             "verb": "get", "requestURI": "/api", "requestReceivedTimestamp": T}
    objs = [fl()] * 40 + EDGE_CASES + [audit] + [fl()] * 10
    res = assert_same(write_lines(tmp_path / "mixed.json", objs), fmt=None, min_vectorised=100)
    assert res.account.format == "hubble" and res.account.notes["routed to audit"] == 1


def test_simulated_flows(simulated: Path) -> None:
    res = assert_same(simulated, min_vectorised=9_000)
    flows = res.tables["flows"]
    assert res.account.notes["vectorised"] == flows.num_rows  # every flow of the simulation is an ordinary one
    assert res.tables["flow_aux"].num_rows >= 1  # lost_events, read record by record
    assert set(flows.column("protocol").to_pylist()) >= {"TCP", "UDP"}
    assert flows.filter(pa.compute.is_valid(flows.column("dns_query"))).num_rows > 100
    assert flows.filter(pa.compute.is_valid(flows.column("http_headers"))).num_rows > 100


def test_bare_flows(simulated: Path, tmp_path: Path) -> None:
    """Files of the older bare form: the flow object alone on each line (non-flow envelopes kept)."""
    out = []
    for line in simulated.read_text().splitlines()[:4000]:
        obj = json.loads(line)
        out.append(obj.get("flow", obj))
    path = write_lines(tmp_path / "bare.json", out + [fl()])  # one envelope in a bare file: declined
    res = assert_same(path, min_vectorised=3900)
    assert hubble_fast._form(path) is False
    assert res.tables["flows"].num_rows == 4000 - res.tables["flow_aux"].num_rows + 1


def test_bare_edge_cases(tmp_path: Path) -> None:
    bare = [o["flow"] if isinstance(o, dict) and isinstance(o.get("flow"), dict) else o for o in EDGE_CASES]
    assert_same(write_lines(tmp_path / "bare-edge.json", [BASE_FLOW] * 30 + bare), min_vectorised=60)


@pytest.mark.parametrize("src", conformance_files("hubble"), ids=lambda p: p.name)
def test_conformance_files_replicated(src: Path, tmp_path: Path, conformance: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Real upstream flows (jsonpb, DNS and HTTP, ``reply`` and ``is_reply``), replicated past the size threshold."""
    monkeypatch.setattr(hubble_fast, "MIN_BULK_BYTES", 1024 * 1024)
    data = src.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    path = tmp_path / src.name
    path.write_bytes(data * (hubble_fast.MIN_BULK_BYTES // len(data) + 1))
    lines = path.read_bytes().count(b"\n")
    res = assert_same(path, min_vectorised=lines)
    assert res.account.records == lines and res.account.quarantined == 0


@pytest.mark.parametrize(
    "name, newline, bom, blanks",
    [("crlf.json", "\r\n", False, False), ("bom.json", "\n", True, False), ("blank.json", "\n", False, True),
     ("all.json.gz", "\r\n", True, True), ("plain.json.gz", "\n", False, False)],
)
def test_line_numbers_with_crlf_bom_blank_lines_and_gzip(
    tmp_path: Path, name: str, newline: str, bom: bool, blanks: bool
) -> None:
    lines = [json.dumps(fl(uuid=f"id-{n}")) for n in range(30)]
    path = write_numbered(tmp_path / name, lines, newline=newline, bom=bom, blanks=blanks)
    res = assert_same(path, min_vectorised=30)
    assert_numbered(res.tables["flows"].to_pylist(), "uuid", blanks)


def _hostile(simulated: Path, tmp_path: Path, name: str, *, huge: int) -> Path:
    """Simulated flows with hostile lines mixed in (each kind at two places)."""
    lines = simulated.read_bytes().splitlines()
    good = lines[10]
    bad = [
        good[: len(good) // 2],  # truncated record
        b"{not json}",
        b'{"flow": "a string", "node_name": "n", "time": "' + T.encode() + b'"}',  # wrong JSON type
        good.replace(b'"source":{', b'"source":"x","ignored":{', 1),
        good.replace(b'"destination_names"', b'"x"', 1).replace(b'"verdict":', b'"destination_names":"a.b","verdict":', 1),
        good.replace(b'{"time":', b'{"uuid":"dup","time":', 1),  # duplicate key
        good.replace(b'"FORWARDED"', b'"FORW\xff\xfeARDED"', 1),  # invalid UTF-8
        good.replace(b'"FORWARDED"', b'"\\ud800"', 1),  # lone surrogate
        json.dumps({"lost_events": {"num_events_lost": 3}, "node_name": NODE, "time": T}).encode(),
        json.dumps({"agent_event": {"type": "X"}, "node_name": NODE}).encode(),
        json.dumps(fl(Summary="x" * huge)).encode(),  # a huge line
        b"   ",
        b"{}",
        json.dumps(fl(uuid=float("nan"))).encode(),
    ]
    out: list[bytes] = []
    for n, line in enumerate(lines):
        out.append(line)
        if n in (len(lines) - 1500, len(lines) - 100):
            out.extend(bad)
    out.append(lines[-1][: len(lines[-1]) // 2])  # a truncated last line
    path = tmp_path / name
    data = b"\n".join(out)  # no final newline
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["hostile.json", "hostile.json.gz"])
def test_hostile_input_mixed_in(simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(hubble_fast, "BATCH_ROWS", 500)
    monkeypatch.setattr(hubble_fast, "MAX_OBJECT_BYTES", 200_000)
    path = _hostile(simulated, tmp_path, name, huge=300_000)
    res = assert_same(path, min_vectorised=1000)  # the batches before the first bad line stand
    n = simulated.read_bytes().count(b"\n")
    last = n + 2 * 14 + 1  # 14 lines inserted at two places, one of them blank
    acc = res.account
    assert acc.records == last - 2 and acc.records == acc.ingested + acc.quarantined
    quarantined = {q.line for q in res.quarantine}
    first_bad = n - 1500 + 2
    assert {first_bad, first_bad + 1, last} <= quarantined  # malformed lines and the truncated last line
    assert res.tables["flow_aux"].num_rows >= 2


def test_lines_that_are_no_objects_send_the_file_record_by_record(simulated: Path, tmp_path: Path) -> None:
    lines = simulated.read_bytes().splitlines()[:2000]
    path = tmp_path / "arr.json"
    path.write_bytes(b"\n".join(lines[:1000] + [b"[1, 2]", b'"just a string"'] + lines[1000:]) + b"\n")
    bulk = hubble_fast.bulk(path, "arr.json", "x")  # the line scan finds them, while DuckDB reads
    assert bulk is not None
    assert list(bulk.batches) == [] and not bulk.complete and bulk.next_line == 1
    res = assert_same(path)
    assert [q.line for q in res.quarantine] == [1001, 1001, 1002]  # each array element, the string


def test_bulk_stops_at_the_first_line_duckdb_refuses(simulated: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubble_fast, "BATCH_ROWS", 500)
    path = _hostile(simulated, tmp_path, "h.json", huge=10)
    res = hubble_fast.bulk(path, "h.json", "x")
    assert res is not None
    sizes = [t.num_rows for t in res.batches]
    assert sizes and max(sizes) <= 500 and not res.complete
    first_bad = simulated.read_bytes().count(b"\n") - 1500 + 2
    assert res.next_line <= first_bad and res.next_line == res.records + len(res.python_lines) + 1


def test_truncated_gzip(simulated: Path, tmp_path: Path) -> None:
    data = gzip.compress(b"\n".join(simulated.read_bytes().splitlines()[:3000]) + b"\n")
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    res = assert_same(path)
    assert res.account.quarantined == 1 and "compressed stream is damaged" in res.quarantine[0].reason
    assert 1000 < res.account.ingested < 3000


@pytest.mark.parametrize("name", ["f.json", "f.json.gz"])
@pytest.mark.parametrize("shift", ["skipped-line", "short-count", "long-count"])
def test_rows_that_do_not_map_to_their_lines_stop_the_bulk_path(
    simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: str, name: str
) -> None:
    """A wrong row -> line mapping is caught before the batch is yielded; the lines from there go record by record."""
    path = tmp_path / name
    data = b"\n".join(simulated.read_bytes().splitlines()[:3000]) + b"\n"
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    vectorised = bulk_with_wrong_mapping(hubble_fast, path, shift, monkeypatch)
    fast = assert_same(path, min_vectorised=vectorised)
    assert fast.account.records == 3000 and fast.account.quarantined == 0


def test_batches_stream(simulated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows come out in batches of at most BATCH_ROWS, computed as they are asked for (memory stays flat)."""
    monkeypatch.setattr(hubble_fast, "BATCH_ROWS", 1000)
    res = hubble_fast.bulk(simulated, "f.json", "x")
    assert res is not None
    batches = iter(res.batches)
    first = next(batches)
    assert first.num_rows <= 1000 and res.records == first.num_rows and not res.complete
    assert res.next_line > first.num_rows
    del first
    base = pa.total_allocated_bytes()
    held, peak, n = 0, 0, 1
    for table in batches:
        n += 1
        assert table.num_rows <= 1000
        held += table.nbytes
        peak = max(peak, pa.total_allocated_bytes() - base)
        del table
    assert n >= 8 and res.complete
    assert peak < held / 3, (peak, held)  # one batch at a time, never the whole file


def test_small_and_unsuitable_files_go_record_by_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubble_fast, "MIN_BULK_BYTES", 1024 * 1024)
    small = write_lines(tmp_path / "small.json", [fl()] * 10)
    assert hubble_fast.bulk(small, "s", "x") is None
    assert read_file(small, "hubble").account.notes["vectorised"] == 0
    monkeypatch.setattr(hubble_fast, "MIN_BULK_BYTES", 0)
    arr = tmp_path / "array.json"
    arr.write_text(json.dumps([fl(), fl()]))
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(fl(), indent=2))
    aux = write_lines(tmp_path / "aux.json", [{"lost_events": {"a": 1}, "node_name": NODE, "time": T}] * 3)
    noflows = write_lines(tmp_path / "none.json", [{"a": 1}] * 3)
    for p in (arr, pretty, noflows):
        assert hubble_fast.bulk(p, p.name, "x") is None
    for p in (arr, pretty, aux):
        assert_same(p)


def test_bulk_result_accounting(tmp_path: Path) -> None:
    objs = [fl(), fl(uuid={"a": 1}), {"lost_events": {"a": 1}, "node_name": NODE, "time": T},
            l7("http", headers=[{"key": "Cookie", "value": "s=1"}]), l7()]
    res = hubble_fast.bulk(write_lines(tmp_path / "d.json", objs), "d.json", "abc")
    assert res is not None
    assert res.records == 0 and not res.complete  # nothing is known before the batches are read
    table = pa.concat_tables(list(res.batches))
    assert res.complete and res.next_line == 6
    assert res.records == 2 and table.num_rows == 2 and res.python_lines == {2, 3, 4}
    row = table.to_pylist()[0]
    assert row["event_id"] == "abc:1" and row["evidence"] == "d.json" and row["line"] == 1
    assert row["tcp_flags"] == "SYN" and row["dst_service"] == "shop/redis" and row["src_workload"] == "checkout-api"
    assert table.to_pylist()[1]["dns_query"] == "exfil.attacker.example."


SECRETISH = [
    "Bearer abc", "basic", "TOKEN", "x-passwd", "Secret", "api_key", "apikey", "API-KEY", "eyJhb",
    "https://u:p@host", "s3://bucket@x", "plain text", "api key", "://host/@x", "x://a b@c", "Cookie: a=b",
    "authorization: x", 'authorization" = x', "-----BEGIN RSA PRIVATE KEY-----", "LS0tLS1CRUdJTiBx", "caf\u00e9",
]


@pytest.mark.parametrize("value", SECRETISH)
def test_redaction_prechecks_agree_with_redact(value: str) -> None:
    """Text the SQL passes through unchanged is text the per-record path leaves unchanged."""
    import duckdb

    def matches(pattern: str, text: str) -> bool:
        return bool(duckdb.execute("SELECT regexp_matches(?, ?)", [text, pattern]).fetchone()[0])

    if not matches(hubble_fast._REDACT_RE2, value):
        assert redact.text(value) == value
    headers = [{"key": value, "value": "v"}, {"key": "k", "value": value}]
    text = json.dumps(headers, separators=(",", ":"))
    if re.fullmatch(hubble_fast._HEADERS_SHAPE_RE2, text) is not None \
            and not matches(hubble_fast._HEADERS_DECLINE_RE2, text):
        assert redact.headers(headers) == headers


@pytest.mark.parametrize("value, odd", [
    ("10.1.49.14", False), ("6e51a2f0-uuid", False), ("1.5", False), ("12345", False), ("infra", False),
    ("nan", True), ("-Infinity", True), ("INF", True), ("1e400", True), ("-2.5E+309", True), ("{}", True),
    ("[1]", True), ("1234567890123456789", True), ("1e-07", False), ("", False), ("k8s:app=x", False),
])
def test_odd_values(value: str, odd: bool) -> None:
    col = pa.array(["a", value, None])
    assert hubble_fast._odd_rows(col).tolist() == ([1] if odd else [])
    lists = pa.array([["a"], None, ["b", value], [], ["c", None]])
    assert sorted(hubble_fast._odd_rows(lists).tolist()) == ([2, 4] if odd else [4])


def test_abandoned_stream_stops_its_query_thread(simulated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer that stops early (an error while writing a batch) leaves no DuckDB query running."""
    import threading

    monkeypatch.setattr(hubble_fast, "BATCH_ROWS", 500)
    res = hubble_fast.bulk(simulated, "f.json", "x")
    assert res is not None
    batches = res.batches
    assert next(iter(batches)).num_rows <= 500
    batches.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name == "hubble-bulk"]
    assert not res.complete


@pytest.mark.parametrize("text", SCAN_TEXTS)
def test_scan_plain_agrees_with_scan_lines(tmp_path: Path, text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubble_fast, "_SCAN_CHUNK", 4096)  # the scan's reads (lines across chunk boundaries)
    assert_scan_plain_agrees(hubble_fast, tmp_path / "s.json", text, monkeypatch)
