"""The DuckDB bulk path of the Tetragon reader gives the same table as the per-record path.

Differential tests: each file is read twice, once through ``TetragonReader``
(bulk path first, declined lines record by record) and once through a reader
without ``bulk`` (the reference); rows are matched by ``event_id`` and compared
column by column, accounting and quarantine (line and reason) must agree.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from kubeforensics.sources import tetragon_fast
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.records import BOM
from kubeforensics.sources.tetragon import TetragonReader
from tests.conftest import conformance_files
from tests.sources.bulk_helpers import assert_same_accounts, assert_same_rows, ingest_peak_mb, write_lines
from tests.sources.test_tetragon import ANCESTORS, PARENT, event, process


class PlainTetragonReader(TetragonReader):
    """The reference: the same reader without its bulk path."""

    bulk = None  # type: ignore[assignment]


@pytest.fixture
def bulk_even_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tetragon_fast, "MIN_BULK_BYTES", 0)


def read_both(path: Path) -> tuple[ReadResult, ReadResult]:
    fast = read_file(path, "tetragon", readers={"tetragon": TetragonReader()})
    ref = read_file(path, "tetragon", readers={"tetragon": PlainTetragonReader()})
    return fast, ref


def rows_by_id(res: ReadResult) -> dict[str, dict[str, Any]]:
    out = {}
    for row in res.tables["processes"].to_pylist():
        for c in ("pod_labels", "decoded_args", "raw"):
            if row[c] is not None:  # compared as text below too; parsed for a readable diff
                row[c + "_parsed"] = orjson.loads(row[c])
        out[row["event_id"]] = row
    return out


def assert_same(path: Path, *, min_vectorised: int = 0) -> ReadResult:
    """Bulk + per-record equals per-record alone: accounting, quarantine, every value."""
    fast, ref = read_both(path)
    assert_same_accounts(fast, ref)
    assert_same_rows(rows_by_id(fast), rows_by_id(ref))
    assert fast.tables["processes"].schema == ref.tables["processes"].schema
    assert fast.tables["processes"].equals(ref.tables["processes"])
    assert fast.account.notes["vectorised"] >= min_vectorised, fast.account.notes
    return fast


# --- simulated and real data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Tetragon export of a simulated container escape (~9 MB, ~3,600 events: exec, exit, kprobe)."""
    from kubeforensics.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate("container-escape", out, scale=15_000)
    (path,) = sorted((out / "tetragon").iterdir())
    assert path.stat().st_size > tetragon_fast.MIN_BULK_BYTES
    return path


def test_simulated_export(simulated: Path) -> None:
    res = assert_same(simulated)
    acc = res.account
    assert acc.records > 3000 and acc.quarantined == 0
    assert acc.notes["vectorised"] == acc.records  # every simulated event is an ordinary one
    types = set(res.tables["processes"].column("event_type").to_pylist())
    assert types == {"exec", "exit", "kprobe"}


def test_simulated_export_gzip_crlf_bom_and_blank_lines(simulated: Path, tmp_path: Path,
                                                       bulk_even_small_files: None) -> None:
    lines = simulated.read_bytes().split(b"\n")[:2000]
    lines = [b"", *lines[:700], b"   ", b"", *lines[700:]]
    path = tmp_path / "tetragon.log.gz"
    path.write_bytes(gzip.compress(BOM + b"\r\n".join(lines)))
    res = assert_same(path, min_vectorised=1990)
    assert res.tables["processes"].column("line").to_pylist()[:2] == [2, 3]


@pytest.mark.parametrize("path", conformance_files("tetragon"), ids=lambda p: p.name)
def test_conformance_replicated_past_the_threshold(path: Path, conformance: Path, tmp_path: Path) -> None:
    raw = path.read_bytes()
    copies = tetragon_fast.MIN_BULK_BYTES // len(raw) + 2
    big = tmp_path / path.name
    big.write_bytes(raw * copies)
    assert big.stat().st_size > tetragon_fast.MIN_BULK_BYTES
    n = raw.count(b"\n") * copies
    res = assert_same(big, min_vectorised=n)
    assert res.account.records == n and res.account.quarantined == 0
    # the first upstream event has no time: it falls back to process.start_time
    assert res.tables["processes"].column("time_source").to_pylist()[0] == "process.start_time"


