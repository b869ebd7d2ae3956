"""The checks of the Tetragon bulk path that run outside SQL, against plain reference implementations.

* :func:`tetragon_fast.scan` (numpy and ``bytearray.count`` over a reused buffer)
  finds the same lines, blank lines, odd lines and line offsets as a line-by-line
  reading of the text, for any chunk size (lines across chunks, longer than a chunk).
* The value checks of ``_convert`` (numpy on the first bytes of each text value,
  the JSON-number check once per distinct value, the integers and the times read
  with numpy) decline an odd value in each field they look at, keep the plain values
  close to those, and the table is the per-record path's (``assert_same``);
  ``bulk_lines.odd_text_rows`` agrees with a regex, ``_ints`` with a regex and
  ``fields.integer``, ``_times`` with a regex and ``fields.ts``, on any Arrow layout.
* The arguments are redacted once per distinct value the pre-check flags.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubeforensics.errors import RecordError
from kubeforensics.sources import bulk_lines, fields, tetragon_fast
from kubeforensics.sources.records import BOM, _is_multiline_document
from tests.sources.bulk_helpers import write_lines
from tests.sources.test_tetragon import process
from tests.sources.test_tetragon_fast import assert_same, ev

# --- the text scan ---------------------------------------------------------------------------------


def reference_scan(text: bytes, chunk: int) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """(non-blank line numbers, odd line numbers, where each physical line starts, lines that may be odd or not),
    line by line; None when the file is not JSON lines of objects (its first chunk a JSON array or a multi-line
    object).  A line with one event key and a ``"rate_limit_info"`` key may or may not be odd: the scan counts
    the latter only in the blocks it reads line by line (the query declines such lines anyway)."""
    head = text[:chunk]
    head = head[3:] if head.startswith(BOM) else head
    if head.lstrip()[:1] == b"[" or _is_multiline_document(head[:4096]):
        return None
    raw = text.split(b"\n")
    if text == b"" or text.endswith(b"\n"):
        raw.pop()
    starts = np.cumsum([0] + [len(x) + 1 for x in raw])[: len(raw)].tolist()
    numbers, odd, either = [], [], []
    for n, line in enumerate(raw, start=1):
        if n == 1 and line.startswith(BOM):
            line = line[3:]
        s = line.strip()
        if not s:
            continue
        if s[:1] != b"{":
            return None
        numbers.append(n)
        if tetragon_fast._line_hits(s) != 1:
            odd.append(n)
            if tetragon_fast._line_hits(s.replace(b'"rate_limit_info"', b"")) == 1:
                either.append(n)
    return numbers, odd, starts, either


def assert_scan_agrees(path: Path, text: bytes, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tetragon_fast, "_SCAN_CHUNK", chunk)
    gz = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(text) if gz else text)
    got, want = tetragon_fast.scan(path, offsets=not gz), reference_scan(text, chunk)
    if want is None:
        assert got is None
        return
    assert got is not None
    lines, odd, starts = got
    numbers, want_odd, want_starts, either = want
    assert lines.count == len(numbers)
    assert lines.of(np.arange(lines.count)).tolist() == numbers
    assert odd.tolist() == sorted(odd.tolist()) and len(set(odd.tolist())) == len(odd)
    assert set(odd.tolist()) - set(either) == set(want_odd) - set(either)
    if gz:
        assert starts is None
    else:
        assert starts is not None and starts.tolist() == want_starts


def _clean(k: int) -> bytes:
    """A line the scan's block path takes: one event key, first, and no backslash."""
    obj = ev(process={"pid": k, "binary": "/bin/sh"}, parent={"exec_id": f"p-{k}", "pid": 1, "arguments": "-c x"})
    return json.dumps(obj, separators=(",", ":")).encode()


