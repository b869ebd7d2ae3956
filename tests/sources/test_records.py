"""The file-handling engine (sources/records.py + base.FileIngest) on malformed and awkward input.

Every case checks the accounting (records == ingested + quarantined), that the
reasons say what was wrong and where, and that nothing raises a traceback.
The readers used are the Falco, Events and objects readers only.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from kubeforensics.errors import UnknownFormatError
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.falco import FalcoReader
from kubeforensics.sources.k8s_events import K8sEventsReader
from kubeforensics.sources.k8s_objects import K8sObjectsReader
from kubeforensics.sources.records import BOM

READERS = {"falco": FalcoReader(), "k8s-events": K8sEventsReader(), "k8s-objects": K8sObjectsReader()}


def alert(n: int, rnd: random.Random | None = None) -> dict:
    """A realistic Falco alert; ``rnd`` adds an incompressible field (for gzip truncation)."""
    out = {
        "hostname": "worker-1",
        "output": f"12:00:{n % 60:02d}.000000000: Warning An open was seen (command=cat /etc/shadow n={n})",
        "priority": "Warning",
        "rule": "Read sensitive file untrusted",
        "source": "syscall",
        "tags": ["filesystem"],
        "time": f"2026-03-02T12:{n // 60 % 60:02d}:{n % 60:02d}.{n:09d}Z",
        "output_fields": {"proc.cmdline": "cat /etc/shadow", "proc.pid": 1000 + n},
    }
    if rnd is not None:
        out["output_fields"]["container.id"] = f"{rnd.getrandbits(48):012x}"
        out["output_fields"]["fd.name"] = f"/tmp/{rnd.getrandbits(128):032x}"
    return out


def line(n: int, rnd: random.Random | None = None) -> bytes:
    return json.dumps(alert(n, rnd)).encode()


def read(path: Path, fmt: str | None = None) -> ReadResult:
    res = read_file(path, fmt, readers=READERS)
    acc = res.account
    assert acc.records == acc.ingested + acc.quarantined, acc
    assert acc.quarantined == len(res.quarantine)
    assert sum(acc.rows.values()) == acc.ingested
    return res


def reasons(res: ReadResult) -> dict[int, str]:
    return {q.line: q.reason for q in res.quarantine}


def test_truncated_last_line(tmp_path: Path) -> None:
    p = tmp_path / "falco.json"
    p.write_bytes(b"\n".join(line(n) for n in range(3)) + b"\n" + line(3)[:57])
    res = read(p)
    assert (res.account.format, res.account.records, res.account.ingested) == ("falco", 4, 3)
    assert reasons(res)[4].startswith("invalid JSON: unexpected end of data")
    assert res.quarantine[0].raw == line(3)[:57]  # the damaged bytes are kept for the analyst


def test_invalid_utf8_line(tmp_path: Path) -> None:
    bad = line(1).replace(b"cat /etc/shadow", b"cat /etc/\xff\xfeshadow", 1)
    p = tmp_path / "falco.json"
    p.write_bytes(line(0) + b"\n" + bad + b"\n" + line(2) + b"\n")
    res = read(p)
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (3, 2, 1)
    at = bad.index(b"\xff")
    assert reasons(res)[2] == f"invalid UTF-8 at byte {at}"
    assert res.frame()["line"].tolist() == [1, 3]


def test_bom_and_crlf_json_lines(tmp_path: Path) -> None:
    p = tmp_path / "falco.json"
    p.write_bytes(BOM + b"\r\n".join(line(n) for n in range(5)) + b"\r\n")
    res = read(p)
    assert (res.account.format, res.account.ingested, res.account.quarantined) == ("falco", 5, 0)
    df = res.frame()
    assert df["line"].tolist() == [1, 2, 3, 4, 5]
    assert not df["output"].str.contains("\r").any()
    assert df["rule"].iloc[0] == "Read sensitive file untrusted"  # the BOM did not spoil the first record


def pod(name: str) -> dict:
    """A PodList item as kubectl prints it: no kind of its own."""
    return {
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "creationTimestamp": "2026-03-02T10:00:00Z"},
        "spec": {"nodeName": "worker-1", "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7"},
    }


@pytest.mark.parametrize("bom", [b"", BOM], ids=["plain", "bom"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_pretty_printed_pod_list(tmp_path: Path, bom: bytes, newline: str) -> None:
    doc = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
           "items": [pod("web-a"), pod("web-b"), "not-a-pod"]}
    p = tmp_path / "pods.json"
    p.write_bytes(bom + json.dumps(doc, indent=4).replace("\n", newline).encode())
    res = read(p)
    assert (res.account.format, res.account.records, res.account.ingested) == ("k8s-objects", 3, 2)
    df = res.frame()
    assert df["kind"].tolist() == ["Pod", "Pod"]  # kind injected from the List
    assert df["name"].tolist() == ["web-a", "web-b"]
    assert df["event_id"].str.endswith(":1:0").iloc[0] and df["event_id"].str.endswith(":1:1").iloc[1]
    assert res.quarantine[0].reason == "item 2 of PodList is not an object"
    assert res.quarantine[0].index == 2


def test_json_array_file(tmp_path: Path) -> None:
    p = tmp_path / "alerts.json"
    p.write_text(json.dumps([alert(0), alert(1), 42, [alert(2)]], indent=2))
    res = read(p)
    assert (res.account.format, res.account.records, res.account.ingested) == ("falco", 4, 2)
    assert [q.reason for q in res.quarantine] == [
        "element 2 of the JSON array is int, not an object",
        "element 3 of the JSON array is list, not an object",
    ]
    assert res.frame()["event_id"].nunique() == 2


def test_kind_list_wrapper_mixing_formats(tmp_path: Path) -> None:
    event = {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e1", "namespace": "shop"},
             "involvedObject": {"kind": "Pod", "name": "web-a", "namespace": "shop"}, "reason": "Killing",
             "message": "Stopping container app", "firstTimestamp": "2026-03-02T10:05:00Z", "count": 1}
    p = tmp_path / "dump.json"
    p.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": [{**pod("web-a"), "kind": "Pod"}, event]}))
    res = read(p, None)
    # the first record decides the file's format; the Event is routed to its own reader and counted
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (2, 2, 0)
    assert res.account.rows == {"objects": 1, "k8s_events": 1}
    assert sum(res.account.notes.values()) == 1


def test_non_object_json_values(tmp_path: Path) -> None:
    p = tmp_path / "falco.json"
    p.write_bytes(line(0) + b'\n"just a string"\n42\nnull\n\n   \n' + line(1) + b"\n")
    res = read(p)
    assert (res.account.records, res.account.ingested) == (5, 2)  # blank lines are not records
    assert reasons(res) == {
        2: "JSON value is str, not an object",
        3: "JSON value is int, not an object",
        4: "JSON value is NoneType, not an object",
    }


@pytest.mark.parametrize("content", [b"", b"\n\n   \n", BOM], ids=["empty", "blank", "bom-only"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "empty.json"
    p.write_bytes(content)
    with pytest.raises(UnknownFormatError, match="no JSON records"):
        read_file(p, readers=READERS)
    res = read(p, "falco")
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (0, 0, 0)
    assert res.tables["alerts"].num_rows == 0


def test_binary_file(tmp_path: Path) -> None:
    p = tmp_path / "core.bin"
    rnd = random.Random(3)
    p.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(rnd.getrandbits(8) for _ in range(20_000)))
    with pytest.raises(UnknownFormatError, match="JSON records that no reader recognises|no JSON records"):
        read_file(p, readers=READERS)
    res = read(p, "falco")
    assert res.account.ingested == 0 and res.account.quarantined == res.account.records > 0
    assert all(q.reason.startswith(("invalid UTF-8 at byte", "invalid JSON")) for q in res.quarantine)
    assert all(len(q.raw) <= 1024 * 1024 for q in res.quarantine)


def _truncated_gzip(path: Path, payload: bytes) -> None:
    gz = gzip.compress(payload)
    path.write_bytes(gz[: len(gz) // 2])


@pytest.mark.parametrize("name", ["falco.json.gz", "audit.log.1.gz", "events-2026-03-02"])
def test_truncated_gzip_reads_the_first_part(tmp_path: Path, name: str) -> None:
    rnd = random.Random(11)
    p = tmp_path / name
    _truncated_gzip(p, b"".join(line(n, rnd) + b"\n" for n in range(3000)))
    res = read(p)
    acc = res.account
    assert acc.format == "falco"
    assert 100 < acc.ingested < 3000
    assert acc.quarantined == 1
    q = res.quarantine[0]
    assert q.line == acc.ingested + 1
    assert q.reason.startswith(f"compressed stream is damaged after line {acc.ingested}")
    assert "records up to here were read" in q.reason
    df = res.frame()
    assert df["line"].tolist() == list(range(1, acc.ingested + 1))
    assert df["proc_pid"].iloc[-1] == 1000 + acc.ingested - 1


def test_truncated_gzip_of_a_json_array_is_one_clear_quarantine(tmp_path: Path) -> None:
    rnd = random.Random(5)
    p = tmp_path / "alerts.json.gz"
    _truncated_gzip(p, b"[" + b",\n".join(line(n, rnd) for n in range(3000)) + b"]")
    res = read(p, "falco")
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (1, 0, 1)
    assert res.quarantine[0].reason.startswith("compressed stream is damaged")


def test_rotated_gzip_name_is_detected_by_content(tmp_path: Path) -> None:
    gz = tmp_path / "audit.log.1.gz"
    gz.write_bytes(gzip.compress(b"\n".join(line(n) for n in range(4)) + b"\n"))
    plain = tmp_path / "audit.log.2.gz"  # named .gz but never compressed
    plain.write_bytes(b"\n".join(line(n) for n in range(4)) + b"\n")
    for p in (gz, plain):
        res = read(p)
        assert (res.account.format, res.account.ingested, res.account.quarantined) == ("falco", 4, 0)
        assert res.frame()["proc_pid"].tolist() == [1000, 1001, 1002, 1003]
        assert set(res.frame()["evidence"]) == {p.name}


def test_partial_first_line_as_left_by_tail(tmp_path: Path) -> None:
    p = tmp_path / "tail.json"
    p.write_bytes(line(0)[40:] + b"\n" + b"\n".join(line(n) for n in range(1, 6)) + b"\n")
    res = read(p)
    assert (res.account.format, res.account.records, res.account.ingested) == ("falco", 6, 5)
    assert reasons(res)[1].startswith("invalid JSON")


def test_deeply_nested_json_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "deep.json"
    p.write_bytes(b"[" * 10_000 + b"]" * 10_000)
    with pytest.raises(UnknownFormatError):
        read_file(p, readers=READERS)
    res = read(p, "falco")
    assert (res.account.records, res.account.quarantined) == (1, 1)
    assert "depth limit exceeded" in res.quarantine[0].reason or "nested too deeply" in res.quarantine[0].reason


def test_deeply_nested_json_line_among_good_ones(tmp_path: Path) -> None:
    deep = b'{"rule":"x","priority":"Debug","output_fields":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}"
    p = tmp_path / "falco.json"
    p.write_bytes(line(0) + b"\n" + deep + b"\n" + line(1) + b"\n")
    res = read(p)
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (3, 2, 1)
    assert "depth limit exceeded" in reasons(res)[2] or "nested too deeply" in reasons(res)[2]
    assert len(res.quarantine[0].raw) <= 1024 * 1024


def test_nested_deeper_than_json_output_allows(tmp_path: Path) -> None:
    """300 levels parse, but cannot be written back as JSON (orjson stops at 254): quarantined, not lost."""
    nested = b'{"rule":"x","priority":"Debug","time":"2026-03-02T12:00:00Z","output_fields":{"a":' + (
        b'{"a":' * 300 + b"1" + b"}" * 300) + b"}}"
    p = tmp_path / "falco.json"
    p.write_bytes(line(0) + b"\n" + nested + b"\n")
    res = read(p)
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (2, 1, 1)
    assert "cannot be stored as JSON" in reasons(res)[2]


def test_nested_at_the_parse_limit_is_quarantined(tmp_path: Path) -> None:
    nested = b'{"rule":"x","priority":"Debug","time":"2026-03-02T12:00:00Z","output_fields":{"a":' + (
        b'{"a":' * 1010 + b"1" + b"}" * 1010) + b"}}"
    p = tmp_path / "falco.json"
    p.write_bytes(line(0) + b"\n" + nested + b"\n")
    res = read(p)
    assert (res.account.records, res.account.ingested, res.account.quarantined) == (2, 1, 1)
    assert "nested too deeply" in reasons(res)[2]


def test_record_error_and_bad_shape_keep_line_and_raw(tmp_path: Path) -> None:
    bad = dict(alert(1), priority="Severe")
    p = tmp_path / "falco.json"
    p.write_bytes(line(0) + b"\n" + json.dumps(bad).encode() + b"\n")
    res = read(p)
    q = res.quarantine[0]
    assert (q.line, q.index) == (2, None)
    assert "not a Falco priority: 'Severe'" in q.reason
    assert json.loads(q.raw)["priority"] == "Severe"
    assert q.to_json()["evidence"] == "falco.json"


def test_iter_records_only_lines_and_from_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``only_lines`` plus ``from_line``: the declined lines of a bulk read, then everything after it stopped."""
    from kubeforensics.sources import records
    from kubeforensics.sources.records import Quarantined, iter_records

    monkeypatch.setattr(records, "MAX_LINE_BYTES", 100)
    lines = [json.dumps({"n": n}) for n in range(1, 11)]
    lines[1] = "{" + "x" * 200  # too long: reported only when the line is asked for
    lines[7] = "{broken"
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(lines) + "\n")

    def got(**kw: object) -> list[tuple[int, str]]:
        return [(r.line, "Q" if isinstance(r, Quarantined) else str(r.obj["n"])) for r in iter_records(p, **kw)]

    assert got(only_lines={3, 5}, from_line=7) == [(3, "3"), (5, "5"), (7, "7"), (8, "Q"), (9, "9"), (10, "10")]
    assert got(only_lines=set(), from_line=9) == [(9, "9"), (10, "10")]
    assert got(from_line=8) == [(8, "Q"), (9, "9"), (10, "10")]
    assert got(only_lines={1, 2}) == [(1, "1"), (2, "Q")]
    assert got(only_lines={4}) == [(4, "4")]  # the too-long line 2 is not read, so not reported
    assert len(got()) == 10


