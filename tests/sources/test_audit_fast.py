"""The DuckDB bulk path of the audit reader gives the same table as the per-record path.

Differential tests: each file is read twice, once through ``AuditReader`` (bulk
path first, declined lines record by record) and once through a reader without
``bulk`` (the reference); rows are matched by ``event_id`` and compared column by
column, JSON columns parsed (the bulk path keeps the original key order).
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from kubeforensics import redact
from kubeforensics.sources import audit_fast
from kubeforensics.sources.audit import AuditReader
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.records import BOM
from tests.conftest import ROOT, conformance_files
from tests.sources.bulk_helpers import (
    SCAN_TEXTS,
    assert_numbered,
    assert_same_accounts,
    assert_same_rows,
    assert_scan_plain_agrees,
    bulk_with_wrong_mapping,
    ingest_peak_mb,
    write_lines,
    write_numbered,
)

sys.path.insert(0, str(ROOT / "benchmarks"))
from ingest import generate

JSON_COLUMNS = ("annotations", "user_extra", "request_object", "response_object")


@pytest.fixture(autouse=True)
def bulk_even_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_fast, "MIN_BULK_BYTES", 0)


class PlainAuditReader(AuditReader):
    """The reference: the same reader without its bulk path."""

    bulk = None  # type: ignore[assignment]


def read_both(path: Path) -> tuple[ReadResult, ReadResult]:
    fast = read_file(path, "audit", readers={"audit": AuditReader()})
    ref = read_file(path, "audit", readers={"audit": PlainAuditReader()})
    return fast, ref


def rows_by_id(res: ReadResult) -> dict[str, dict[str, Any]]:
    out = {}
    for row in res.tables["audit"].to_pylist():
        for c in JSON_COLUMNS:
            if row[c] is not None:
                row[c] = orjson.loads(row[c])
        out[row["event_id"]] = row
    return out


def assert_same(path: Path, *, min_vectorised: int = 0) -> ReadResult:
    """Bulk + per-record equals per-record alone: accounting, quarantine, every value."""
    fast, ref = read_both(path)
    assert_same_accounts(fast, ref)
    assert_same_rows(rows_by_id(fast), rows_by_id(ref))
    assert fast.tables["audit"].schema == ref.tables["audit"].schema
    assert fast.account.notes["vectorised"] >= min_vectorised
    return fast


BASE: dict[str, Any] = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
    "auditID": "0d6a2c1e-3b5c-4d2e-9f1a-1a2b3c4d5e6f", "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/pods?limit=500", "verb": "list",
    "user": {"username": "jane@example.com", "groups": ["sre", "system:authenticated"]},
    "sourceIPs": ["198.51.100.4", "203.0.113.7"], "userAgent": "kubectl/v1.31.0 (linux/amd64)",
    "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "code": 200},
    "requestReceivedTimestamp": "2026-11-01T10:00:00.123456Z", "stageTimestamp": "2026-11-01T10:00:00.200000Z",
    "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": 'RBAC: allowed by "x"'},
}


def ev(**changes: Any) -> dict[str, Any]:
    e = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is ...:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def exec_ev(query: str, verb: str = "create", sub: str = "exec") -> dict[str, Any]:
    return ev(verb=verb, requestURI=f"/api/v1/namespaces/default/pods/web-1/{sub}?{query}",
              objectRef={"resource": "pods", "subresource": sub, "namespace": "default", "name": "web-1"})


SA_EXTRA = {
    "authentication.kubernetes.io/credential-id": ["JTI=7f1c2d3e-aaaa-bbbb-cccc-0123456789ab"],
    "authentication.kubernetes.io/node-name": ["node-3"],
    "authentication.kubernetes.io/pod-name": ["web-7d9f-abcde"],
    "authentication.kubernetes.io/pod-uid": ["0b7f6c1e-1111-2222-3333-444455556666"],
}

EDGE_CASES: list[dict[str, Any]] = [
    BASE,
    exec_ev("command=sh&command=-c&command=echo+%22a+b%22%3B+id&container=app&stdin=true&tty=false"),
    exec_ev("command=bash&tty=true", verb="get"),
    exec_ev("command=%2Fbin%2Fsh&command=-c&command=curl+-H+%27Authorization%3A+Bearer+abcdefgh12345678%27+x"),
    exec_ev("container=app&stdin=1&tty=TRUE", sub="attach"),
    exec_ev("command=ls&command=&command=a%09b"),
    ev(apiVersion="audit.k8s.io/v1beta1", requestReceivedTimestamp=..., timestamp="2026-11-01T10:00:01Z"),
    ev(requestReceivedTimestamp=..., stageTimestamp="2026-11-01T10:00:02.5Z"),
    ev(requestReceivedTimestamp=..., metadata={"creationTimestamp": "2026-11-01T10:00:03Z"}),
    ev(apiVersion=..., kind="Event"),
    ev(user={"username": "system:serviceaccount:shop:web", "uid": "u-1", "groups": ["system:serviceaccounts"],
             "extra": SA_EXTRA}),
    ev(user={"username": "x", "extra": {"authentication.kubernetes.io/pod-name": []}}),
    ev(user={"username": "x", "extra": {"x.authentication.kubernetes.io/pod-name": ["not-this"],
                                        "authentication.kubernetes.io/pod-name": ["", "web-1"],
                                        "authentication.kubernetes.io/pod-uid": ["u:[\"x"],
                                        "authentication.kubernetes.io/node-name": ["n", "m"]}}),
    ev(user={"username": "x", "extra": {"authentication.kubernetes.io/node-name-x": ["a"],
                                        "k": ["\"authentication.kubernetes.io/node-name\":[\"b"]}}),
    ev(user={"username": "x", "extra": {"token": ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.c2lnbmF0dXJlMTIz"]}}),
    ev(user={"username": "x", "extra": {}}),
    ev(requestURI="/api/v1/namespaces/default/secrets?token=abcdef0123456789&watch=1"),
    ev(requestURI="/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&labelSelector=app%3Dweb"),
    ev(requestURI="/api/v1/pods?labelSelector=caf%C3%A9%3D1&x=\u00e9"),
    ev(responseStatus={"code": 403, "reason": "Forbidden", "message": "user cannot list; password=hunter2"}),
    ev(responseStatus={"code": 500, "message": "plain failure"}),
    ev(responseStatus={"code": "404"}),
    ev(responseStatus={"code": 4294967296}),
    ev(responseStatus={"code": 200.0}),
    ev(responseStatus={"code": 200.5}),
    ev(responseStatus={"code": "1e2"}),
    ev(responseStatus={"code": " 201 "}),
    ev(verb=5, level=True),
    ev(objectRef={"resource": "pods", "name": {"odd": 1}}),
    ev(sourceIPs=[]),
    ev(sourceIPs=["10.0.0.1", None]),
    ev(sourceIPs=["10.0.0.1", 7]),
    ev(user={"username": "x", "groups": [1.5, "g"]}),
    ev(annotations={}),
    ev(annotations=None),
    ev(annotations={"authorization.k8s.io/decision": {"no": 1}}),
    ev(annotations={"b": 1, "a": [1, 2.5, {"z": None}]}),
    ev(requestReceivedTimestamp="2026-11-01T10:00:00+02:00"),
    ev(requestReceivedTimestamp="2026-02-30T10:00:00Z"),
    ev(requestReceivedTimestamp="2026-11-01T10:00:00.123456789Z"),
    ev(requestReceivedTimestamp=1762000000),
    ev(requestReceivedTimestamp="not a time"),
    ev(requestReceivedTimestamp=..., stageTimestamp=...),
    ev(impersonatedUser={"username": "admin"}),
    ev(verb="create", objectRef={"resource": "pods", "namespace": "default"},
       requestObject={"kind": "Pod", "metadata": {"name": "p1"},
                      "spec": {"hostPID": True, "containers": [{"name": "c", "image": "alpine",
                                                                 "securityContext": {"privileged": True}}]}}),
    ev(responseObject={"kind": "Status", "status": "Success"}),
    ev(verb="create", objectRef={"resource": "pods", "namespace": "default"},
       requestObject={"kind": "Pod", "metadata": {"generateName": "web-"},
                      "spec": {"containers": [{"image": "a:1", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN", "NET_ADMIN"]}}},
                                              {"image": "b:2", "securityContext": {"privileged": "true"}}, "odd"],
                               "initContainers": {"not": "a list"},
                               "volumes": [{"hostPath": {"path": "/"}}, {"hostPath": {"path": 5}}, {"emptyDir": {}}],
                               "serviceAccount": "legacy", "nodeName": "node-1", "hostIPC": True}},
       responseObject={"kind": "Pod", "metadata": {"name": "web-x7k2p"}}),
    ev(verb="create", objectRef={"resource": "deployments", "namespace": "shop", "apiGroup": "apps"},
       requestObject={"kind": "Deployment", "metadata": {"name": "shop"},
                      "spec": {"template": {"spec": {"hostPID": True, "containers": [{"image": "shop:3"}]}}}}),
    ev(verb="create", objectRef={"resource": "pods", "subresource": "binding", "namespace": "d", "name": "p"},
       requestObject={"kind": "Binding", "target": {"kind": "Node", "name": "node-9"}}),
    ev(verb="patch", objectRef={"resource": "pods", "namespace": "d", "name": "p"},
       requestObject={"spec": {"containers": [{"name": "c", "image": "evil:latest"}]}}),
    ev(verb="create", requestURI=None, objectRef={"resource": "pods", "subresource": "exec", "namespace": "d", "name": "p"},
       requestObject={"kind": "PodExecOptions", "command": ["sh", "-c", "id"], "container": "c", "stdin": True}),
    ev(verb="create", objectRef={"resource": "secrets", "namespace": "d"},
       requestObject={"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}}),
    ev(verb="create", objectRef={"resource": "pods", "namespace": "d"},
       requestObject={"kind": "Pod", "spec": {"containers": [{"env": [{"name": "API_TOKEN", "value": "t"}]}]}}),
    ev(verb="update", objectRef={"resource": "configmaps", "namespace": "d", "name": "c"},
       requestObject={"kind": "ConfigMap", "data": {"big": 123456789012345678901, "f": 1.5e300, "s": "caf\u00e9"}}),
    ev(requestObject=None, responseObject=None),
    ev(userAgent="curl/8 (https://user:pw@example.com)"),
    ev(kind="EventList", items=[BASE]),
    {"auditID": "no-kind", "verb": "get", "requestReceivedTimestamp": "2026-11-01T10:00:00Z"},
    {"category": "kube-audit", "properties": {"log": json.dumps(BASE)}},
    ev(objectRef={"resource": "pods", "namespace": "caf\u00e9", "name": "x"}),
]


@pytest.mark.parametrize("trace", conformance_files("audit/falco-trace-files"), ids=lambda p: p.name)
def test_conformance_trace_files(trace: Path, conformance: Path) -> None:
    assert_same(trace)


def test_edge_cases_one_per_line(tmp_path: Path) -> None:
    res = assert_same(write_lines(tmp_path / "edge.jsonl", EDGE_CASES), min_vectorised=15)
    assert res.account.quarantined >= 3  # bad timestamps, missing time, wrong-type fields


@pytest.mark.parametrize(
    "name, newline, bom, blanks",
    [("crlf.jsonl", "\r\n", False, False), ("bom.jsonl", "\n", True, False), ("blank.jsonl", "\n", False, True),
     ("all.log.1.gz", "\r\n", True, True), ("plain.gz", "\n", False, False)],
)
def test_line_numbers_with_crlf_bom_blank_lines_and_gzip(
    tmp_path: Path, name: str, newline: str, bom: bool, blanks: bool
) -> None:
    objs = [ev(auditID=f"id-{n}") for n in range(30)] + [exec_ev("command=id")]
    path = write_numbered(tmp_path / name, [json.dumps(o) for o in objs], newline=newline, bom=bom, blanks=blanks)
    res = assert_same(path, min_vectorised=31)
    assert_numbered(res.tables["audit"].to_pylist(), "audit_id", blanks)


def test_generated_benchmark_data(tmp_path: Path) -> None:
    """Big enough (several DuckDB buffers, two threads) to catch any reordering of rows."""
    path = tmp_path / "bench.log"
    generate(path, 40_000, seed=7)
    res = assert_same(path, min_vectorised=30_000)
    assert res.account.records == 40_000


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_malformed_line_anywhere_is_quarantined_with_its_line(tmp_path: Path, where: str) -> None:
    path = tmp_path / "bad.jsonl"
    generate(path, 500, seed=3)
    lines = path.read_bytes().split(b"\n")
    at = {"first": 0, "middle": 250, "last": 499}[where]
    lines[at] = lines[at][: len(lines[at]) // 2]  # a truncated record
    path.write_bytes(b"\n".join(lines))
    res = assert_same(path)
    acc = res.account
    assert (acc.records, acc.ingested, acc.quarantined) == (500, 499, 1)
    assert [q.line for q in res.quarantine] == [at + 1]
    assert res.quarantine[0].reason.startswith("invalid JSON")


def test_small_files_go_record_by_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_fast, "MIN_BULK_BYTES", 1024 * 1024)
    path = write_lines(tmp_path / "small.jsonl", [BASE] * 10)
    assert audit_fast.bulk(path, "s", "x") is None
    assert read_file(path, "audit").account.notes["vectorised"] == 0


def test_whole_file_documents_are_not_bulk_read(tmp_path: Path) -> None:
    arr = tmp_path / "array.json"
    arr.write_text(json.dumps([BASE, BASE]))
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(BASE, indent=2))
    assert audit_fast.bulk(arr, "a", "x") is None
    assert audit_fast.bulk(pretty, "p", "x") is None
    for p in (arr, pretty):
        assert_same(p)


def test_bulk_declines_what_it_does_not_replicate(tmp_path: Path) -> None:
    secret_env = {"kind": "Pod", "spec": {"containers": [{"env": [{"name": "DB_PASSWORD", "value": "x"}]}]}}
    objs = [BASE, ev(requestObject=secret_env), ev(verb=[1]), ev(requestReceivedTimestamp="2026-11-01"),
            ev(requestObject={"kind": "Pod", "spec": {"hostNetwork": True}})]
    res = audit_fast.bulk(write_lines(tmp_path / "d.jsonl", objs), "d.jsonl", "abc")
    assert res is not None
    assert res.records == 0 and not res.complete  # nothing is known before the batches are read
    table = pa.concat_tables(list(res.batches))
    assert res.complete and res.next_line == 6
    assert res.records == 2 and table.num_rows == 2
    assert res.python_lines == {2, 3, 4}
    assert table.column("pod_host_network").to_pylist() == [None, True]
    row = table.to_pylist()[0]
    assert row["event_id"] == "abc:1" and row["evidence"] == "d.jsonl" and row["line"] == 1
    assert row["source_ip"] == "203.0.113.7" and row["decision"] == "allow"


SECRETISH = [
    "Bearer abc", "basic", "TOKEN", "x-passwd", "Secret", "api_key", "apikey", "API-KEY", "eyJhb",
    "https://u:p@host", "s3://bucket@x", "plain text", "api key", "://host/@x", "x://a b@c",
]


@pytest.mark.parametrize("value", SECRETISH)
def test_secret_precheck_agrees_with_redact(value: str) -> None:
    """The RE2 pre-check in SQL and ``redact.might_contain_secret`` agree on ASCII text."""
    import duckdb

    got = duckdb.execute("SELECT regexp_matches(?, ?)", [value, audit_fast.MAYBE_SECRET_RE2]).fetchone()[0]
    assert got == redact.might_contain_secret(value) == bool(re.search(redact._MAYBE_SECRET, value))


def _break_line(path: Path, at: int) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[at] = lines[at][: len(lines[at]) // 2]  # a truncated record
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("where", ["middle", "end"])
def test_malformed_line_after_batches_were_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """DuckDB fails part-way through a big file: the batches it streamed stand, the rest goes record by record."""
    monkeypatch.setattr(audit_fast, "BATCH_ROWS", 1000)
    path = tmp_path / "big.log"
    generate(path, 24_000, seed=5)  # ~25 MB: DuckDB streams batches before it reaches the bad line
    assert path.stat().st_size > audit_fast.MIN_BULK_BYTES + 1024 * 1024
    at = {"middle": 20_000, "end": 23_999}[where]
    _break_line(path, at)
    res = audit_fast.bulk(path, "big.log", "x")
    assert res is not None
    sizes = [t.num_rows for t in res.batches]
    assert len(sizes) >= 5 and not res.complete
    assert res.next_line == res.records + len(res.python_lines) + 1 <= at + 1  # stopped before the bad line
    # how far DuckDB's parallel reader gets before it meets the bad line depends on its threads' timing
    fast = assert_same(path, min_vectorised=5_000)
    acc = fast.account
    assert (acc.records, acc.ingested, acc.quarantined) == (24_000, 23_999, 1)
    assert [q.line for q in fast.quarantine] == [at + 1]
    assert fast.quarantine[0].reason.startswith("invalid JSON")
    assert fast.tables["audit"].column("line").to_pylist() == [n for n in range(1, 24_001) if n != at + 1]


@pytest.mark.parametrize("name", ["a.log", "a.log.gz"])
@pytest.mark.parametrize("shift", ["skipped-line", "short-count", "long-count"])
def test_rows_that_do_not_map_to_their_lines_stop_the_bulk_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: str, name: str
) -> None:
    """A wrong row -> line mapping is caught before the batch is yielded; the lines from there go record by record."""
    path = tmp_path / name
    generate(tmp_path / "plain.log", 3000, seed=9)
    data = (tmp_path / "plain.log").read_bytes()
    (tmp_path / "plain.log").unlink()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    vectorised = bulk_with_wrong_mapping(audit_fast, path, shift, monkeypatch)
    fast = assert_same(path, min_vectorised=vectorised)
    assert fast.account.records == 3000 and fast.account.quarantined == 0


def test_ingest_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Peak RSS of a case ingest: a ~200 MB audit file needs about what a ~50 MB one needs.  Batches of 2,000
    rows: both files fill the pipeline (DuckDB's batches ahead, the one converted, the writer's queue), so
    what differs is only what would follow the file."""
    peaks = {}
    for n in (48_000, 192_000):
        path = tmp_path / f"audit-{n}.log"
        generate(path, n, seed=n)
        peaks[n] = ingest_peak_mb(path, n, module="audit_fast")
        path.unlink()
    assert peaks[192_000] - peaks[48_000] < 150, peaks