#: Lines the scan must tell apart: clean ones (starting with ``{"process_``, one key, no backslash) and odd ones.
SCAN_LINES: list[bytes] = [
    _clean(1),
    _clean(22),
    json.dumps(ev()).encode(),  # with spaces after the separators: still starts with {"process_
    b'  ' + _clean(3),  # indented
    _clean(4) + b"\r",  # CRLF
    b"",
    b"   ",
    b"\t\r",
    b"{}",  # shorter than the key
    b'{"a":1}',  # no event key
    b'{"node_name":"n","process_exec":{}}',  # the key not first
    b'{"process_exec":{},"process_connect":{}}',  # two keys
    b'{"process_exec":{"process":{"process_credentials":{}}}}',  # not a second key
    b'{"process_exec":{"process":{"binary":"\\"process_x"}}}',  # a backslash, and a second "process_
    b'{"process_exec":{"process":{"binary":"C:\\\\x"}}}',  # a backslash, one key
    b'{"process\\u005fexec":{}}',  # an escaped key
    b'{"process_exec":{},"process\\u005fconnect":{}}',  # an escaped second key
    b'{"process_exec":{},"rate_limit_info":{}}',
    b'{"process_exec":{"process":{"arguments":"' + b"a" * 300 + b'"}}}',  # longer than small chunks
]


@pytest.mark.parametrize("chunk", [7, 64, 1000, 1 << 20])
@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz"])
def test_scan_agrees_with_a_line_by_line_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                                 name: str) -> None:
    rnd = random.Random(chunk)
    texts = [
        b"",
        b"\n",
        b"\n".join(_clean(k) for k in range(50)) + b"\n",  # all clean
        b"\n".join(_clean(k) for k in range(50)),  # no final newline
        BOM + b"\n".join(_clean(k) for k in range(50)) + b"\n",
        BOM + b"\n\n" + _clean(1) + b"\n",
        _clean(1) + b"\n" + BOM + _clean(2) + b"\n",  # a BOM that does not start the file
        b"\r\n".join(_clean(k) for k in range(20)) + b"\r\n",
        b"\n".join(SCAN_LINES) + b"\n",
        b"\n".join(SCAN_LINES[::-1]),
        b"[" + _clean(1) + b"]\n",
        b"  \n" + b"[1]\n",
        _clean(1) + b"\nnot json\n" + _clean(2) + b"\n",
        b'{"process_exec":\n{}}\n' + _clean(1) + b"\n",  # a multi-line document
    ]
    for _ in range(12):  # clean runs (whole clean blocks) with odd lines here and there
        picked = [rnd.choice(SCAN_LINES) if rnd.random() < 0.15 else _clean(rnd.randrange(10**6))
                  for _ in range(rnd.randrange(1, 80))]
        texts.append(b"\n".join(picked) + (b"\n" if rnd.random() < 0.7 else b""))
    for text in texts:
        assert_scan_agrees(tmp_path / name, text, chunk, monkeypatch)


def test_scan_reads_a_clean_file_block_by_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean file is counted block by block: no line goes through the line-by-line loop (only the block
    of an odd line does)."""
    calls: list[bytes] = []
    real = tetragon_fast._line_hits

    def counted(path: Path) -> Any:
        monkeypatch.setattr(tetragon_fast, "_line_hits", lambda s: calls.append(s) or real(s))
        try:
            return tetragon_fast.scan(path, offsets=True)
        finally:
            monkeypatch.setattr(tetragon_fast, "_line_hits", real)

    monkeypatch.setattr(tetragon_fast, "_SCAN_CHUNK", 4096)
    text = b"\n".join(_clean(k) for k in range(3000)) + b"\n"
    path = tmp_path / "c.jsonl"
    path.write_bytes(text)
    assert counted(path) is not None and calls == []
    assert_scan_agrees(path, text, 4096, monkeypatch)
    path.write_bytes(text.replace(_clean(1500), b'{"process_exec":{},"process_connect":{}}'))
    got = counted(path)
    assert got is not None and got[1].tolist() == [1501]
    assert 0 < len(calls) < 100


def test_scan_strips_a_bom_only_at_the_start_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks that end exactly at the end of a line: each is a block of its own, and a BOM starting the second
    one is not at the start of the file (the line is not JSON: the file is not JSON lines)."""
    one = _clean(1) + b"\n"
    for text in (BOM + one + one, one + BOM + one, one + one + BOM + one):
        for chunk in (len(one), len(one) + 3):
            assert_scan_agrees(tmp_path / "b.jsonl", text, chunk, monkeypatch)