class _Only:
    """A Container that cannot be iterated: restricted reads then check every line."""

    def __init__(self, lines: set[int]) -> None:
        self._lines = lines

    def __contains__(self, n: object) -> bool:
        return n in self._lines


@pytest.mark.parametrize("seed", range(6))
def test_restricted_reads_skip_chunks_and_give_the_lines_a_full_read_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Skipping a chunk at a time (plain files) = filtering a full read, across chunk boundaries and odd lines."""
    from kubeforensics.sources import records
    from kubeforensics.sources.records import Quarantined, iter_records

    rnd = random.Random(seed)
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 300)
    monkeypatch.setattr(records, "SKIP_CHUNK", rnd.choice([7, 64, 1000, 1 << 20]))
    lines = []
    for n in range(1, 400):
        kind = rnd.random()
        if kind < 0.05:
            lines.append(b"")
        elif kind < 0.08:
            lines.append(b"  \r")
        elif kind < 0.11:
            lines.append(b'{"n":%d,"pad":"%s"}' % (n, b"x" * 400))  # too long
        elif kind < 0.14:
            lines.append(b'{"broken": %d' % n)
        else:
            lines.append(b'{"n":%d,"pad":"%s"}\r' % (n, b"y" * rnd.randrange(200)))
    data = (records.BOM if seed % 2 else b"") + b"\n".join(lines) + (b"\n" if seed % 3 else b"")
    plain, gz = tmp_path / "r.jsonl", tmp_path / "r.jsonl.gz"
    plain.write_bytes(data)
    gz.write_bytes(gzip.compress(data))

    def key(r: object) -> tuple:
        if isinstance(r, Quarantined):
            return (r.line, "Q", r.reason, r.raw)
        return (r.line, r.obj, r.index)  # type: ignore[attr-defined]

    everything = [key(r) for r in iter_records(plain)]
    assert everything == [key(r) for r in iter_records(gz)]
    starts = _line_starts(data)
    for _ in range(8):
        only = set(rnd.sample(range(1, 420), rnd.randrange(0, 40)))
        start = rnd.choice([None, 1, 2, rnd.randrange(1, 450), 500])
        want = [k for k in everything if k[0] in only or (start is not None and k[0] >= start)]
        for path in (plain, gz):
            assert [key(r) for r in iter_records(path, only_lines=only, from_line=start)] == want
        assert [key(r) for r in iter_records(plain, only_lines=_Only(only), from_line=start)] == want
        assert [key(r) for r in iter_records(plain, only_lines=sorted(only), from_line=start)] == want
        # seeking to the lines by where they start (a bulk path's line scan) instead of counting newlines
        assert [key(r) for r in iter_records(plain, only_lines=only, from_line=start, line_starts=starts)] == want


def _line_starts(data: bytes) -> np.ndarray:
    """Where each line of ``data`` starts (line n at [n - 1]), counted plainly."""
    return np.array([0] + [i + 1 for i, b in enumerate(data) if b == 10 and i + 1 < len(data)], dtype=np.int64)


def test_seeking_reads_only_the_lines_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``line_starts``, the declined lines of a large file are read by seeking to them: the bytes read are
    those lines' chunks, not the whole file up to the last one; and the scan of the bulk paths gives the same
    starts as counting them plainly (blank lines, CRLF, a BOM, no newline at the end)."""
    from kubeforensics.sources import bulk_lines, records
    from kubeforensics.sources.records import iter_records

    rows = [b'{"n":%d,"pad":"%s"}' % (n, b"z" * 300) for n in range(1, 20_001)]
    rows[7] = b""
    rows[8] = b"\r"
    data = records.BOM + b"\r\n".join(rows)
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    starts = _line_starts(data)
    scanned = bulk_lines.scan_plain(path, chunk=4096, max_line=1 << 20)
    assert scanned is not None and scanned[1].tolist() == starts.tolist()

    read = []
    real_open = records.open_evidence

    class Counting:
        def __init__(self, f: object) -> None:
            self._f = f

        def read(self, n: int = -1) -> bytes:
            out = self._f.read(n)  # type: ignore[attr-defined]
            read.append(len(out))
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self._f, name)

    monkeypatch.setattr(records, "open_evidence", lambda p: Counting(real_open(p)))
    monkeypatch.setattr(records, "SKIP_CHUNK", 64 * 1024)
    want = {3, 19_000, 19_999}
    got = [r.line for r in iter_records(path, only_lines=want, line_starts=starts)]
    assert got == sorted(want)
    assert sum(read) <= 3 * records.SKIP_CHUNK < len(data) / 10  # three chunks, not the file
    read.clear()
    assert [r.line for r in iter_records(path, only_lines=want)] == sorted(want)
    assert sum(read) >= len(data) - records.SKIP_CHUNK  # without them: every byte up to the last line


