"""The DuckDB bulk path of the Falco reader gives the same table as the per-record path.

Differential tests: each file is read twice, once through ``FalcoReader`` (bulk
path first, declined lines record by record) and once through a reader without
``bulk`` (the reference); rows are matched by ``event_id`` and compared value by
value (``output_fields`` JSON text included), the tables must be equal (schema,
row order, line numbers), and accounting and quarantine (line and reason) agree.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubeforensics import redact
from kubeforensics.sources import falco_fast
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.falco import FalcoReader
from tests.conftest import ROOT, conformance_files
from tests.sources import bulk_helpers
from tests.sources.bulk_helpers import (
    SCAN_TEXTS,
    assert_numbered,
    assert_same_tables,
    assert_scan_plain_agrees,
    bulk_with_wrong_mapping,
    ingest_peak_mb,
    write_lines,
    write_numbered,
)
from tests.sources.test_falco import K8S_AUDIT, NULLS, SIDEKICK, TOKEN

SAMPLES = sorted((ROOT / "sample_data").glob("*/falco/falco.json"))


class PlainFalcoReader(FalcoReader):
    """The reference: the same reader without its bulk path."""

    bulk = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def bulk_even_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(falco_fast, "MIN_BULK_BYTES", 0)


def read_both(path: Path, fmt: str | None = "falco") -> tuple[ReadResult, ReadResult]:
    return bulk_helpers.read_both(path, "falco", FalcoReader(), PlainFalcoReader(), fmt)


def assert_same(path: Path, *, min_vectorised: int = 0, fmt: str | None = "falco") -> ReadResult:
    """Bulk + per-record equals per-record alone: accounting, quarantine, every value of every table."""
    return assert_same_tables(*read_both(path, fmt), min_vectorised=min_vectorised, same_order=True)


def sample_alerts() -> list[dict[str, Any]]:
    return [json.loads(line) for p in SAMPLES for line in p.read_text().splitlines() if line.strip()]


def varied(n: int, seed: int = 7) -> list[str]:
    """``n`` realistic alerts: the sample alerts (syscall and k8s_audit) repeated with varied times, pids,
    container ids, command lines and messages, output_fields keys sorted as Falco writes them."""
    rng = random.Random(seed)
    base = sample_alerts()
    out = []
    t0 = 1_792_996_471_000_000_000
    for k in range(n):
        a = copy.deepcopy(base[k % len(base)])
        t = t0 + k * 1_234_567 + rng.randrange(1000)
        s, ns = divmod(t, 10**9)
        a["time"] = np.datetime_as_string(np.datetime64(s, "s")) + f".{ns:09d}Z"
        of = a.get("output_fields") or {}
        if "evt.time" in of:
            of["evt.time"] = t
        if "proc.cmdline" in of:
            of["proc.pid"] = rng.randrange(1, 4_000_000)
            if k % 7 == 0:
                of["proc.cmdline"] += f" --retry {k % 5}"
            if k % 11 == 0:
                of["proc.cmdline"] += ' -c "echo quoted" \\ back'
        if isinstance(of.get("container.id"), str) and of["container.id"] != "host":
            of["container.id"] = f"{rng.randrange(300) * 2654435761 % 16**12:012x}"
        if k % 13 == 0:
            a["uuid"] = f"{k:08x}-42f3-4f7a-9d1b-5a9e1e6f1c11"  # a falcosidekick payload
        a["output"] += f" seq={k}"
        if of:
            a["output_fields"] = dict(sorted(of.items()))
        out.append(json.dumps(a, separators=(",", ":")))
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~6 MB of varied realistic alerts (5,000 lines), above the bulk path's size threshold."""
    path = tmp_path_factory.mktemp("falco") / "alerts.json"
    path.write_text("\n".join(varied(5000)) + "\n")
    assert path.stat().st_size > 1024 * 1024
    return path


# --- real and realistic data -------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.parent.parent.name)
def test_sample_data_files(path: Path) -> None:
    res = assert_same(path)
    acc = res.account
    assert acc.quarantined == 0 and acc.notes["vectorised"] == acc.records > 15  # every sample alert is ordinary