# --- the value checks of the consumer ----------------------------------------------------------------


@pytest.fixture
def bulk_even_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tetragon_fast, "MIN_BULK_BYTES", 0)


def bulk_of(path: Path) -> tuple[pa.Table, set[int]]:
    """The bulk path's rows and declined lines (it must read the whole file)."""
    res = tetragon_fast.bulk(path, path.name, "x")
    assert res is not None
    table = pa.concat_tables(list(res.batches))
    assert res.complete
    return table, res.python_lines


#: Where each text field the reference reads with ``fields.text`` sits: the event key it needs and the path;
#: ``[]`` in a path: a list element (the field's list holds ``"ok"`` first, then the value).
TEXT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "node_name": ("process_exec", ("node_name",)),
    "cluster_name": ("process_exec", ("cluster_name",)),
    "process.exec_id": ("process_exec", ("process", "exec_id")),
    "process.parent_exec_id": ("process_exec", ("process", "parent_exec_id")),
    "parent.exec_id": ("process_exec", ("parent", "exec_id")),
    "process.binary": ("process_exec", ("process", "binary")),
    "process.arguments": ("process_exec", ("process", "arguments")),
    "process.cwd": ("process_exec", ("process", "cwd")),
    "process.flags": ("process_exec", ("process", "flags")),
    "pod.namespace": ("process_exec", ("process", "pod", "namespace")),
    "pod.name": ("process_exec", ("process", "pod", "name")),
    "pod.uid": ("process_exec", ("process", "pod", "uid")),
    "pod.workload": ("process_exec", ("process", "pod", "workload")),
    "pod.workload_kind": ("process_exec", ("process", "pod", "workload_kind")),
    "container.id": ("process_exec", ("process", "pod", "container", "id")),
    "container.name": ("process_exec", ("process", "pod", "container", "name")),
    "image.name": ("process_exec", ("process", "pod", "container", "image", "name")),
    "image.id": ("process_exec", ("process", "pod", "container", "image", "id")),
    "process.docker": ("process_exec", ("process", "docker")),
    "parent.binary": ("process_exec", ("parent", "binary")),
    "parent.arguments": ("process_exec", ("parent", "arguments")),
    "exit.signal": ("process_exit", ("signal",)),
    "kprobe.function_name": ("process_kprobe", ("function_name",)),
    "kprobe.policy_name": ("process_kprobe", ("policy_name",)),
    "kprobe.action": ("process_kprobe", ("action",)),
    "cap.effective[]": ("process_exec", ("process", "cap", "effective", "[]")),
    "cap.permitted[]": ("process_exec", ("process", "cap", "permitted", "[]")),
    "ancestors[].exec_id": ("process_exec", ("ancestors", "[]", "exec_id")),
}

#: Text-field values the bulk path declines: JSON objects and lists (``fields.text`` raises on them, DuckDB
#: gives their JSON text), 19 digits (with a minus or not) at the start.
ODD_TEXTS: list[Any] = [{"a": 1}, {}, [], ["x"], [1, 2], "[x", "{", "1234567890123456789", "-1234567890123456789",
                        "12345678901234567890123 and more", 12345678901234567890]
#: ... and values it keeps, close to those.
PLAIN_TEXTS: list[Any] = ["", "-", "0", "-12", "123456789012345678", "-123456789012345678", "1234567890a234567890123",
                          "-a234567890123456789012", "a[b", "x{", " [x", "1" * 18 + "-" + "1" * 20, 5, -7, 1.5, True]


