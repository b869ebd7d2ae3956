"""The checks of the Tetragon bulk path that run outside SQL, against plain reference implementations.

* :func:`tetragon_fast.scan` (numpy and ``bytearray.count`` over a reused buffer)
  finds the same lines, blank lines, odd lines and line offsets as a line-by-line
  reading of the text, for any chunk size (lines across chunks, longer than a chunk).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeforensics.sources import tetragon_fast
from kubeforensics.sources.records import BOM, _is_multiline_document
from tests.sources.test_tetragon_fast import ev

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
    monkeypatch.setattr(tetragon_fast, "_CHUNK", chunk)
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

    monkeypatch.setattr(tetragon_fast, "_CHUNK", 4096)
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