def test_sample_data_k8s_audit_alerts_are_vectorised_with_their_secret_like_key_redacted() -> None:
    path = ROOT / "sample_data" / "rbac-persistence" / "falco" / "falco.json"
    res = assert_same(path)
    ka = res.tables["alerts"].filter(pa.compute.equal(res.tables["alerts"].column("falco_source"), "k8s_audit"))
    assert ka.num_rows >= 3
    fields = [json.loads(t) for t in ka.column("output_fields").to_pylist()]
    assert all(f["ka.auth.decision"] == redact.MARK for f in fields)


@pytest.mark.parametrize("path", conformance_files("falco"), ids=lambda p: p.name)
def test_conformance_files(path: Path, conformance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real upstream Falco output, as it is and replicated past the size threshold."""
    res = assert_same(path)
    assert res.account.notes["vectorised"] == res.account.records > 0
    monkeypatch.setattr(falco_fast, "MIN_BULK_BYTES", 1024 * 1024)
    raw = path.read_bytes()
    raw += b"" if raw.endswith(b"\n") else b"\n"
    copies = falco_fast.MIN_BULK_BYTES // len(raw) + 2
    big = tmp_path / path.name
    big.write_bytes(raw * copies)
    n = raw.count(b"\n") * copies
    res = assert_same(big, min_vectorised=n)
    assert res.account.records == n and res.account.quarantined == 0
    assert falco_fast.bulk(big, "b", "x") is not None


def test_large_realistic_file_is_vectorised(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(falco_fast, "BATCH_ROWS", 1000)
    res = falco_fast.bulk(big, "a", "x")
    assert res is not None
    table = pa.concat_tables(list(res.batches))
    assert res.complete and not res.python_lines and table.num_rows == 5000
    fast = assert_same(big, min_vectorised=5000)
    t = fast.tables["alerts"]
    assert set(t.column("falco_source").to_pylist()) == {"syscall", "k8s_audit"}
    assert t.column("uuid").null_count < 5000 - 300
    assert any('\\"echo quoted\\" \\\\ back' in (c or "") for c in t.column("output_fields").to_pylist())


def test_large_realistic_file_gzip_crlf_bom_and_blank_lines(big: Path, tmp_path: Path) -> None:
    lines = big.read_bytes().split(b"\n")[:3000]
    lines = [b"", *lines[:1200], b"   ", b"", *lines[1200:]]
    path = tmp_path / "alerts.json.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"\r\n".join(lines)))
    res = assert_same(path, min_vectorised=2990)
    assert res.tables["alerts"].column("line").to_pylist()[:2] == [2, 3]


# --- edge cases, one per line ------------------------------------------------------------------------

BASE: dict[str, Any] = json.loads(SAMPLES[1].read_text().splitlines()[0])  # a container-escape syscall alert
T = "2026-10-26T06:34:31.598363867Z"


def al(**changes: Any) -> dict[str, Any]:
    """The base alert with top-level fields changed (``...`` removes one)."""
    a = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is ...:
            a.pop(k, None)
        else:
            a[k] = v
    return a


def of(named: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """The base alert with output_fields entries changed (``named`` and ``changes``, ``a__b`` for ``a.b``;
    ``...`` removes one; keys stay sorted)."""
    fields = copy.deepcopy(BASE["output_fields"])
    for k, v in {**(named or {}), **changes}.items():
        k = k.replace("__", ".")
        if v is ...:
            fields.pop(k, None)
        else:
            fields[k] = v
    return al(output_fields=dict(sorted(fields.items())))


def ofd(fields: dict[str, Any]) -> dict[str, Any]:
    return al(output_fields=fields)


EDGE_CASES: list[Any] = [
    al(), SIDEKICK, K8S_AUDIT, NULLS,
    {**K8S_AUDIT, "output_fields": {**K8S_AUDIT["output_fields"], "ka.target.namespace": None}},
    {**K8S_AUDIT, "output_fields": {**K8S_AUDIT["output_fields"], "ka.target.resource": "pod", "k8s.ns.name": ""}},
    {**K8S_AUDIT, "output_fields": {**K8S_AUDIT["output_fields"], "ka.target.resource": "secrets"}},
    # time
    al(time=...), al(time=None), al(time=""), al(time="2026-10-26T08:34:31.5+02:00"), al(time="2026-10-26T06:34:31Z"),
    al(time="2026-10-26T06:34:31.1Z"), al(time="2026-02-30T06:34:31Z"), al(time="yesterday"), al(time=1792996471),
    al(time=" " + T), al(time="2026-10-26 06:34:31Z"), al(time="2026-10-26T06:34:31.1234567891Z"),
    {**al(time=...), "output_fields": {"jevt.time.iso8601": "2026-03-02T14:02:11.000Z"}},
    {**al(time=...), "output_fields": {"proc.name": "x"}},
    # priority
    al(priority="notice"), al(priority="NOTICE"), al(priority="Info"), al(priority="informational"),
    al(priority="warn"), al(priority="err"), al(priority="crit"), al(priority="emerg"), al(priority="Alert"),
    al(priority="Debug"), al(priority=" Warning "), al(priority="Severe"), al(priority=""), al(priority=None),
    al(priority=...), al(priority=3), al(priority={"a": 1}), al(priority="W\u0430rning"), al(priority="\u0130nfo"),
    al(priority="DEBUG\t"), al(priority="in fo"),
    # rule, output, other text fields
    al(rule=...), al(rule=None), al(rule=""), al(rule=0), al(rule=1.5), al(rule=True), al(rule=["x"]),
    al(rule=12345678901234567890), al(rule="[odd] rule name"), al(rule="{x"), al(hostname=...), al(hostname=7),
    al(hostname={"a": 1}), al(source=None), al(source="k8s_audit"), al(source=1e300), al(uuid=5), al(uuid="NaN"),
    al(uuid=-2.5e-07), al(output=...), al(output=None), al(output=""), al(output="caf\u00e9 \u017fecret"),
    al(output="curl -H 'Authorization: Bearer " + TOKEN + "'"), al(output="password=hunter2"),
    al(output="x" * 5000), al(output=[1]),
    {"rule": "r", "priority": "Notice", "time": T},  # neither output nor output_fields: not an alert
    {"rule": "r", "priority": "Notice", "time": T, "output": None},
    {"rule": "r", "priority": "Notice", "time": T, "output_fields": None},
    {"rule": "r", "priority": "Notice", "time": T, "output_fields": {}},
    {"rule": "r", "priority": "Notice", "time": T, "output": "o", "extra": {"nested": [1, {"a": None}]}},
    # tags
    al(tags=...), al(tags=None), al(tags=[]), al(tags=["a", "b"]), al(tags="single"), al(tags=["a", None]),
    al(tags=["a", 5]), al(tags=["a", 1.5]), al(tags=[{"a": 1}]), al(tags=['quo"te']), al(tags=["caf\u00e9"]),
    al(tags={"a": 1}), al(tags=5),
    # output_fields: shape and types
    al(output_fields=...), al(output_fields=None), al(output_fields={}), al(output_fields=[1, 2]),
    al(output_fields="x"), al(output_fields=5),
    of(proc__name=None), of(proc__name=5), of(proc__name=1.5), of(proc__name=True), of(proc__name={"a": 1}),
    of(proc__name=[1]), of(proc__name=""), of(proc__tty=1.5), of(proc__tty=1e-07), of(proc__tty=-0.0),
    of(proc__tty=12345678901234567890123), of(proc__tty=18446744073709551615), of(proc__tty=-9223372036854775808),
    of(proc__tty=-12345678901234567890), of(evt__time=9223372036854775807), of(other={"nested": {"x": 1}}),
    of(other=["a", "b"]), of(other=[]), of(other={}), of(other=None), of(other=False),
    of(proc__cmdline='sh -c "echo \\"hi\\"" \\ back\tslash\nnew'), of(proc__cmdline="a\u000bb\u001fc\u0001d"),
    of(proc__cmdline="caf\u00e9"), of(proc__cmdline="x\u2028y"), of(proc__cmdline="\U0001f600"),
    of(proc__cmdline="[not json] {x}"), of(proc__cmdline=":1.5e3 :-0, :nan :Infinity"),
    of({"weird\u001fkey": "v"}), of({"k\"ey": "v"}), of({"caf\u00e9": "v"}), of({"": "empty key"}),
    ofd({"z.last": "1", "a.first": "2", "proc.name": "unsorted"}), ofd({"B": 1, "a": 2, "_": 3}),
    # output_fields: values the columns read
    of(proc__pid="42"), of(proc__pid=" 42"), of(proc__pid="4_2"), of(proc__pid="+42"), of(proc__pid="007"),
    of(proc__pid=42.0), of(proc__pid=1.5), of(proc__pid=True), of(proc__pid=""), of(proc__pid=None),
    of(proc__pid=-1), of(proc__pid="-0"), of(proc__pid=1234567890123456789), of(proc__pid=18446744073709551615),
    of(proc__pid="forty-two"), of(container__id="docker://3AD7B26DED6D "), of(container__id=""),
    of(container__id="containerd://"), of(container__id=5), of(container__id=None),
    of(container__image__repository="", container__image__tag="1"), of(container__image__tag=""),
    of(container__image__tag=None), of(container__image__repository=None, container__image="busybox"),
    of(container__image__repository=None, container__image__tag=None, container__image=None),
    of(k8s__ns__name="", k8s__pod__name=""),
    of(ka__target__resource="pods", ka__target__namespace="ns", ka__target__name="p", k8s__ns__name=None,
       k8s__pod__name=None),
    of(ka__target__resource="pods", k8s__ns__name="", k8s__pod__name="", ka__target__namespace="",
       ka__target__name=None),
    of(ka__target__resource="pod", ka__target__name="p"), of(ka__response__code=101), of(ka__uri=None),
    of(ka__uri="/api?token=abcdef0123456789"), of(ka__verb=True), of(user__name=0),
    # output_fields: secrets (keys and values), special keys
    of(proc__cmdline="curl -H 'Authorization: Bearer " + TOKEN + "'"), of(proc__cmdline="mysql --password hunter2"),
    of(proc__cmdline='x authorization\\": y'), of(fd__name="/var/run/secrets/kubernetes.io/serviceaccount/token"),
    of(fd__name="/etc/passwd"), of(fd__name="https://u:pw@host/x"), of(proc__env="DB_PASSWORD=x"),
    of({"ka.auth.decision": "allow"}), of({"ka.auth.decision": None}), of({"ka.auth.decision": 1}),
    of({"my.token": "abc"}), of({"client-certificate-data": "LS0x"}), of({"bearerToken": "x"}),
    of({"user.password_file": "/x"}), of(name="DB_PASSWORD", value="hunter2"), of(name="x", value="y"),
    of(kind="Secret"), of(**{"kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Secret"}'}),
    of({"evt.arg.data": "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----"}),
    of({"x": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop"}),
    # raw lines
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"a":1,"a":2}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"b":"x","a":"y","b":"z"}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"k":"to\\u006ben \\u000b"}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"k\\u006b":"\\/"}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"k":-0}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"k":1E2}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"k":1e400}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","output_fields":{"proc.pid":NaN}}',
    '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o\\u0000x"}',
]


def test_edge_cases_one_per_line(tmp_path: Path) -> None:
    res = assert_same(write_lines(tmp_path / "edge.json", EDGE_CASES), min_vectorised=100)
    assert res.account.quarantined >= 15  # bad times, priorities, wrong types


def test_edge_cases_each_in_a_file_of_ordinary_alerts(tmp_path: Path) -> None:
    """Each odd line among ordinary ones, so that a DuckDB error on it shows where the bulk path stops."""
    good = json.dumps(al())
    for n, odd in enumerate(EDGE_CASES):
        line = odd if isinstance(odd, str) else json.dumps(odd)
        path = tmp_path / f"edge-{n}.json"
        path.write_text("\n".join([good] * 5 + [line] + [good] * 5) + "\n")
        assert_same(path, min_vectorised=5)


def test_edge_cases_unforced_with_other_formats_mixed_in(tmp_path: Path) -> None:
    audit = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete",
             "verb": "get", "requestURI": "/api", "requestReceivedTimestamp": T}
    tetragon = {"process_exec": {"process": {"pid": 1, "binary": "/bin/sh"}}, "node_name": "n", "time": T}
    objs = [al()] * 40 + EDGE_CASES + [audit, tetragon] + [al()] * 10
    res = assert_same(write_lines(tmp_path / "mixed.json", objs), fmt=None, min_vectorised=150)
    assert res.account.format == "falco"
    assert res.account.notes["routed to audit"] == 1 and res.account.notes["routed to tetragon"] == 1


def test_bulk_result_accounting(tmp_path: Path) -> None:
    objs = [al(), al(priority="Severe"), K8S_AUDIT, al(time=...), of(proc__pid=1.5), SIDEKICK,
            ofd({"b": 1, "a": 2}), ofd({"x": {"nested": 1}})]
    res = falco_fast.bulk(write_lines(tmp_path / "d.json", objs), "d.json", "abc")
    assert res is not None
    assert res.records == 0 and not res.complete  # nothing is known before the batches are read
    table = pa.concat_tables(list(res.batches))
    assert res.complete and res.next_line == 9
    assert res.python_lines == {2, 4, 5, 8}
    assert table.column("line").to_pylist() == [1, 3, 6, 7] and res.records == 4
    rows = table.to_pylist()
    assert rows[0]["event_id"] == "abc:1" and rows[0]["evidence"] == "d.json"
    assert rows[0]["priority"] == "Notice" and rows[0]["priority_rank"] == 5
    assert rows[1]["namespace"] == "payments" and rows[1]["pod"] == "db-0"  # k8s_audit: from ka.target
    assert TOKEN not in rows[2]["output"] and TOKEN not in rows[2]["proc_cmdline"]
    assert TOKEN not in rows[2]["output_fields"] and rows[2]["uuid"] == SIDEKICK["uuid"]
    assert rows[3]["output_fields"] == '{"a":2,"b":1}'  # sorted as orjson sorts


def test_nan_in_a_field_not_read_is_ingested_by_design(tmp_path: Path) -> None:
    """The one documented difference: JSON orjson refuses (NaN) in a field the table does not read."""
    line = '{"rule":"r","priority":"Notice","time":"' + T + '","output":"o","unread":NaN}'
    fast, ref = read_both(write_lines(tmp_path / "nan.json", [al(), line, al()]))
    assert [q.line for q in ref.quarantine] == [2] and not fast.quarantine
    assert fast.tables["alerts"].column("output").to_pylist()[1] == "o"


# --- hostile input -----------------------------------------------------------------------------------


def _ordinary(n: int) -> list[str]:
    return varied(n, seed=n)


HOSTILE: dict[str, bytes] = {
    "malformed": b'{"rule": "r", "priority": ',
    "not-json": b"hello world",
    "array-line": b"[1, 2, 3]",
    "string-line": b'"just a string"',
    "duplicate-top": json.dumps(al())[:-1].encode() + b', "rule": "second"}',
    "invalid-utf8": json.dumps(al(output="XX")).encode().replace(b"XX", b"\xff\xfe"),
    "invalid-utf8-fields": json.dumps(of(proc__name="XX")).encode().replace(b"XX", b"\xc3\x28"),
    "lone-surrogate": json.dumps(of(proc__name="XX")).encode().replace(b"XX", b"\\ud800"),
    "two-objects": json.dumps(al()).encode() * 2,
    "nan-read": b'{"rule":"r","priority":"Notice","time":"' + T.encode() + b'","output":NaN}',
    "tags-object": json.dumps(al(tags={"a": [1]})).encode(),
    "deep": b'{"rule":"r","priority":"Notice","output":"o","output_fields":{"a":' + b"[" * 300 + b"]" * 300 + b"}}",
    "empty-object": b"{}",
    "bare-cr": json.dumps(al()).encode() + b"\r" + json.dumps(al()).encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("where", [0, 150, 299])
def test_hostile_line_anywhere(tmp_path: Path, name: str, where: int) -> None:
    lines = [line.encode() for line in _ordinary(300)]
    lines[where] = HOSTILE[name]
    path = tmp_path / "h.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = assert_same(path)
    assert res.account.records >= 300  # a JSON array line counts its elements


def test_hostile_lines_after_batches_were_streamed(big: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batches DuckDB streamed before a line it refuses stand; the rest is read record by record."""
    monkeypatch.setattr(falco_fast, "BATCH_ROWS", 500)
    lines = big.read_bytes().rstrip(b"\n").split(b"\n") * 4  # ~24 MB: DuckDB reads ~10 MB ahead
    bad = [v for v in HOSTILE.values() if v.startswith(b"{")]  # a line that is no object: see below
    out = lines[:19_000] + bad + lines[19_000:] + [lines[-1][:-40]]  # and a truncated last line
    path = tmp_path / "h.json"
    path.write_bytes(b"\n".join(out))  # no final newline
    res = assert_same(path, min_vectorised=5000)
    assert res.account.quarantined >= 8
    assert res.quarantine[-1].line == len(out)


def test_truncated_last_line_and_gzip(tmp_path: Path) -> None:
    data = ("\n".join(_ordinary(400)) + "\n").encode()
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[:-200])  # the last record is cut short, no newline
    res = assert_same(cut)  # a small file: DuckDB fails on its first buffer, before any batch
    assert [q.line for q in res.quarantine] == [400]
    gz = tmp_path / "cut.json.gz"
    gz.write_bytes(gzip.compress(data)[:-500])  # a truncated gzip stream
    res = assert_same(gz)
    assert res.account.quarantined == 1 and "compressed stream is damaged" in res.quarantine[0].reason