def with_text(field: str, value: Any) -> dict[str, Any]:
    key, path = TEXT_FIELDS[field]
    obj = ev(key, **({"function_name": "f"} if key == "process_kprobe" else {}))
    if key == "process_exec" and path[0] in ("process", "parent", "ancestors"):
        node: Any = obj[key]
    elif key == "process_exec":
        node = obj
    else:
        node = obj[key]
    for k, step in enumerate(path[:-1]):
        nxt = path[k + 1]
        if step == "[]":
            node.append({})
            node = node[-1]
        else:
            node = node.setdefault(step, [{"exec_id": "ok"}] if nxt == "[]" and step == "ancestors" else
                                   ["ok"] if nxt == "[]" else {})
    if path[-1] == "[]":
        node.append(value)
    else:
        node[path[-1]] = value
    return obj


@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
def test_odd_text_values_are_declined_in_every_text_field(tmp_path: Path, bulk_even_small_files: None,
                                                           field: str) -> None:
    objs = [ev()] + [with_text(field, v) for v in ODD_TEXTS] + [with_text(field, v) for v in PLAIN_TEXTS]
    path = write_lines(tmp_path / "t.jsonl", objs)
    _table, declined = bulk_of(path)
    odd = set(range(2, 2 + len(ODD_TEXTS)))
    assert odd <= declined
    kept = set(range(2 + len(ODD_TEXTS), 2 + len(ODD_TEXTS) + len(PLAIN_TEXTS)))
    assert not kept & declined, sorted(kept & declined)
    assert_same(path, min_vectorised=1 + len(PLAIN_TEXTS))


@pytest.mark.parametrize("field", ["cap.effective[]", "cap.permitted[]"])
def test_a_null_in_a_capability_list_is_declined(tmp_path: Path, bulk_even_small_files: None, field: str) -> None:
    path = write_lines(tmp_path / "t.jsonl", [ev(), with_text(field, None), with_text(field, "CAP_X")])
    _table, declined = bulk_of(path)
    assert declined == {2}
    assert_same(path, min_vectorised=2)


def test_odd_values_in_long_batches_of_plain_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  bulk_even_small_files: None) -> None:
    """Odd values among many plain ones, in several batches (row -> line mapping of the numpy check)."""
    monkeypatch.setattr(tetragon_fast, "BATCH_ROWS", 64)
    fields = sorted(TEXT_FIELDS)
    objs: list[Any] = []
    want: set[int] = set()
    for k in range(600):
        field = fields[k % len(fields)]
        if k % 7 == 3:
            objs.append(with_text(field, ODD_TEXTS[k % len(ODD_TEXTS)]))
            want.add(k + 1)
        else:
            objs.append(with_text(field, PLAIN_TEXTS[k % len(PLAIN_TEXTS)]))
    path = write_lines(tmp_path / "t.jsonl", objs)
    table, declined = bulk_of(path)
    assert declined == want
    assert table.num_rows == 600 - len(want)
    assert_same(path, min_vectorised=600 - len(want))


#: Where each JSON value the consumer parses sits (see ``_JSON_ODD``), and how to put a value there.
JSON_FIELDS = {
    "pod_labels": lambda v: ev(process=process(pod={"name": "p", "pod_labels": {"a": "1", "v": v}})),
    "labels": lambda v: ev(process=process(pod={"name": "p", "labels": {"a": "1", "v": v}})),
    "ns": lambda v: ev(process=process(ns={"mnt": {"inum": v, "is_host": True}})),
    "kprobe.args": lambda v: ev("process_kprobe", function_name="f", args=[{"int_arg": 1}, {"long_arg": v}]),
    "kprobe.return": lambda v: ev("process_kprobe", function_name="f", **{"return": {"int_arg": 1, "x": v, "y": [v]}}),
}
#: JSON numbers a round trip through DuckDB's JSON text might not keep: declined wherever they are.
ODD_NUMBERS: list[Any] = [1234567890123456789, -1234567890123456789, 12345678901234567890, float("nan"),
                          float("inf"), -float("inf")]
#: ... and JSON values close to those that are kept.
PLAIN_NUMBERS: list[Any] = [123456789012345678, -123456789012345678, 1.5, "nan", "inf", "1234567890123456789", 0,
                            -1, [1, 2], {"nan": 1, "inf": [2]}]