def _pod_list(n: int, image: str = "web:1") -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{i}", "namespace": "shop", "uid": f"u-{i}",
                                                         "creationTimestamp": "2026-03-01T10:00:00Z"},
         "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": image}]},
         "status": {"podIP": f"10.0.0.{i % 250}"}} for i in range(n)]}


class _CountingJson:
    """Stands in for ``orjson`` in ``records``: counts the parses of whole documents."""

    def __init__(self) -> None:
        import orjson

        self._orjson, self.documents = orjson, 0
        self.JSONDecodeError, self.dumps = orjson.JSONDecodeError, orjson.dumps

    def loads(self, data):
        if len(data) > 4096:
            self.documents += 1
        return self._orjson.loads(data)


def test_list_document_is_parsed_once_for_detection_and_reading(tmp_path, monkeypatch):
    """Format detection parses a List document to sniff it; the read that follows reuses that parse
    (and gives the same table as a read with the format forced)."""
    from kubeforensics.sources import READERS, FileIngest, records

    path = tmp_path / "pods.json"
    path.write_text(json.dumps(_pod_list(300), indent=1))
    counting = _CountingJson()
    monkeypatch.setattr(records, "orjson", counting)
    detected = FileIngest(path, READERS)
    got = {spec.name: t for spec, t in detected.batches()}  # (300 rows: one batch)
    assert detected.format == "k8s-objects" and counting.documents == 1
    assert detected._kept == {}  # taken once, not kept
    forced = FileIngest(path, READERS, "k8s-objects", evidence_id=detected.evidence_id)
    want = {spec.name: t for spec, t in forced.batches()}
    assert counting.documents == 2  # nothing kept for a forced read: parsed again
    assert got.keys() == want.keys() and all(got[k].equals(want[k]) for k in got)
    assert got["objects"].num_rows == 300 and detected.account.quarantined == 0