def test_huge_line_goes_record_by_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(falco_fast, "MAX_OBJECT_BYTES", 64 * 1024)
    lines = _ordinary(200)
    lines[120] = json.dumps(of(proc__cmdline="a" * 200_000))
    path = tmp_path / "huge.json"
    path.write_text("\n".join(lines) + "\n")
    res = assert_same(path)
    assert res.account.ingested == 200
    assert res.tables["alerts"].column("proc_cmdline").to_pylist()[120] == "a" * 200_000


@pytest.mark.parametrize(
    "name, newline, bom, blanks",
    [("crlf.json", "\r\n", False, False), ("bom.json", "\n", True, False), ("blank.json", "\n", False, True),
     ("all.json.gz", "\r\n", True, True), ("plain.json.gz", "\n", False, False)],
)
def test_line_numbers_with_crlf_bom_blank_lines_and_gzip(
    tmp_path: Path, name: str, newline: str, bom: bool, blanks: bool
) -> None:
    lines = [json.dumps(al(uuid=f"id-{n}")) for n in range(30)]
    path = write_numbered(tmp_path / name, lines, newline=newline, bom=bom, blanks=blanks)
    res = assert_same(path, min_vectorised=30)
    assert_numbered(res.tables["alerts"].to_pylist(), "uuid", blanks)