@pytest.mark.parametrize("field", sorted(JSON_FIELDS))
def test_odd_numbers_are_declined_in_every_json_field(tmp_path: Path, bulk_even_small_files: None,
                                                       field: str) -> None:
    make = JSON_FIELDS[field]
    objs = [ev()] + [make(v) for v in ODD_NUMBERS] + [make(v) for v in PLAIN_NUMBERS]
    path = write_lines(tmp_path / "t.jsonl", objs)
    _table, declined = bulk_of(path)
    assert set(range(2, 2 + len(ODD_NUMBERS))) <= declined
    kept = set(range(2 + len(ODD_NUMBERS), 2 + len(ODD_NUMBERS) + len(PLAIN_NUMBERS)))
    assert not kept & declined, sorted(kept & declined)
    assert_same(path, min_vectorised=1 + len(PLAIN_NUMBERS))


def test_a_unit_separator_in_a_text_value_is_declined_by_the_scan(tmp_path: Path, bulk_even_small_files: None) -> None:
    """The query used to join the text values with U+001F and decline a value starting odd *after* one; the
    numpy check looks at each value on its own.  A U+001F in a JSON string is written ``\\u001f`` (the line
    goes record by record: the scan declines every line holding ``\\u``) or raw (invalid JSON, refused by
    both readers), so no line the query declined is taken now."""
    values = ["a\x1f[b", "a\x1f{", "a\x1f1234567890123456789", "a\x1f-1234567890123456789"]
    fields = ["process.binary", "process.arguments", "cap.effective[]", "ancestors[].exec_id", "node_name"]
    objs = [ev()] + [with_text(f, v) for f in fields for v in values]
    path = write_lines(tmp_path / "t.jsonl", objs)
    assert b"\\u001f" in path.read_bytes()
    _table, declined = bulk_of(path)
    assert declined == set(range(2, len(objs) + 1))
    assert_same(path, min_vectorised=1)
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(path.read_bytes().replace(b"\\u001f", b"\x1f"))
    assert_same(raw)


def test_arguments_are_redacted_once_per_distinct_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        bulk_even_small_files: None) -> None:
    """Process and parent arguments go through ``redact.text`` per distinct value the pre-check flags, in
    batches mixing secrets, plain arguments, empty ones and nulls (the per-record path redacts each).  Written
    as UTF-8 (a ``\\u`` escape would make the scan decline the line)."""
    monkeypatch.setattr(tetragon_fast, "BATCH_ROWS", 50)
    args: list[Any] = ["-s https://x", "--token=abcdef0123456789 -v", None, "", "Authorization: Bearer abcdefghijk",
                       "caf\u00e9 \u017fecret", "https://user:pw@host/x", "plain", "--password hunter2",
                       "cook\u0131e=abcdefgh1234"]  # (only the non-ASCII part of the pre-check flags the last one)
    objs = []
    for k in range(300):
        a, b = args[k % len(args)], args[(k * 7 + 3) % len(args)]
        obj = ev(process=process(arguments=a), parent={"exec_id": "p", "pid": 1, "arguments": b})
        objs.append(json.dumps(obj, ensure_ascii=False))
    path = write_lines(tmp_path / "t.jsonl", objs)
    table, declined = bulk_of(path)
    assert not declined
    got = table.column("args").to_pylist()
    assert "--token=abcdef0123456789 -v" not in got and "cook\u0131e=abcdefgh1234" not in got
    assert "-s https://x" in got and None in got and "" in got
    assert_same(path, min_vectorised=300)


def reference_odd_rows(values: list[Any]) -> list[int]:
    """Rows of ``values`` (texts or lists of texts) :func:`bulk_lines.odd_text_rows` must give, by regex."""
    import re

    odd = re.compile(r"([\[{]|-?[0-9]{19})")
    out = []
    for k, v in enumerate(values):
        items = v if isinstance(v, list) else [v]
        if (isinstance(v, list) and None in v) or any(s is not None and odd.match(s) for s in items):
            out.append(k)
    return out