@pytest.mark.parametrize("text", SCAN_TEXTS)
def test_scan_plain_agrees_with_scan_lines(tmp_path: Path, text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy line scan finds the same rows -> lines as the streaming scan, and where each line starts."""
    assert_scan_plain_agrees(audit_fast, tmp_path / "f.jsonl", text, monkeypatch)


def test_skip_cursor_reads_the_lines_asked_for(tmp_path: Path) -> None:
    """The gzip cursor skips a chunk at a time and returns exactly line n (increasing n; None past the end)."""
    from kubeforensics.sources import bulk_lines

    raw = [b'{"n":%d,"pad":"%s"}' % (n, b"x" * (n % 97)) for n in range(1, 5001)]
    raw[2999] = b""  # a blank line
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(gzip.compress(BOM + b"\n".join(raw)))  # no final newline
    cursor = bulk_lines.SkipCursor(path, (), chunk=1000, max_line=1 << 20)
    try:
        for n in (1, 2, 2, 3, 57, 58, 2999, 3000, 3001, 4321, 5000):
            assert cursor.get(n) == raw[n - 1] + (b"\n" if n < 5000 else b"")
        assert cursor.get(4000) is None  # lines are read forwards only
        assert cursor.get(5001) is None
    finally:
        cursor.close()


def test_file_that_is_not_json_lines_of_objects_goes_record_by_record(tmp_path: Path) -> None:
    """The line scan (run while DuckDB starts) finds a line that is no object: the whole file goes record by record."""
    path = tmp_path / "mixed.log"
    lines = [json.dumps(ev(auditID=f"id-{n}")).encode() for n in range(300)]
    lines[150] = b'"just a string"'
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = audit_fast.bulk(path, "mixed.log", "x")
    assert res is not None
    assert list(res.batches) == [] and not res.complete and res.next_line == 1
    fast = assert_same(path, min_vectorised=0)
    assert fast.account.records == 300 and fast.account.quarantined == 1
    assert [q.line for q in fast.quarantine] == [151]


@pytest.mark.parametrize("entries", [2, 65_536])
def test_repeated_exec_queries_are_computed_once_and_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: int
) -> None:
    """exec/attach columns and redacted URIs per distinct query (also when the memo starts afresh) = the reference."""
    monkeypatch.setattr(audit_fast, "MEMO_ENTRIES", entries)
    queries = ["command=sh&command=-c&command=id%3B+cat+%2Fetc%2Fpasswd&container=web&stdin=true&tty=true",
               "command=mysql&command=--password%3Dhunter2&container=db",
               "command=ls&tty=false", "container=a&stdin=true", ""]
    objs = []
    for n in range(400):
        q = queries[n % len(queries)]
        e = exec_ev(q, verb=["create", "get"][n % 2], sub=["exec", "attach"][n % 3 == 0])
        e["objectRef"]["name"] = f"web-{n}"
        e["requestURI"] = e["requestURI"].replace("/web-1/", f"/web-{n}/").rstrip("?")
        e["auditID"] = f"id-{n}"
        objs.append(e)
    path = write_lines(tmp_path / "exec.log", objs)
    fast = assert_same(path, min_vectorised=400)
    rows = fast.tables["audit"].to_pylist()
    assert {r["exec_command"] for r in rows} >= {"sh -c 'id; cat /etc/passwd'", "ls"}
    assert all("hunter2" not in (r["request_uri"] or "") + (r["exec_command"] or "") for r in rows)
    assert rows[7]["request_uri"].startswith("/api/v1/namespaces/default/pods/web-7/")


def test_timestamp_sql_agrees_with_fields_ts() -> None:
    """``_ts_ns`` (regex + one TIMESTAMP_NS cast) gives ``fields.ts``'s nanoseconds, or NULL where the bulk path
    declines (invalid dates, odd forms): random API-server timestamps, 0-9 fraction digits, 1900-2199."""
    import random

    import duckdb

    from kubeforensics.errors import RecordError
    from kubeforensics.sources.fields import ts

    rnd = random.Random(11)
    vals = ["2024-02-29T23:59:59.999999999Z", "2023-02-29T00:00:00Z", "2026-11-01T10:00:00.Z", "1969-12-31T23:59:59.5Z"]
    for _ in range(20_000):
        frac = rnd.choice(["", "." + "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(1, 10)))])
        vals.append(f"{rnd.randrange(1900, 2200):04d}-{rnd.randrange(1, 13):02d}-{rnd.choice([1, 28, 29, 30, 31]):02d}"
                    f"T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}{frac}Z")
    got = duckdb.execute(f"SELECT {audit_fast._ts_ns('e')} FROM (SELECT unnest(?) AS e)", [vals]).fetchall()
    for v, (ns,) in zip(vals, got):
        if ns is None:  # declined: the per-record path decides
            continue
        try:
            want = ts(v, "t")
        except RecordError:
            want = None
        assert ns == want, v
    assert sum(ns is not None for (ns,) in got) > 15_000


# -- request objects: the pod_* columns and the created name -------------------------------------------------------

_KINDS = {  # kind -> (resource, where the pod spec goes)
    "Pod": ("pods", ("spec",)),
    "Deployment": ("deployments", ("spec", "template", "spec")),
    "DaemonSet": ("daemonsets", ("spec", "template", "spec")),
    "StatefulSet": ("statefulsets", ("spec", "template", "spec")),
    "ReplicaSet": ("replicasets", ("spec", "template", "spec")),
    "ReplicationController": ("replicationcontrollers", ("spec", "template", "spec")),
    "Job": ("jobs", ("spec", "template", "spec")),
    "CronJob": ("cronjobs", ("spec", "jobTemplate", "spec", "template", "spec")),
    "PodTemplate": ("podtemplates", ("template", "spec")),
}


def _nest(path: tuple[str, ...], spec: Any) -> dict[str, Any]:
    out: Any = spec
    for key in reversed(path):
        out = {key: out}
    return out


def pod_ev(n: int, spec: Any, *, kind: Any = "Pod", resource: str | None = None, verb: str = "create",
           name: str | None = None, ro_extra: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A create (or patch: ``kind=None`` leaves kind out) whose request object holds ``spec`` where ``kind`` keeps it."""
    if kind is None and resource is not None:  # a patch: where its resource keeps the pod spec
        kind = next((k for k, (r, _) in _KINDS.items() if r == resource), None)
        res, path = _KINDS.get(kind, ("pods", ("spec",))) if kind else (resource, ("spec",))
        kind = None
    else:
        res, path = _KINDS.get(kind if isinstance(kind, str) else "Pod", ("pods", ("spec",)))
    ro: dict[str, Any] = {"apiVersion": "v1", "metadata": {"name": f"obj-{n}", "namespace": "shop"}}
    if kind is not None:
        ro["kind"] = kind
    ro.update(_nest(path, spec))
    ro.update(ro_extra or {})
    ref = {"resource": resource or res, "namespace": "shop", "apiVersion": "v1"}
    if name is not None:
        ref["name"] = name
    e = ev(auditID=f"pod-{n}", verb=verb, requestURI=f"/api/v1/namespaces/shop/{ref['resource']}", objectRef=ref,
           requestObject=ro, level="RequestResponse")
    e.update(changes)
    return e


def _container(n: int, **sc: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": f"c{n}", "image": f"registry.example.com/app-{n}:1.{n}"}
    if sc:
        c["securityContext"] = sc
    return c


PLAIN_SPEC = {
    "serviceAccountName": "web", "nodeName": "node-2", "hostNetwork": True,
    "containers": [_container(1, privileged=False, capabilities={"add": ["NET_ADMIN"], "drop": ["ALL"]}),
                   _container(2, allowPrivilegeEscalation=False)],
    "initContainers": [_container(3, privileged=True)],
    "volumes": [{"name": "root", "hostPath": {"path": "/", "type": "Directory"}}, {"name": "tmp", "emptyDir": {}}],
}

#: Odd shapes of a pod spec, each in a Pod create (and, below, in every kind).
ODD_SPECS: list[Any] = [
    {},
    [],
    "spec",
    None,
    {"containers": {"image": "not-a-list"}},
    {"containers": "x", "initContainers": [_container(1)]},
    {"containers": [None, "odd", 5, [_container(1)], _container(2)]},
    {"containers": [{"image": 5}, {"image": None}, {"image": ["a"]}, {"image": ""}, {"image": "a"}, {"image": "a"}]},
    {"containers": [_container(1), _container(1), _container(2)], "initContainers": [_container(2), _container(1)],
     "ephemeralContainers": [_container(3), _container(1)]},
    {"containers": [{"image": "a", "securityContext": "privileged"}, {"image": "b", "securityContext": [1]}]},
    {"containers": [{"securityContext": {"privileged": v}} for v in ("true", "True", 1, None, "false")]},
    {"containers": [{"securityContext": {"privileged": "True"}}, {"securityContext": {"privileged": 1}}]},
    {"containers": [{"securityContext": {"privileged": "TRUE"}}], "hostPID": "True", "hostIPC": 1,
     "hostNetwork": "true"},
    {"containers": [{"securityContext": {"privileged": True}}], "hostPID": "true", "hostIPC": True, "hostNetwork": None},
    {"hostPID": [True], "hostIPC": {"x": True}, "hostNetwork": False},
    {"containers": [{"securityContext": {"capabilities": {"add": ["SYS_ADMIN", 5, None, ["X"], "SYS_ADMIN", "NET_RAW"]}}},
                    {"securityContext": {"capabilities": {"add": "SYS_PTRACE"}}},
                    {"securityContext": {"capabilities": ["add"]}},
                    {"securityContext": {"capabilities": {"add": {"0": "BPF"}}}}],
     "initContainers": [{"securityContext": {"capabilities": {"add": ["NET_RAW", "BPF"]}}}],
     "ephemeralContainers": [{"securityContext": {"capabilities": {"add": ["SYS_PTRACE", "SYS_ADMIN"]}}}]},
    {"volumes": [{"hostPath": {}}, {"hostPath": {"path": 5}}, {"hostPath": "/etc"}, {"hostPath": {"path": ""}},
                 "odd", None, {"hostPath": {"path": "/var/run/docker.sock"}}, {"hostPath": {"path": "/"}},
                 {"hostPath": {"path": "/"}}]},
    {"volumes": {"hostPath": {"path": "/"}}},
    {"serviceAccount": "legacy"},
    {"serviceAccountName": "", "serviceAccount": "legacy"},
    {"serviceAccountName": "", "serviceAccount": ""},
    {"serviceAccountName": "new", "serviceAccount": "legacy"},
    {"serviceAccountName": None, "serviceAccount": 5},
    {"serviceAccountName": False, "serviceAccount": "legacy"},
    {"serviceAccountName": True, "serviceAccount": "legacy"},
    {"serviceAccountName": 0, "serviceAccount": "legacy"},
    {"serviceAccountName": 7, "serviceAccount": "legacy"},
    {"serviceAccountName": [], "serviceAccount": "legacy"},
    {"serviceAccountName": ["x"], "serviceAccount": "legacy"},
    {"serviceAccountName": {}, "serviceAccount": "legacy"},
    {"nodeName": "node-1"},
    {"nodeName": 5},
    {"nodeName": ""},
    {"nodeName": {"name": "node-1"}},
    {"containers": [{"image": "a\"quoted\\back/slash\ttab", "securityContext": {"capabilities": {"add": ["A\"B"]}}}],
     "volumes": [{"hostPath": {"path": "/a\\b\"c"}}], "serviceAccountName": "s\"a", "nodeName": "n\\1"},
    PLAIN_SPEC,
]

#: Request objects whose text holds a key twice where the reference reads it (orjson keeps the last one):
#: written as raw text, since a dict cannot hold a key twice.
DUPLICATE_KEYS = [
    '{"kind":"ConfigMap","kind":"Pod","spec":{"hostPID":true}}',
    '{"kind":"Pod","spec":{"hostPID":false,"hostPID":true}}',
    '{"kind":"Pod","spec":{"hostPID":true},"spec":{"hostIPC":true}}',
    '{"kind":"Pod","spec":{"containers":[{"image":"a","image":"b"}]}}',
    '{"kind":"Pod","spec":{"containers":[{"securityContext":{"privileged":false,"privileged":true}}]}}',
    '{"kind":"Pod","spec":{"containers":[{"securityContext":{"capabilities":{"add":["A"],"add":["B"]}}}]}}',
    '{"kind":"Pod","spec":{"volumes":[{"hostPath":{"path":"/tmp","path":"/"}}]}}',
    '{"kind":"Pod","spec":{"volumes":[{"hostPath":{"path":"/tmp"},"hostPath":{"path":"/"}}]}}',
    '{"kind":"Pod","metadata":{"name":"a","name":"b"},"spec":{}}',
    '{"kind":"Deployment","spec":{"template":{"spec":{"hostPID":false,"hostPID":true}}}}',
    '{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{}},"template":{"spec":{"hostPID":true}}}}}}',
    '{"kind":"Binding","target":{"name":"n1","name":"n2"}}',
]


def object_events() -> list[dict[str, Any] | str]:
    """Creates and patches of every kind with plain and odd pod specs, Bindings, names from the response."""
    objs: list[dict[str, Any] | str] = []
    n = 0

    def add(e: dict[str, Any] | str) -> None:
        nonlocal n
        objs.append(e)
        n += 1

    for kind, (resource, _) in _KINDS.items():
        for spec in (PLAIN_SPEC, *ODD_SPECS[:8]):
            add(pod_ev(n, spec, kind=kind))
        add(pod_ev(n, PLAIN_SPEC, kind=None, resource=resource, verb="patch", name=f"p-{n}"))  # patch: no kind
        add(pod_ev(n, {"hostPID": True}, kind=None, resource=resource, verb="patch", name=f"p-{n}",
                   ro_extra={"kind": None}))  # kind null: by the resource too
        add(pod_ev(n, PLAIN_SPEC, kind=kind, resource="configmaps"))  # kind, not the resource, decides
        add(pod_ev(n, [], kind=kind, ro_extra=_nest(_KINDS[kind][1][:1], "not-an-object")))  # spec chain broken
        if len(_KINDS[kind][1]) > 2:
            add(pod_ev(n, None, kind=kind, ro_extra={"spec": {"template": ["x"]}}))
    for spec in ODD_SPECS:
        add(pod_ev(n, spec))
    for kind in (5, ["Pod"], {"k": "Pod"}, True, "pod", "Pod ", "Secretless", "Binding"):
        add(pod_ev(n, PLAIN_SPEC, kind=kind))
    add(pod_ev(n, PLAIN_SPEC, kind=None, resource="configmaps", verb="patch", name="c"))  # patch of no pod resource
    add(pod_ev(n, PLAIN_SPEC, kind=None, resource="pods", verb="patch", name="p", objectRef={
        "resource": "pods", "subresource": "status", "namespace": "shop", "name": "p"}))
    # Bindings: the scheduler placing a pod
    for target in ({"kind": "Node", "name": "node-9"}, {"name": 5}, "node-9", None, {}, {"name": ""}):
        add(ev(auditID=f"bind-{n}", verb="create", objectRef={"resource": "pods", "subresource": "binding",
                                                              "namespace": "d", "name": "p"},
               requestObject={"kind": "Binding", "metadata": {"name": "p"}, "target": target}))
    add(ev(auditID=f"bind-{n}", verb="create", objectRef={"resource": "bindings", "namespace": "d"},
           requestObject={"kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "node-3"}}))
    # the created name: objectRef.name, else the response's metadata.name, else the request's
    names: list[tuple[Any, Any, dict[str, Any]]] = [
        ({"metadata": {"name": "from-ro"}}, {"metadata": {"name": "from-resp"}}, {}),
        ({"metadata": {"name": "from-ro"}}, {"metadata": {"name": ""}}, {}),
        ({"metadata": {"name": "from-ro"}}, {"metadata": {"name": 5}}, {}),
        ({"metadata": {"name": "from-ro"}}, {"metadata": "x"}, {}),
        ({"metadata": {"name": "from-ro"}}, ["not", "an", "object"], {}),
        ({"metadata": {"name": ""}}, {"kind": "Status"}, {}),
        ({"metadata": {"generateName": "web-"}}, None, {}),
        (None, {"kind": "Pod", "metadata": {"name": "resp-only"}, "spec": {"hostPID": True}}, {}),
        (None, {"metadata": {"name": "resp-only"}}, {"verb": "update"}),
        ({"metadata": {"name": "from-ro"}}, None, {"verb": "update"}),
        ({"metadata": {"name": "from-ro"}}, None, {"name": ""}),
        ({"metadata": {"name": "from-ro"}}, None, {"subresource": "status"}),
        ([{"metadata": {"name": "x"}}], None, {}),
        ("text", {"metadata": {"name": "y"}}, {}),
    ]
    for ro, resp, change in names:
        ref = {"resource": "configmaps", "namespace": "d"}
        if "name" in change:
            ref["name"] = change["name"]
        if "subresource" in change:
            ref["subresource"] = change["subresource"]
        e = ev(auditID=f"name-{n}", verb=change.get("verb", "create"), objectRef=ref)
        if ro is not None:
            e["requestObject"] = ro
        if resp is not None:
            e["responseObject"] = resp
        add(e)
    # duplicate keys (raw text), in the request and in the response object
    for k, text in enumerate(DUPLICATE_KEYS):
        e = json.dumps(pod_ev(n, {}, auditID=f"dup-{k}"))
        add(e.replace('"requestObject": ' + json.dumps(pod_ev(n, {})["requestObject"]), '"requestObject": ' + text))
    e = json.dumps(ev(auditID="dup-resp", verb="create", objectRef={"resource": "configmaps", "namespace": "d"},
                      requestObject={"metadata": {"name": "ro"}}, responseObject={"metadata": {"name": "X"}}))
    add(e.replace('{"metadata": {"name": "X"}}', '{"metadata": {"name": "a", "name": "b"}}'))
    return objs


def test_object_columns_equal_the_reference(tmp_path: Path) -> None:
    """pod_* and created name of the bulk path = the per-record path on every kind, patch, odd shape, Binding, name,
    and duplicated keys; a request object whose kind is a list or an object is declined (quarantined by the reference)."""
    objs = object_events()
    path = write_lines(tmp_path / "objects.jsonl", objs)
    fast = assert_same(path, min_vectorised=len(objs) - 3)  # and kind "Secretless": a secret word
    assert fast.account.quarantined == 2  # kind ["Pod"] and {"k": "Pod"}: unhashable in audit.pod_spec_of
    rows = {r["audit_id"]: r for r in fast.tables["audit"].to_pylist()}
    assert len([aid for aid in rows if aid.startswith("dup-")]) == len(DUPLICATE_KEYS) + 1
    assert sum(r["pod_privileged"] is True for r in rows.values()) >= 15  # the cases are not vacuous
    assert sum(bool(r["pod_capabilities"]) for r in rows.values()) >= 15
    assert rows["dup-1"]["pod_host_pid"] is True and rows["dup-4"]["pod_privileged"] is True  # last key wins
    assert rows["dup-resp"]["name"] == "b"


@pytest.mark.parametrize("entries", [2, 65_536])
def test_repeated_pod_specs_are_computed_once_and_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: int
) -> None:
    """pod_* columns per distinct spec (also when the memo starts afresh) = the reference: specs that differ only in
    a flag, its JSON type (true / 1 / "true") or key order, in every kind, with names from objectRef, the response
    or the request."""
    monkeypatch.setattr(audit_fast, "MEMO_ENTRIES", entries)
    specs = [
        PLAIN_SPEC,
        {**PLAIN_SPEC, "hostPID": True},
        {**PLAIN_SPEC, "hostPID": 1},
        {**PLAIN_SPEC, "hostPID": "true"},
        {"hostPID": True, **PLAIN_SPEC},
        {"containers": [{"name": "a", "image": "x:1", "securityContext": {"privileged": True}}]},
        {"containers": [{"name": "a", "image": "x:1", "securityContext": {"privileged": False}}]},
        {"containers": [{"name": "a", "image": "x:1", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
         "volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
    ]
    kinds = list(_KINDS)
    objs = []
    for n in range(240):
        e = pod_ev(n, specs[n % len(specs)], kind=kinds[n % len(kinds)], name=f"web-{n}" if n % 3 == 0 else None)
        if n % 3 == 1:
            e["responseObject"] = {"metadata": {"name": f"resp-{n}"}}
        objs.append(e)
    path = write_lines(tmp_path / "pods.jsonl", objs)
    fast = assert_same(path, min_vectorised=240)
    rows = fast.tables["audit"].to_pylist()
    assert [r["pod_host_pid"] for r in rows[:5]] == [False, True, False, True, True]  # 1 is not true; "true" is
    assert [r["name"] for r in rows[:3]] == ["web-0", "resp-1", "obj-2"]
    assert [r["pod_privileged"] for r in rows[:8]] == [True] * 6 + [False, False]
    assert [r["pod_capabilities"] for r in rows[5:8]] == [[], [], ["SYS_ADMIN"]]


def test_object_column_values(tmp_path: Path) -> None:
    """Spot values (independent of the reference): order, dedup, flags, the service account rule, names."""
    objs = [pod_ev(0, PLAIN_SPEC), pod_ev(1, ODD_SPECS[8]), pod_ev(2, ODD_SPECS[15]),
            pod_ev(3, ODD_SPECS[16]), pod_ev(4, {"serviceAccountName": "", "serviceAccount": "legacy"}),
            pod_ev(5, {"serviceAccountName": True, "serviceAccount": "legacy"}), pod_ev(6, ODD_SPECS[10]),
            pod_ev(7, PLAIN_SPEC, kind="CronJob"), pod_ev(8, PLAIN_SPEC, kind="ConfigMap"),
            ev(auditID="b", verb="create", objectRef={"resource": "pods", "subresource": "binding", "name": "p"},
               requestObject={"kind": "Binding", "target": {"name": "node-9"}}),
            ev(auditID="r", verb="create", objectRef={"resource": "pods"}, requestObject={"metadata": {"name": "q"}},
               responseObject={"metadata": {"name": "q-x7k2"}})]
    path = write_lines(tmp_path / "spot.jsonl", objs)
    res = audit_fast.bulk(path, "spot", "x")
    assert res is not None
    rows = {r["audit_id"]: r for r in pa.concat_tables(list(res.batches)).to_pylist()}
    assert res.python_lines == set()
    p = rows["pod-0"]
    assert (p["pod_privileged"], p["pod_host_network"], p["pod_host_pid"], p["pod_host_ipc"]) == (True, True, False, False)
    assert p["pod_images"] == [f"registry.example.com/app-{n}:1.{n}" for n in (1, 2, 3)]
    assert (p["pod_capabilities"], p["pod_host_paths"]) == (["NET_ADMIN"], ["/"])
    assert (p["pod_service_account"], p["pod_node_name"], p["name"]) == ("web", "node-2", "obj-0")
    assert rows["pod-1"]["pod_images"] == [f"registry.example.com/app-{n}:1.{n}" for n in (1, 2, 3)]
    assert rows["pod-2"]["pod_capabilities"] == ["SYS_ADMIN", "NET_RAW", "BPF", "SYS_PTRACE"]
    assert rows["pod-3"]["pod_host_paths"] == ["", "/var/run/docker.sock", "/", "/"]
    assert rows["pod-4"]["pod_service_account"] == "legacy" and rows["pod-5"]["pod_service_account"] is None
    assert rows["pod-6"]["pod_privileged"] is True  # "true" counts, "True" and 1 do not (ODD_SPECS[11])
    assert rows["pod-7"]["pod_images"] == p["pod_images"] and rows["pod-7"]["pod_privileged"] is True
    assert rows["pod-8"]["pod_images"] is None and rows["pod-8"]["pod_privileged"] is None
    assert rows["b"]["pod_node_name"] == "node-9" and rows["b"]["pod_images"] is None
    assert rows["r"]["name"] == "q-x7k2"


def _random_value(rnd: Any, depth: int = 0) -> Any:
    pick = rnd.randrange(9 if depth < 2 else 7)
    if pick == 7:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(3))]
    if pick == 8:
        return {rnd.choice(["path", "add", "image", "x"]): _random_value(rnd, depth + 1)}
    return [None, True, False, 0, 1, "true", rnd.choice(["", "x", "SYS_ADMIN", "/", "True"])][pick]


def _maybe(rnd: Any, good: Any) -> Any:
    """Mostly the plain value, sometimes a random one of any type."""
    return good if rnd.random() < 0.75 else _random_value(rnd)


def _random_spec(rnd: Any) -> Any:
    if rnd.random() < 0.05:
        return _random_value(rnd)
    spec: dict[str, Any] = {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        if rnd.random() < 0.6:
            cs = []
            for _ in range(rnd.randrange(4)):
                sc = {"privileged": _maybe(rnd, rnd.choice([True, False, "true"])),
                      "capabilities": _maybe(rnd, {"add": _maybe(rnd, rnd.sample(["A", "B", "C", "D"], rnd.randrange(3)))})}
                c = {"image": _maybe(rnd, rnd.choice(["a:1", "b:2", "c:3"])), "securityContext": _maybe(rnd, sc)}
                cs.append(_maybe(rnd, {k: v for k, v in c.items() if rnd.random() < 0.8}))
            spec[key] = _maybe(rnd, cs)
    if rnd.random() < 0.5:
        spec["volumes"] = _maybe(rnd, [_maybe(rnd, {"hostPath": _maybe(rnd, {"path": _maybe(rnd, rnd.choice(["/", "/etc"]))})})
                                       for _ in range(rnd.randrange(3))])
    for key in ("hostPID", "hostNetwork", "hostIPC", "serviceAccountName", "serviceAccount", "nodeName"):
        if rnd.random() < 0.4:
            spec[key] = _maybe(rnd, {"serviceAccountName": "sa", "serviceAccount": "old", "nodeName": "n"}.get(key, True))
    return spec


def test_object_columns_fuzz(tmp_path: Path) -> None:
    """Random pod spec shapes in every kind, patches and names: bulk = per-record."""
    import random

    rnd = random.Random(2026)
    kinds = [*_KINDS, None, "Binding", "ConfigMap"]
    objs = []
    for n in range(3000):
        kind = rnd.choice(kinds)
        resource = rnd.choice([r for r, _ in _KINDS.values()]) if kind is None else None
        e = pod_ev(n, _random_spec(rnd), kind=kind, resource=resource, verb=rnd.choice(["create", "create", "patch"]),
                   name=rnd.choice([None, None, "", "given"]))
        if kind == "Binding":
            e["requestObject"]["target"] = _maybe(rnd, {"name": _maybe(rnd, "node-1")})
        if rnd.random() < 0.3:
            e["responseObject"] = _maybe(rnd, {"metadata": _maybe(rnd, {"name": _maybe(rnd, f"made-{n}")})})
        if rnd.random() < 0.05:
            del e["requestObject"]
        objs.append(e)
    path = write_lines(tmp_path / "fuzz.jsonl", objs)
    fast = assert_same(path, min_vectorised=3000)
    rows = fast.tables["audit"].to_pylist()
    assert 300 < sum(r["pod_privileged"] is True for r in rows) < 2500  # the fuzz reaches both outcomes
    assert sum(bool(r["pod_capabilities"]) and len(r["pod_capabilities"]) > 1 for r in rows) > 100


@pytest.mark.parametrize("kind", [["Pod"], {"k": "Pod"}, []])
def test_request_object_kind_list_or_object_is_declined_alone(tmp_path: Path, kind: Any) -> None:
    """Such a kind makes ``audit.pod_spec_of`` raise: that line alone goes record by record (quarantined there),
    the bulk path goes on (it used to stop at that batch, sending the rest of the file record by record)."""
    path = tmp_path / "kind.log"
    generate(path, 3000, seed=4)
    lines = path.read_bytes().split(b"\n")
    e = json.loads(lines[1999])
    e.update(verb="create", objectRef={"resource": "pods", "namespace": "d"},
             requestObject={"kind": kind, "spec": {"hostPID": True}})
    lines[1999] = json.dumps(e).encode()
    path.write_bytes(b"\n".join(lines))
    res = audit_fast.bulk(path, "kind.log", "x")
    assert res is not None
    assert sum(t.num_rows for t in res.batches) == 2999
    assert res.complete and res.python_lines == {2000}
    fast = assert_same(path, min_vectorised=2999)
    assert [q.line for q in fast.quarantine] == [2000]


_FIELD_PATHS = [("apiVersion",), ("level",), ("auditID",), ("stage",), ("requestURI",), ("verb",), ("userAgent",),
                ("user", "username"), ("user", "uid"), ("objectRef", "resource"), ("objectRef", "subresource"),
                ("objectRef", "namespace"), ("objectRef", "name"), ("objectRef", "apiGroup"),
                ("objectRef", "apiVersion"), ("objectRef", "uid"), ("responseStatus", "reason"),
                ("responseStatus", "message"), ("responseStatus", "code"), ("kind",), ("requestReceivedTimestamp",),
                ("stageTimestamp",), ("timestamp",), ("user", "groups", 0), ("sourceIPs", 1)]
_FIELD_VALUES = [{"a": 1}, [1, "x"], [], {}, 12345678901234567890, -12345678901234567890, 1234567890123456789,
                 123456789012345678, -5, 1.5, True, None, "{not json", "[x]", "-1234567890123456789", "a\x1f{b",
                 "a\x1f[b", "a\x1f12345678901234567890", "12345678901234567890", "plain"]


def test_string_fields_of_every_json_type(tmp_path: Path) -> None:
    """Every string field (and list element) holding each JSON type, long integers and texts that look like them:
    the bulk path declines what it cannot render as ``fields.text`` does, and equals the per-record path."""
    objs = []
    for n, (fpath, value) in enumerate((p, v) for p in _FIELD_PATHS for v in _FIELD_VALUES):
        e = ev(auditID=f"f-{n}", user={"username": "u", "uid": "1", "groups": ["g", "h"]},
               objectRef={"resource": "pods", "subresource": "log", "namespace": "d", "name": "p", "apiGroup": "",
                          "apiVersion": "v1", "uid": "9"},
               responseStatus={"code": 200, "reason": "OK", "message": "fine"})
        node: Any = e
        for key in fpath[:-1]:
            node = node[key]
        node[fpath[-1]] = value
        objs.append(e)
    path = write_lines(tmp_path / "types.jsonl", objs)
    fast = assert_same(path, min_vectorised=len(objs) // 3)
    rows = {r["audit_id"]: r for r in fast.tables["audit"].to_pylist()}
    sep = _FIELD_VALUES.index("a\x1f{b")  # in apiVersion (the first field): a string holding a separator
    assert rows[f"f-{sep}"]["audit_version"] == "a\x1f{b"
    res = audit_fast.bulk(path, "types.jsonl", "x")
    assert res is not None and sum(t.num_rows for t in res.batches) >= len(objs) // 3
    assert sep + 1 not in res.python_lines  # ingested as the string it is
    nv = len(_FIELD_VALUES)
    declined = {repr(_FIELD_VALUES[(line - 1) % nv]) for line in res.python_lines if (line - 1) // nv < 18}
    assert declined == {repr(v) for v in _FIELD_VALUES[:7] + _FIELD_VALUES[12:15] + _FIELD_VALUES[18:19]}


def test_service_account_claims_fuzz(tmp_path: Path) -> None:
    """sa_* columns (first string of each claim's array in user.extra) = the per-record path, with look-alike keys,
    empty and several-element arrays, texts holding colons, brackets, commas and quotes."""
    import random

    rnd = random.Random(31)
    keys = [k for _, k in audit_fast._SA_KEYS]
    lookalikes = [f"x.{keys[0]}", f"{keys[2]}-x", "authentication.kubernetes.io", "scopes.example.com/a"]
    texts = ["", "web-1", "node-3", "JTI=7f1c", "a:b", "[x]", "x,y", '"q"', "{}", "a b", keys[1]]
    objs = []
    for n in range(1500):
        extra = {k: [rnd.choice(texts) for _ in range(rnd.randrange(4))]
                 for k in rnd.sample(keys + lookalikes, rnd.randrange(1, 6))}
        objs.append(ev(auditID=f"sa-{n}", user={"username": f"system:serviceaccount:d:s{n}", "extra": extra}))
    path = write_lines(tmp_path / "sa.jsonl", objs)
    fast = assert_same(path, min_vectorised=900)  # texts with quotes are declined (the shape check)
    rows = fast.tables["audit"].to_pylist()
    assert sum(r["sa_pod_name"] not in (None, "") for r in rows) > 300
    assert sum(r["sa_credential_id"] == "" for r in rows) > 30


def test_duplicate_keys_in_annotations_and_user_extra_are_read_as_the_reference(tmp_path: Path) -> None:
    """A forged line may repeat a key: orjson (the reference) keeps the last value, DuckDB's JSON functions the
    first.  Such lines are declined, so ``decision`` and the service-account claims are the reference's."""
    dup_ann = json.dumps(ev(auditID="dup-ann")).replace(
        '"authorization.k8s.io/decision": "allow"',
        '"authorization.k8s.io/decision": "allow", "authorization.k8s.io/decision": "forbid"')
    claim = "authentication.kubernetes.io/pod-name"
    extra = {"user": {"username": "system:serviceaccount:shop:web", "extra": {claim: ["first"]}}}
    dup_extra = json.dumps(ev(auditID="dup-extra", **extra)).replace(
        f'"{claim}": ["first"]', f'"{claim}": ["first"], "{claim}": ["last"]')
    others = {"user": {"username": "u", "extra": {"k": ["1"], "j": ["2"], claim: ["p"], "i": ["3"]}}}
    dup_other = json.dumps(ev(auditID="dup-other", **others)).replace('"i": ["3"]', '"i": ["3"], "k": ["4"]')
    lines = [ev(auditID=f"plain-{i}") for i in range(50)] + [dup_ann, dup_extra, ev(auditID="extra", **extra),
                                                             dup_other, ev(auditID="others", **others)]
    path = write_lines(tmp_path / "dups.jsonl", lines)
    fast = assert_same(path, min_vectorised=51)
    rows = {r["audit_id"]: r for r in fast.tables["audit"].to_pylist()}
    assert rows["dup-ann"]["decision"] == "forbid"
    assert rows["dup-extra"]["sa_pod_name"] == "last" and rows["extra"]["sa_pod_name"] == "first"
    res = audit_fast.bulk(path, "dups.jsonl", "x")
    assert res is not None and sum(t.num_rows for t in res.batches) == 52
    assert sorted(res.python_lines) == [51, 52, 54]  # the three lines repeating a key; "others" is kept
    assert json.loads(rows["dup-other"]["user_extra"])["k"] == ["4"]


_CLAIM = "authentication.kubernetes.io/pod-name"
_ANNOTATIONS = [None, {}, [], ["x"], "allow", 5, {"authorization.k8s.io/decision": "allow"},
                {"authorization.k8s.io/decision": None, "authorization.k8s.io/reason": None},
                {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": {"x": 1}},
                {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": 7},
                {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ["a"]},
                {"authorization.k8s.io/decision": True, "authorization.k8s.io/reason": "r"},
                {"authorization.k8s.io/decision": {"v": "allow"}},
                {"authorization.k8s.io/decision": "allow", "other": {"nested": [1, {"k": None}]}}]
_EXTRAS = [None, {}, [], "x", {_CLAIM: "web-1"}, {_CLAIM: []}, {_CLAIM: [5]}, {_CLAIM: [None]}, {_CLAIM: [["web"]]},
           {_CLAIM: [{"a": "b"}]}, {_CLAIM: {"a": ["b"]}}, {_CLAIM: ["web-1"], "k": "v"}, {_CLAIM: ["a", "b"]},
           {_CLAIM: ["we\"b"]}, {_CLAIM: ["web-1"], "k": [1.5]}]


def test_odd_annotations_and_user_extra_are_read_as_the_reference(tmp_path: Path) -> None:
    """annotations and user.extra of every JSON shape (checked once per distinct text by the consumer): the
    bulk path keeps the plain ones and declines the rest, whose cells the per-record path gives."""
    lines = [ev(auditID=f"plain-{i}") for i in range(50)]
    for n, ann in enumerate(_ANNOTATIONS):
        for k in range(2):  # each text twice: the second is the remembered result
            e = ev(auditID=f"ann-{n}-{k}")
            if ann is None:
                e.pop("annotations", None)
            else:
                e["annotations"] = ann
            lines.append(e)
    for n, extra in enumerate(_EXTRAS):
        for k in range(2):
            e = ev(auditID=f"extra-{n}-{k}", user={"username": "system:serviceaccount:shop:web"})
            if extra is not None:
                e["user"]["extra"] = extra
            lines.append(e)
    path = write_lines(tmp_path / "shapes.jsonl", lines)
    fast = assert_same(path, min_vectorised=50)
    res = audit_fast.bulk(path, "shapes.jsonl", "x")
    assert res is not None and sum(t.num_rows for t in res.batches) > 50
    declined = {json.loads(line)["auditID"] for line in path.read_text().splitlines()
                if path.read_text().splitlines().index(line) + 1 in set(res.python_lines)}
    assert {f"ann-{n}-{k}" for n in (2, 3, 4, 5, 8, 9, 10, 11, 12) for k in (0, 1)} <= declined
    assert {f"extra-{n}-{k}" for n in (2, 3, 4, 6, 7, 8, 9, 10, 11, 14) for k in (0, 1)} <= declined
    kept = {f"ann-{n}-{k}" for n in (0, 1, 6, 7, 13) for k in (0, 1)} | {
        f"extra-{n}-{k}" for n in (0, 1, 5, 12) for k in (0, 1)}
    assert not kept & declined
    rows = {r["audit_id"]: r for r in fast.tables["audit"].to_pylist()}
    assert rows["extra-12-1"]["sa_pod_name"] == "a" and rows["extra-5-0"]["sa_pod_name"] is None
    assert rows["ann-6-1"]["decision"] == "allow" and rows["ann-7-0"]["decision"] is None


_TEXTS = ["", "a", "[", "{", "-", "1", "-1", "x" * 30, "1" * 18, "1" * 19, "-" + "1" * 18, "-" + "1" * 19,
          "1" * 18 + "a", "12345678901234567890abc", "-1234567890123456789x", "a1234567890123456789012", "[]",
          "{}", " [", "\x1f{", "-a234567890123456789", "é" + "1" * 19, "1é" + "1" * 18]


@pytest.mark.parametrize("seed", range(6))
def test_odd_text_rows_agrees_with_the_regex(seed: int) -> None:
    """``bulk_lines.odd_text_rows``: the rows the regex matches (or, in lists, holding a null), on plain,
    sliced, chunked and list columns, with nulls."""
    import random

    from kubeforensics.sources import bulk_lines

    rng = random.Random(seed)
    values = [rng.choice(_TEXTS + [None]) for _ in range(300)]
    want = {i for i, v in enumerate(values) if v is not None and re.match(r"[\[{]|-?\d{19}", v, re.ASCII)}
    col = pa.array(values, pa.string())
    assert set(bulk_lines.odd_text_rows(col).tolist()) == want
    assert set(bulk_lines.odd_text_rows(col.slice(7)).tolist()) == {i - 7 for i in want if i >= 7}
    chunked = pa.chunked_array([col.slice(0, 100), col.slice(100)])
    assert set(bulk_lines.odd_text_rows(chunked).tolist()) == want
    lists = [None if rng.random() < 0.1 else [rng.choice(_TEXTS + [None]) for _ in range(rng.randrange(4))]
             for _ in range(200)]
    want_l = {i for i, vs in enumerate(lists) if vs is not None
              and any(v is None or re.match(r"[\[{]|-?\d{19}", v, re.ASCII) for v in vs)}
    lcol = pa.array(lists, pa.list_(pa.string()))
    assert set(bulk_lines.odd_text_rows(lcol).tolist()) == want_l
    assert set(bulk_lines.odd_text_rows(lcol.slice(5)).tolist()) == {i - 5 for i in want_l if i >= 5}