def test_kept_document_is_not_used_for_a_changed_file(tmp_path):
    from kubeforensics.sources import READERS, records
    from kubeforensics.sources.base import detect_format

    path = tmp_path / "pods.json"
    path.write_text(json.dumps(_pod_list(50), indent=1))
    kept: dict = {}
    assert detect_format(path, READERS, keep=kept) == "k8s-objects"
    assert len(kept["doc"][0]["items"]) == 50
    path.write_text(json.dumps(_pod_list(60, image="evil:2"), indent=1))  # replaced between detection and reading
    recs = list(records.iter_records(path, keep=kept))
    assert len(recs) == 60 and recs[0].obj["spec"]["containers"][0]["image"] == "evil:2"


def test_unknown_format_keeps_no_document(tmp_path):
    from kubeforensics.sources import READERS
    from kubeforensics.sources.base import detect_format

    path = tmp_path / "other.json"
    path.write_text(json.dumps([{"something": i, "else": "x" * 100} for i in range(100)]))
    kept: dict = {}
    with pytest.raises(UnknownFormatError):
        detect_format(path, READERS, keep=kept)
    assert kept == {}


def test_timestamp_texts_are_cached_with_their_problems_named_per_field():
    """fields.ts caches the text -> nanoseconds conversion; a bad text's error still names the field asking."""
    from kubeforensics.errors import RecordError
    from kubeforensics.sources import fields

    fields._text_ns.cache_clear()
    texts = ["2026-03-01T10:00:00Z", "2026-03-01T10:00:00.123456789Z", "2026-03-01 10:00:00+02:00",
             "2026-03-01T10:00:00,5-0130", " 2026-03-01T10:00:00z "]
    first = [fields.ts(t, "a") for t in texts]
    assert first == [fields.ts(t, "b") for t in texts]  # the second round from the cache
    assert fields._text_ns.cache_info().hits == len(texts)
    assert first[0] == 1772359200 * 10**9 and first[1] == first[0] + 123456789
    assert first[2] == first[0] - 2 * 3600 * 10**9 and first[3] == first[0] + 5 * 10**8 + 5400 * 10**9
    for bad, why in (("2026-13-01T00:00:00Z", "is not a valid date"), ("nope", "is not a timestamp"),
                     ("9999-01-01T00:00:00Z", "is out of the representable time range")):
        for field in ("requestReceivedTimestamp", "metadata.creationTimestamp"):
            with pytest.raises(RecordError, match=f"^'{re.escape(field)}' {why}"):
                fields.ts(bad, field)