def test_odd_rows_agrees_with_a_regex_on_any_arrow_layout() -> None:
    """Nulls whose slot is not empty, sliced arrays, empty values at the end of the data, chunked and list
    columns: the numpy check reads offsets and validity as Arrow lays them out."""
    rnd = random.Random(5)
    pool = [None, "", "a", "[", "{x", "-", "-1", "1" * 18, "1" * 19, "-" + "1" * 19, "-" + "1" * 18 + "x", "1" * 18 + "x",
            "x" + "1" * 19, "9" * 30, "-a" + "1" * 19, " [", "/bin/sh", "-w 5", "12ab"]
    # a null slot over "[x": offsets 0..2 with the validity bit unset
    masked = pa.StringArray.from_buffers(3, pa.py_buffer(np.array([0, 2, 3, 3], dtype=np.int32).tobytes()),
                                         pa.py_buffer(b"[xa"), pa.py_buffer(np.packbits([0, 1, 1], bitorder="little")))
    assert masked.to_pylist() == [None, "a", ""]
    assert bulk_lines.odd_text_rows(masked).tolist() == []
    for _ in range(200):
        values = [rnd.choice(pool) for _ in range(rnd.randrange(1, 40))]
        arr = pa.array(values, type=pa.string())
        lo = rnd.randrange(len(values))
        for col, want in ((arr, values), (arr.slice(lo), values[lo:]), (pa.chunked_array([arr[:lo], arr[lo:]]), values),
                          (arr.cast(pa.large_string()), values)):
            assert sorted(bulk_lines.odd_text_rows(col).tolist()) == sorted(set(reference_odd_rows(want))), want
        lists = [None if rnd.random() < 0.1 else [rnd.choice(pool) for _ in range(rnd.randrange(0, 4))]
                 for _ in range(rnd.randrange(1, 20))]
        larr = pa.array(lists, type=pa.list_(pa.string()))
        lo = rnd.randrange(len(lists))
        for col, want in ((larr, lists), (larr.slice(lo), lists[lo:])):
            assert sorted(set(bulk_lines.odd_text_rows(col).tolist())) == reference_odd_rows(want), want


def _exit_time(v: str) -> dict[str, Any]:
    obj = ev("process_exit", time=None)
    obj["process_exit"]["time"] = v
    return obj


#: Where each time text sits: the envelope's, process_exit's own (read when the envelope has none), and
#: process.start_time (always read; the row's time when there is no other).
TIME_FIELDS = {
    "time": lambda v: ev(time=v),
    "exit.time": _exit_time,
    "start_time": lambda v: ev(process=process(start_time=v)),
    "start_time only": lambda v: ev(time=None, process=process(start_time=v)),
}
#: Times DuckDB casts but in another form than ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` (the reference reads some of
#: them otherwise): declined ...
ODD_TIMES = ["2024-05-06 10:21:04", "2024-05-06T10:21:04+02:00", "2024-05-06", "2024-05-06T10:21:04.1234567891Z",
             "2224-05-06T10:21:04Z", "2024-05-06T10:21:04z", "2024-05-06T10:21:04", " 2024-05-06T10:21:04Z",
             "2024-05-06T10:21:04Z\n", "2024-13-06T10:21:04Z", "2024-05-06T24:21:04Z", "2024-05-06T10:21:04.Z"]
#: ... and times in that form (or absent: empty), kept.
PLAIN_TIMES = ["2024-05-06T10:21:04Z", "2024-05-06T10:21:04.1Z", "2024-05-06T10:21:04.123456789Z",
               "1999-12-31T23:59:59Z", "2124-01-01T00:00:00.5Z"]