@pytest.mark.parametrize("name", ["f.json", "f.json.gz"])
@pytest.mark.parametrize("shift", ["skipped-line", "short-count", "long-count"])
def test_rows_that_do_not_map_to_their_lines_stop_the_bulk_path(
    big: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: str, name: str
) -> None:
    """A wrong row -> line mapping is caught before the batch is yielded; the lines from there go record by record."""
    path = tmp_path / name
    data = b"\n".join(big.read_bytes().splitlines()[:3000]) + b"\n"
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    vectorised = bulk_with_wrong_mapping(falco_fast, path, shift, monkeypatch)
    fast = assert_same(path, min_vectorised=vectorised)
    assert fast.account.records == 3000 and fast.account.quarantined == 0


def test_small_and_unsuitable_files_go_record_by_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(falco_fast, "MIN_BULK_BYTES", 1024 * 1024)
    small = write_lines(tmp_path / "small.json", [al()] * 10)
    assert falco_fast.bulk(small, "s", "x") is None
    assert read_file(small, "falco").account.notes["vectorised"] == 0
    monkeypatch.setattr(falco_fast, "MIN_BULK_BYTES", 0)
    arr = tmp_path / "array.json"
    arr.write_text(json.dumps([al(), al()]))
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(al(), indent=2))
    empty = tmp_path / "empty.json"
    empty.write_text("\n\n")
    for p in (arr, pretty, empty):
        assert falco_fast.bulk(p, p.name, "x") is None
    for p in (arr, pretty):
        assert_same(p)