# --- edge cases, one per line ----------------------------------------------------------------------


def ev(key: str = "process_exec", time: str | None = "2024-05-06T10:21:04.120554211Z", **payload: Any) -> dict:
    body: dict[str, Any] = {"process": process(), "parent": copy.deepcopy(PARENT)}
    for k, v in payload.items():
        if v is ...:
            body.pop(k, None)
        else:
            body[k] = v
    return event(key, body, time=time)


SOCK = {"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP", "saddr": "10.0.0.5",
                     "daddr": "10.96.0.1", "sport": 43122, "dport": 443, "cookie": "18446619829320668253"}}
KPROBE = {"function_name": "tcp_connect", "policy_name": "network", "action": "KPROBE_ACTION_POST", "args": [SOCK]}

EDGE_CASES: list[Any] = [
    ev(),
    ev(ancestors=ANCESTORS),
    ev(ancestors=[{"binary": "x"}, None, {"exec_id": ""}]),
    ev(ancestors=[]),
    ev(time=None),
    ev(time=""),
    ev(time="2024-05-06T10:21:04Z"),
    ev(time="2024-05-06T10:21:04.1Z"),
    ev(time="2024-05-06T10:21:04.123456Z"),
    ev(time="2024-05-06T10:21:04+02:00"),
    ev(time="2024-02-30T10:21:04Z"),
    ev(time=1714990864),
    ev(time=None, process=process(start_time="")),
    ev(time=None, process=process(start_time=None)),
    ev(process=process(start_time="not a time")),
    ev("process_exit", status=0),
    ev("process_exit", status=137, signal="SIGKILL", time=None),
    ev("process_exit", status="15", signal="", time="2024-05-06T10:21:05Z"),
    ev("process_exit", status=1.5),
    ev("process_exit", status=True),
    ev("process_kprobe", **KPROBE),
    ev("process_kprobe", **{**KPROBE, "return": {"int_arg": -13}, "return_action": "Post"}),
    ev("process_kprobe", function_name="security_file_permission", policy_name="files",
       args=[{"file_arg": {"path": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}, {"int_arg": 4}]),
    ev("process_kprobe", function_name="fd_install", args=[{"int_arg": 3}, {"path_arg": {"path": ""}},
                                                           {"file_arg": {"path": "/etc/shadow"}}]),
    ev("process_kprobe", function_name="x", args=[{"string_arg": "--password=hunter2"}, {"bytes_arg": "AAEC"}]),
    ev("process_kprobe", function_name="x", args=[{"sockaddr_arg": {"family": "AF_INET", "addr": "1.2.3.4",
                                                                    "port": 80}}]),
    ev("process_kprobe", function_name="x", args={"int_arg": 1}),
    ev("process_kprobe", function_name="x", args=[{"sock_arg": {"dport": "https"}}]),
    ev("process_kprobe", function_name="x", args=[{"int_arg": 12345678901234567890}]),
    ev("process_kprobe", function_name="x", args=[{"size_arg": 1.5}, {"int_arg": 1e300}]),
    ev("process_kprobe", function_name="x", **{"return": {"int_arg": None, "long_arg": "5"}}),
    ev("process_kprobe", function_name="x", **{"return": {"size_arg": "18446744073709551615"}}),
    ev("process_kprobe", function_name=7, policy_name=True, action=1.5),
    ev(process=process(pid="52112", tid="52113", uid="0", auid="4294967295")),
    ev(process=process(pid="18446744073709551615")),
    ev(process=process(pid=" 7")),
    ev(process=process(pid="")),
    ev(process=process(uid=-1)),
    ev(process=process(binary=5, cwd=1.5, flags=True)),
    ev(process=process(binary=12345678901234567890)),
    ev(process=process(binary="[odd]")),
    ev(process=process(arguments="--token=abcdef0123456789 -v")),
    ev(process=process(arguments="Authorization: Bearer abcdefghijklmnop")),
    ev(process=process(arguments="caf\u00e9 \u017fecret")),
    ev(process=process(arguments="")),
    ev(parent={**PARENT, "arguments": "--password hunter2"}),
    ev(parent=None),
    ev(parent={"exec_id": "p-1"}, process=process(parent_exec_id=None)),
    ev(process=process(cap={"effective": [], "permitted": ["CAP_SYS_ADMIN"]})),
    ev(process=process(cap={"effective": ["CAP_A", None]})),
    ev(process=process(cap={"effective": [1, 2.5, True]})),
    ev(process=process(cap={})),
    ev(process=process(ns={})),
    ev(process=process(ns={"mnt": {"inum": 1, "is_host": True}, "zzz": {"is_host": True}, "net": None,
                           "pid": {"is_host": "true"}, "uts": {"is_host": 1}})),
    ev(process=process(ns={"mnt": 5})),
    ev(process=process(ns={"mnt": {"inum": 123456789012345678901, "is_host": True}})),
    ev(process=process(pod=None)),
    ev(process=process(pod=None, docker="3B1F7C9A0D2E")),
    ev(process=process(pod=None, docker="")),
    ev(process=process(pod={"namespace": "x", "container": {"id": "docker://ABC "}})),
    ev(process=process(pod={"namespace": "x", "container": {"id": ""}}, docker="feed")),
    ev(process=process(pod={"name": "p", "container": None})),
    ev(process=process(pod={"name": "p", "labels": ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop", "x"]})),
    ev(process=process(pod={"name": "p", "labels": {"b": "2", "a": "1"}})),
    ev(process=process(pod={"name": "p", "labels": "app=web"})),
    ev(process=process(pod={"name": "p", "pod_labels": {"b": 1, "a": [True, None], "c": {"d": 2.5}}})),
    ev(process=process(pod={"name": "p", "pod_labels": ["not", "a", "map"]})),
    ev(process=process(pod={"name": "p", "pod_labels": {}, "labels": ["ignored=1"]})),
    ev(process=process(pod={"name": "p", "pod_labels": None, "labels": ["used=1"]})),
    ev(process=process(pod={"name": "p", "pod_labels": {"big": 123456789012345678901234}})),
    ev(process=process(pod={"name": "p", "pod_labels": {"caf\u00e9": "\u00fc/\"x\""}})),
    ev(process=None),
    ev(process={}),
    ev(process=process(exec_id=None, parent_exec_id=None)),
    {"process_exec": {"process": process()}, "time": "2024-05-06T10:21:04Z"},  # no node_name
    {"process_exec": {"process": process()}, "node_name": None, "time": "2024-05-06T10:21:04Z"},
    {**ev(), "cluster_name": "prod-eu", "node_labels": {"zone": "a"}, "aggregation_info": {"count": 2}},
    {**ev(), "cluster_name": 7},
    {**ev(), "extra": {"unknown": True}},
    {**ev(), "process_connect": {"process": process()}},
    {**ev(), "rate_limit_info": {"number_of_dropped_process_events": "3"}},
    {**ev(), "process_exit": {"process": process()}},
    {"process_connect": {"process": process(), "destination": "1.2.3.4"}, "node_name": "n", "time": "2024-05-06T10:21:04Z"},
    ev("process_tracepoint", subsys="syscalls", event="sys_enter_setns", args=[{"int_arg": 1}]),
    ev("process_lsm", function_name="bprm_check_security", args=[{"linux_binprm_arg": {"path": "/tmp/x"}}]),
    ev("process_uprobe", symbol="readline", path="/bin/bash"),
    ev("process_loader", path="/lib/x.so"),
    event("process_throttle", {"type": "THROTTLE_START", "cgroup": "/x"}),
    event("rate_limit_info", {"number_of_dropped_process_events": "3"}),
    ev(process=process(arguments='sh -c "echo \\"process_exec\\""')),
    ev(process=process(cwd="/home/process_x")),
    ev(process=process(binary="C:\\users\\x")),
    ev(process=process(process_credentials={"uid": 0, "caps": {"effective": ["CAP_X"]}})),
    '{"process_exec":{"process":{"pid":1,"start_time":"2024-05-06T10:21:04Z"},"pid":2},"node_name":"n"}',
    '{"process\\u005fexec":{"process":{"pid":1}},"node_name":"n","time":"2024-05-06T10:21:04Z"}',
    '{"process_exec":{"process":{"pid":1}},"process\\u005fconnect":{},"node_name":"n","time":"2024-05-06T10:21:04Z"}',
    ev("process_exec", process=process(), time="2024-05-06T10:21:04.123456789Z"),
]


def test_edge_cases_one_per_line(tmp_path: Path, bulk_even_small_files: None) -> None:
    res = assert_same(write_lines(tmp_path / "edge.jsonl", EDGE_CASES), min_vectorised=40)
    assert res.account.quarantined >= 8  # bad times, wrong types, two event keys


def test_edge_cases_each_in_a_file_of_ordinary_events(tmp_path: Path, bulk_even_small_files: None) -> None:
    """Each odd line among ordinary ones, so that a DuckDB error on it shows where the bulk path stops."""
    good = json.dumps(ev())
    for n, odd in enumerate(EDGE_CASES):
        line = odd if isinstance(odd, str) else json.dumps(odd)
        path = tmp_path / f"edge-{n}.jsonl"
        path.write_text("\n".join([good] * 5 + [line] + [good] * 5) + "\n")
        assert_same(path, min_vectorised=5)


def test_bulk_declines_what_it_does_not_replicate(tmp_path: Path, bulk_even_small_files: None) -> None:
    objs = [ev(), ev("process_tracepoint", subsys="a", event="b"), {**ev(), "extra_key": 1},
            {**ev(), "process_connect": {}}, ev(time="yesterday"), ev("process_kprobe", **KPROBE)]
    res = tetragon_fast.bulk(write_lines(tmp_path / "d.jsonl", objs), "d.jsonl", "abc")
    assert res is not None
    assert res.records == 0 and not res.complete  # nothing is known before the batches are read
    table = pa.concat_tables(list(res.batches))
    assert res.complete and res.next_line == 7
    assert res.python_lines == {2, 4, 5}
    assert table.column("line").to_pylist() == [1, 3, 6]
    row = table.to_pylist()[0]
    assert row["event_id"] == "abc:1" and row["evidence"] == "d.jsonl" and row["time_source"] == "time"
    kprobe = table.to_pylist()[2]
    assert (kprobe["daddr"], kprobe["dport"], kprobe["sock_protocol"]) == ("10.96.0.1", 443, "IPPROTO_TCP")


# --- hostile input ---------------------------------------------------------------------------------


def _ordinary(n: int) -> list[str]:
    out = []
    for k in range(n):
        e = ev("process_exit", status=k % 3) if k % 3 == 1 else ev("process_kprobe", **KPROBE) if k % 3 == 2 else ev()
        e[next(iter(e))]["process"]["pid"] = 1000 + k
        out.append(json.dumps(e))
    return out


HOSTILE: dict[str, bytes] = {
    "malformed": b'{"process_exec": {"process": ',
    "not-json": b"hello world",
    "array-line": b"[1, 2, 3]",
    "wrong-type-struct": json.dumps(ev(process="curl")).encode(),
    "wrong-type-list": json.dumps(ev(process=process(cap={"effective": "CAP_X"}))).encode(),
    "wrong-type-ancestors": json.dumps(ev(ancestors={"exec_id": "x"})).encode(),
    "duplicate-keys": b'{"process_exec":{"process":{"pid":1,"pid":2}},"node_name":"n","time":"2024-05-06T10:21:04Z"}',
    "duplicate-top": b'{"process_exec":{},"process_exec":{"process":{"pid":1}},"node_name":"n","time":"2024-05-06T10:21:04Z"}',
    "invalid-utf8": json.dumps(ev(process=process(arguments="XX"))).encode().replace(b"XX", b"\xff\xfe"),
    "two-objects": json.dumps(ev()).encode() * 2,
    "nan": b'{"process_exec":{"process":{"pid":NaN}},"node_name":"n","time":"2024-05-06T10:21:04Z"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("where", [0, 150, 299])
def test_hostile_line_anywhere(tmp_path: Path, bulk_even_small_files: None, name: str, where: int) -> None:
    lines = [line.encode() for line in _ordinary(300)]
    lines[where] = HOSTILE[name]
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = assert_same(path)  # a small file: DuckDB fails on its first buffer, before any batch
    assert res.account.records >= 300  # a JSON array line counts its elements


def test_truncated_last_line_and_gzip(tmp_path: Path, bulk_even_small_files: None) -> None:
    data = ("\n".join(_ordinary(400)) + "\n").encode()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[:-200])  # the last record is cut short, no newline
    res = assert_same(cut)
    assert [q.line for q in res.quarantine] == [400]
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(data)[:-500])  # a truncated gzip stream
    res = assert_same(gz)
    assert res.account.quarantined >= 1


def test_huge_line_goes_record_by_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         bulk_even_small_files: None) -> None:
    monkeypatch.setattr(tetragon_fast, "MAX_OBJECT_BYTES", 64 * 1024)
    lines = _ordinary(200)
    lines[120] = json.dumps(ev(process=process(arguments="a" * 200_000)))
    path = tmp_path / "huge.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = assert_same(path)
    assert res.account.ingested == 200
    assert res.tables["processes"].column("args").to_pylist()[120] == "a" * 200_000


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain: seek", "gzip: skip"])
def test_rows_that_do_not_map_to_their_lines_stop_the_bulk_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk_even_small_files: None, gzipped: bool
) -> None:
    monkeypatch.setattr(tetragon_fast, "BATCH_ROWS", 100)
    monkeypatch.setattr(tetragon_fast, "MAX_OBJECT_BYTES", 256 * 1024)
    text = "\n".join(_ordinary(600)) + "\n"
    path = tmp_path / ("t.jsonl.gz" if gzipped else "t.jsonl")
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    real = tetragon_fast.scan

    def skewed(p: Path, **kw: Any) -> Any:
        _lines, odd, starts = real(p, **kw)
        assert (starts is None) == gzipped  # plain files are checked by seeking to the line
        import numpy as np

        return tetragon_fast._Lines(600, np.r_[np.arange(1, 251), np.arange(252, 602)]), odd, starts

    monkeypatch.setattr(tetragon_fast, "scan", skewed)
    res = tetragon_fast.bulk(path, "t", "x")
    assert res is not None
    got = pa.concat_tables(list(res.batches)).column("line").to_pylist()
    assert not res.complete and res.next_line == 201
    assert got == list(range(1, 201))
    assert_same(path, min_vectorised=200)


# --- streaming -------------------------------------------------------------------------------------


def test_batches_stream(simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows come out in bounded batches, the accounting advances batch by batch, and a broken line
    late in a big file (~27 MB: DuckDB streams batches before it reaches it) ends the stream there."""
    monkeypatch.setattr(tetragon_fast, "BATCH_ROWS", 1000)
    lines = simulated.read_bytes().rstrip(b"\n").split(b"\n") * 3
    at = len(lines) - 50
    lines[at] = b"{broken"
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = tetragon_fast.bulk(path, "s", "x")
    assert res is not None
    seen = []
    for table in res.batches:
        assert table.num_rows <= 1000
        seen.append((res.records, res.next_line))
    assert len(seen) >= 4 and seen == sorted(seen)
    assert not res.complete and res.next_line <= at + 1  # stopped before the broken line
    fast = assert_same(path, min_vectorised=4000)
    assert [q.line for q in fast.quarantine] == [at + 1]


def test_ingest_memory_does_not_grow_with_the_file(simulated: Path, tmp_path: Path) -> None:
    """Peak RSS of a case ingest (measured in a small launcher): a 4x larger export needs what the small one needs."""
    raw = simulated.read_bytes()
    peaks = {}
    for copies in (4, 16):
        path = tmp_path / f"tetragon-{copies}.log"
        path.write_bytes(raw * copies)
        peaks[copies] = ingest_peak_mb(path, raw.count(b"\n") * copies, module="tetragon_fast")
        path.unlink()
    assert peaks[16] - peaks[4] < 60, peaks