@pytest.mark.parametrize("field", sorted(TIME_FIELDS))
def test_times_in_another_form_are_declined(tmp_path: Path, bulk_even_small_files: None, field: str) -> None:
    make = TIME_FIELDS[field]
    objs = [ev()] + [make(v) for v in ODD_TIMES] + [make(v) for v in PLAIN_TIMES]
    if field == "start_time":
        objs.append(make(""))
    path = write_lines(tmp_path / "t.jsonl", objs)
    _table, declined = bulk_of(path)
    assert set(range(2, 2 + len(ODD_TIMES))) <= declined
    kept = set(range(2 + len(ODD_TIMES), len(objs) + 1))
    assert not kept & declined, sorted(kept & declined)
    assert_same(path, min_vectorised=len(kept) + 1)


#: Where each integer field sits (the reference reads it with ``fields.integer``).
INT_FIELDS = {
    "process.pid": lambda v: ev(process=process(pid=v)),
    "process.tid": lambda v: ev(process=process(tid=v)),
    "process.uid": lambda v: ev(process=process(uid=v)),
    "process.auid": lambda v: ev(process=process(auid=v)),
    "parent.pid": lambda v: ev(parent={"exec_id": "p", "pid": v}),
    "exit.status": lambda v: ev("process_exit", status=v),
}
#: Integers not written as ``-?[0-9]{1,18}`` (as a JSON number or a string): declined ...
ODD_INTS: list[Any] = ["12a", "+5", " 7", "7 ", "1e3", "0x10", "--1", "-", "1234567890123456789", 1234567890123456789,
                       -1234567890123456789, 1.5, 1e3, True, "\u0661\u0662"]
#: ... and ones that are, kept.
PLAIN_INTS: list[Any] = [0, 7, -7, "7", "-7", "000123", 123456789012345678, "-123456789012345678", ""]


@pytest.mark.parametrize("field", sorted(INT_FIELDS))
def test_integers_in_another_form_are_declined(tmp_path: Path, bulk_even_small_files: None, field: str) -> None:
    make = INT_FIELDS[field]
    objs = [ev()] + [make(v) for v in ODD_INTS] + [make(v) for v in PLAIN_INTS]
    path = write_lines(tmp_path / "t.jsonl", [json.dumps(o, ensure_ascii=False) for o in objs])
    _table, declined = bulk_of(path)
    assert set(range(2, 2 + len(ODD_INTS))) <= declined
    kept = set(range(2 + len(ODD_INTS), len(objs) + 1))
    assert not kept & declined, sorted(kept & declined)
    assert_same(path, min_vectorised=len(kept) + 1)


# --- the integers and times the consumer reads (``_ints``, ``_times``) against the reference -------------------
#: The form the bulk path reads (``fields.ts`` reads more: those go record by record).
STRICT_TIME = re.compile(
    r"(19|20|21)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?Z", re.ASCII
)


def reference_time(value: str | None) -> tuple[int | None, bool]:
    """(nanoseconds, declined) of a time text: ``fields.ts`` for a text of the strict form, absent for null and
    empty, declined otherwise (another form, or no such date)."""
    if value is None or value == "":
        return None, False
    if not STRICT_TIME.fullmatch(value):
        return None, True
    try:
        return fields.ts(value, "t"), False
    except RecordError:
        return None, True


def _layouts(values: list[Any], rnd: random.Random, typ: pa.DataType) -> list[tuple[Any, list[Any]]]:
    """The column in several Arrow layouts: whole, sliced, chunked, large_string."""
    arr = pa.array(values, type=typ)
    lo = rnd.randrange(len(values))
    return [(arr, values), (arr.slice(lo), values[lo:]), (pa.chunked_array([arr[:lo], arr[lo:]]), values),
            (arr.cast(pa.large_string()), values)]