def test_lines_that_are_no_objects_send_the_file_record_by_record(big: Path, tmp_path: Path) -> None:
    lines = big.read_bytes().splitlines()[:2000]
    path = tmp_path / "arr.json"
    path.write_bytes(b"\n".join(lines[:1000] + [b"[1, 2]", b'"just a string"'] + lines[1000:]) + b"\n")
    res = falco_fast.bulk(path, "arr.json", "x")  # the line scan finds them, while DuckDB reads
    assert res is not None
    assert list(res.batches) == [] and not res.complete and res.next_line == 1
    fast = assert_same(path)
    assert [q.line for q in fast.quarantine] == [1001, 1001, 1002]


# --- the RE2 pre-checks against kubeforensics.redact ------------------------------------------------

#: Secret-like words and near misses, in keys and values.
WORDS = [
    "Bearer abcdefghijkl", "basic", "TOKEN", "x-passwd", "Secret", "api_key", "apikey", "API-KEY", "access_key",
    "private-key", "credentials", "client-key-data", "client-certificate-data", "auth", "Authorization: x",
    'authorization" = x', "cookie=1", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop",
    "https://u:p@host", "s3://bucket@x", "-----BEGIN RSA PRIVATE KEY-----", "LS0tLS1CRUdJTiBx", "pass",
    "bearerToken", "kubectl.kubernetes.io/last-applied-configuration", "name", "value", "kind", "Secret", "id",
    "proc.cmdline", "fd.name", "ka.auth.decision", "k.auth-id", "user.token_ttl", "tokens", "x.secret.path",
    "--password", "hunter2", "caf\u00e9", "\u017fecret", "\u212aey", "plain text", "a=b", "x\ny", 'q"uote',
]