def _time_texts(rnd: random.Random) -> list[str | None]:
    """Times of the form, near-misses of it (each check of ``_times`` rejects some), absent ones."""
    out: list[str | None] = [
        None, "", "Z", "2024-05-06T10:21:04Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
        "2000-02-29T12:00:00.5Z", "1900-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-04-30T23:59:59.999999999Z",
        "2024-12-31T23:59:59Z", "2024-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "2199-12-31T23:59:59.1Z",
        "1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-13-10T00:00:00Z",
        "2024-05-00T00:00:00Z", "2024-05-32T00:00:00Z", "2024-05-06T24:00:00Z", "2024-05-06T23:60:00Z",
        "2024-05-06T23:59:60Z", "2024-05-06T10:21:04.Z", "2024-05-06T10:21:04.1234567891Z", "2024-05-06T10:21:04",
        "2024-05-06T10:21:04z", "2024-05-06t10:21:04Z", "2024-05-06 10:21:04Z", "2024/05/06T10:21:04Z",
        "2024-05-06T10-21-04Z", "2024-05-06T10:21:04,5Z", "2024-05-06T10:21:04.5x", "2024-05-06T10:21:04.x5Z",
        "2024-05-06T10:21:04.5ZZ", "2024-05-06T10:21:04+00:00", " 2024-05-06T10:21:04Z", "2024-05-06T10:21:04Z ",
        "2024-05-0aT10:21:04Z", "2024-05-06T10:21:0\u0664Z", "x024-05-06T10:21:04Z", "2024-05-06T10:21:04.12a4Z",
        # a byte below "0" read as a digit would make a date in range: 1994, the 9th, 09:21, 04:09
        "20/4-05-06T10:21:04Z", "2024-05-1/T10:21:04Z", "2024-05-06T1/:21:04Z", "2024-05-06T10:21:1/Z",
    ]
    for _ in range(300):
        y, mo, d = rnd.randrange(1890, 2210), rnd.randrange(0, 14), rnd.randrange(0, 33)
        h, mi, s = rnd.randrange(0, 25), rnd.randrange(0, 61), rnd.randrange(0, 61)
        frac = "" if rnd.random() < 0.3 else "." + "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(0, 11)))
        out.append(f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}Z")
    return out


def test_times_agree_with_the_reference_on_any_arrow_layout() -> None:
    """``_times`` keeps exactly the texts of the strict form that ``fields.ts`` reads, with its nanoseconds."""
    rnd = random.Random(11)
    pool = _time_texts(rnd)
    for _ in range(60):
        values = rnd.sample(pool, rnd.randrange(1, 60))
        for col, want in _layouts(values, rnd, pa.string()):
            ns, present, bad = tetragon_fast._times(col)
            for k, v in enumerate(want):
                ref, declined = reference_time(v)
                assert bool(bad[k]) == declined, v
                assert bool(present[k]) == (v not in (None, "")), v
                if ref is not None:
                    assert int(ns[k]) == ref, v
    ns, present, bad = tetragon_fast._times(pa.array([None, ""], type=pa.string()))
    assert not present.any() and not bad.any()
    assert sum(reference_time(v)[1] for v in pool) > 100 and sum(reference_time(v)[0] is not None for v in pool) > 50


def test_integers_agree_with_a_regex_on_any_arrow_layout() -> None:
    """``_ints`` reads ``-?[0-9]{1,18}`` (``fields.integer``'s value), null and empty as null; declines the rest."""
    rnd = random.Random(12)
    pool: list[str | None] = [None, "", "0", "-0", "7", "-7", "007", "-", "--1", "+5", " 7", "7 ", "1-", "-1-", "1e3",
                              "1.5", "true", "\u0661", "1" * 18, "-" + "9" * 18, "1" * 19, "-" + "1" * 19, "12a",
                              "a12", "9" * 30, "4294967295"]
    pool += [str(rnd.randrange(-10**18 + 1, 10**18)) for _ in range(40)]
    for _ in range(100):
        values = [rnd.choice(pool) for _ in range(rnd.randrange(1, 30))]
        for col, want in _layouts(values, rnd, pa.string()):
            got, bad = tetragon_fast._ints(col)
            assert got.type == pa.int64()
            for k, v in enumerate(want):
                plain = v is not None and re.fullmatch(r"-?[0-9]{1,18}", v, re.ASCII) is not None
                assert bool(bad[k]) == (v not in (None, "") and not plain), v
                assert got[k].as_py() == (fields.integer(v, "i") if plain else None), v