def _matches(pattern: str, texts: list[str]) -> list[bool]:
    import duckdb

    con = duckdb.connect()
    return [bool(r[0]) for r in con.execute("SELECT regexp_matches(unnest(?), ?)", [texts, pattern]).fetchall()]


def _random_fields(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    plain = ["proc.cmdline", "fd.name", "k8s.ns.name", "curl http://10.0.0.1/", "/etc/shadow", "a=b", "x y", ""]
    objs: list[dict[str, Any]] = [{w: "v"} for w in WORDS] + [{"k": w} for w in WORDS]
    objs += [{"name": a, "value": b} for a in WORDS[:12] for b in ("hunter2", "x")]
    for _ in range(n):
        objs.append({rng.choice(WORDS + plain * 4) + rng.choice(["", ".x", "_file", "-id"]):
                     rng.choice([" ".join(rng.sample(WORDS + plain * 4, 2)), None, 7, True])
                     for _ in range(rng.randrange(1, 4))})
    return objs


def test_fields_flag_is_a_superset_of_what_text_redaction_changes() -> None:
    """output_fields whose JSON text the flag passes hold no string ``redact.text`` changes (keys are
    judged by ``redact._secret_key`` itself, per distinct key list)."""
    objs = _random_fields(3000, 5)
    texts = [json.dumps(o, separators=(",", ":"), ensure_ascii=False) for o in objs]
    passed = 0
    for obj, flag in zip(objs, _matches(falco_fast._FIELDS_FLAG_RE2, texts)):
        if not flag:
            passed += 1
            assert all(redact.text(v) == v for v in obj.values() if isinstance(v, str)), obj
    assert passed > 100  # the check does let ordinary fields through


def test_secret_like_keys_and_values_in_output_fields(tmp_path: Path) -> None:
    """Random output_fields of secret-like and ordinary keys and values, sorted and not: the bulk path's
    cells (kept, values of secret-like keys marked in the text, or the reference function) equal the
    reference's."""
    objs = [ofd(dict(sorted(o.items())) if n % 3 else o) for n, o in enumerate(_random_fields(1500, 9))]
    res = assert_same(write_lines(tmp_path / "keys.json", objs), min_vectorised=1400)
    marked = [t for t in res.tables["alerts"].column("output_fields").to_pylist() if t and redact.MARK in t]
    assert len(marked) > 300


def test_redact_flag_is_a_superset_of_what_redaction_changes() -> None:
    rng = random.Random(6)
    texts = WORDS + [" ".join(rng.sample(WORDS, 3)) for _ in range(2000)]
    for text, flag in zip(texts, _matches(falco_fast._REDACT_RE2, texts)):
        if not flag:
            assert redact.text(text) == text, text


@pytest.mark.parametrize("text, flat", [
    ('{"a":"x","b":1,"c":null,"d":true,"e":false}', True), ('{"a":"x\\"y\\\\"}', True),
    ('{"a":1.5}', False), ('{"a":1e5}', False), ('{"a":-0}', False), ('{"a":[1]}', False), ('{"a":{}}', False),
    ('{"a":12345678901234567890}', False), ('{"a":9223372036854775807}', True), ('{"a":-922337203685477580}', True),
    ('{"a":-9223372036854775808}', False), ('{"a":"[x]","b":"{y}"}', True), ('"x"', False), ("5", False),
    ('"{x}"', False), ('{"a":"x:1.5","b":"y:-0}"}', True), ('{"a":NaN}', False), ('{"a":-Infinity}', False),
])
def test_flat_shape(text: str, flat: bool) -> None:
    """Which (valid, compact) JSON texts are flat objects: the full pattern, and the consumer's quick test."""
    assert _matches(falco_fast._FLAT_RE2, [text]) == [flat]
    simple = (text.startswith("{") and "{" not in text[1:] and "[" not in text
              and not _matches(falco_fast._NOT_INT_RE2, [text])[0])
    assert not simple or flat  # the quick test never passes what the full pattern refuses


def test_duckdb_writes_escapes_as_orjson_except_those_it_sends_to_python(tmp_path: Path) -> None:
    """DuckDB's compact JSON text of output_fields equals orjson's for every ASCII character, unless
    :data:`falco_fast._ESC_RE2` sends the cell to the reference function."""
    import duckdb
    import orjson

    chars = [chr(c) for c in range(128)]
    path = write_lines(tmp_path / "c.json", [{"of": {"k": c}} for c in chars])
    got = [r[0] for r in duckdb.connect().sql(
        f"SELECT CAST(of AS VARCHAR) FROM read_ndjson('{path}', columns={{'of': 'JSON'}}, records=true)").fetchall()]
    escaped = _matches(falco_fast._ESC_RE2, got)
    for c, text, esc in zip(chars, got, escaped):
        assert esc or text == orjson.dumps({"k": c}).decode(), (c, text)


# --- streaming ----------------------------------------------------------------------------------------


def test_batches_stream(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows come out in batches of at most BATCH_ROWS, the accounting advancing batch by batch."""
    monkeypatch.setattr(falco_fast, "BATCH_ROWS", 500)
    res = falco_fast.bulk(big, "f.json", "x")
    assert res is not None
    seen = []
    for table in res.batches:
        assert table.num_rows <= 500
        seen.append((res.records, res.next_line))
    assert len(seen) >= 10 and seen == sorted(seen) and res.complete


def test_abandoned_stream_stops_its_query_thread(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(falco_fast, "BATCH_ROWS", 500)
    res = falco_fast.bulk(big, "f.json", "x")
    assert res is not None
    batches = res.batches
    assert next(iter(batches)).num_rows <= 500
    batches.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name == "falco-bulk"]
    assert not res.complete


def test_ingest_memory_does_not_grow_with_the_file(big: Path, tmp_path: Path) -> None:
    """Peak RSS of a case ingest (measured in a small launcher): a 4x larger file needs what the small one needs."""
    raw = big.read_bytes()
    peaks = {}
    for copies in (6, 24):  # ~36 MB and ~144 MB (DuckDB's buffers settle past ~30 MB)
        path = tmp_path / f"falco-{copies}.json"
        path.write_bytes(raw * copies)
        peaks[copies] = ingest_peak_mb(path, raw.count(b"\n") * copies, module="falco_fast")
        path.unlink()
    assert peaks[24] - peaks[6] < 60, peaks


@pytest.mark.parametrize("text", SCAN_TEXTS)
def test_scan_plain_agrees_with_scan_lines(tmp_path: Path, text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_scan_plain_agrees(falco_fast, tmp_path / "s.json", text, monkeypatch)
