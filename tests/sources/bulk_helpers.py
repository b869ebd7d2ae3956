"""Helpers shared by the differential tests of the DuckDB bulk paths (``test_*_fast.py``).

Each test reads a file twice, through the reader (bulk path first) and through
the same reader without ``bulk`` (the reference), and compares what they give.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubeforensics.sources.base import ReadResult
from kubeforensics.sources.bulk_lines import Lines
from kubeforensics.sources.records import BOM


def write_lines(path: Path, objs: list[Any], *, newline: str = "\n", bom: bool = False) -> Path:
    """One JSON line per object (a ``str`` is written as it is), gzip-compressed when ``path`` ends in ``.gz``."""
    text = "".join((o if isinstance(o, str) else json.dumps(o)) + newline for o in objs)
    data = (BOM if bom else b"") + text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def assert_same_accounts(fast: ReadResult, ref: ReadResult) -> None:
    """The same record counts, and the same quarantined lines (line, index in the line, reason)."""
    for key in ("records", "ingested", "quarantined"):
        assert getattr(fast.account, key) == getattr(ref.account, key), key
    assert [(q.line, q.index, q.reason) for q in fast.quarantine] == [(q.line, q.index, q.reason)
                                                                       for q in ref.quarantine]


def assert_same_rows(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    """Rows by ``event_id``: the same ids, and every value of the reference's rows equal."""
    assert a.keys() == b.keys()
    diffs = [(eid, c, a[eid][c], b[eid][c]) for eid in b for c in b[eid] if a[eid][c] != b[eid][c]]
    assert not diffs, diffs[:5]


def write_numbered(path: Path, lines: list[str], *, newline: str, bom: bool, blanks: bool) -> Path:
    """JSON lines with CRLF/BOM as asked and, with ``blanks``, a blank first line and a line of spaces and
    an empty line after line 5 (so the 1st record is on line 2 and the 30th on line 33)."""
    if blanks:
        lines = ["", *lines[:5], "   ", "", *lines[5:]]
    data = (BOM if bom else b"") + "".join(line + newline for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def assert_numbered(rows: list[dict[str, Any]], key: str, blanks: bool) -> None:
    """Records ``id-0`` .. ``id-29`` (in column ``key``) are on the lines :func:`write_numbered` put them."""
    by_id = {r[key]: r["line"] for r in rows}
    assert by_id["id-0"] == (2 if blanks else 1)
    assert by_id["id-29"] == (30 + 3 if blanks else 30)
    assert all(r["event_id"].endswith(f":{r['line']}") for r in rows)


#: Texts for :func:`assert_scan_plain_agrees`: blank, CRLF and indented lines, BOMs, no final newline,
#: lines that are not objects, empty files, lines across chunks.
SCAN_TEXTS = [
    b'{"a":1}\n{"b":2}\n',
    b'{"a":1}\n{"b":2}',
    b'{"a":1}\n\n{"b":2}',
    b'\n\n{"a":1}\r\n\r\n  {"b":2}\n\n',
    b'\n\n{"a":1}\n   \n\t{"b":2}\r\n\r\n{"c":3}',
    BOM + b'{"a":1}\n{"b":2}\n',
    BOM + b'\n{"a":1}\n',
    b'{"a":1}\n[1]\n',
    b'{"a":1}\nx\n',
    b"",
    b"\n\n",
    b'{"a":1}\n' * 5000,
    b'{"a":1}\n' + b" " * 5000 + b'{"b":2}\n' + b'{"c":3}' * 1000 + b"\n\n",
]


def assert_scan_plain_agrees(module: ModuleType, path: Path, text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """``module.scan_plain`` (with 4 kB chunks: lines across chunk boundaries) finds the same rows -> lines
    as ``module.scan_lines``, and where each line starts."""
    monkeypatch.setattr(module, "_CHUNK", 4096)
    path.write_bytes(text)
    scan_plain: Callable[[Path], Any] = module.scan_plain
    got, want = scan_plain(path), module.scan_lines(path)
    if want is None:
        assert got is None
        return
    assert got is not None
    lines, offsets = got
    assert lines.count == want.count
    rows = np.arange(want.count)
    assert lines.of(rows).tolist() == want.of(rows).tolist()
    assert [lines.line(i) for i in range(lines.count)] == [want.line(i) for i in range(want.count)]
    raw = text.split(b"\n")
    assert len(offsets) == len(raw) - (raw[-1] == b"")
    assert offsets.tolist() == np.cumsum([0] + [len(x) + 1 for x in raw])[: len(offsets)].tolist()
    for n, at in enumerate(offsets.tolist(), start=1):
        assert text[at:].split(b"\n", 1)[0] == raw[n - 1]


#: Wrong row -> line mappings of a 3,000-line file (batches of 100 rows), and the line the bulk path must stop at.
WRONG_MAPPINGS: dict[str, tuple[Callable[[], Any], int]] = {
    # DuckDB row 1050 mapped to line 1052 (as if a line had been skipped): batch 1000-1099 is refused
    "skipped-line": (lambda: Lines(3000, np.r_[np.arange(1, 1051), np.arange(1052, 3002)]), 1001),
    "short-count": (lambda: Lines(2950, None), 2901),  # batch 2900-2999 reaches past the count
    "long-count": (lambda: Lines(3010, None), 3001),  # DuckDB returns fewer rows than lines
}


def bulk_with_wrong_mapping(module: ModuleType, path: Path, shift: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``module.bulk`` on a 3,000-line ``path`` whose row -> line mapping is :data:`WRONG_MAPPINGS` ``[shift]``
    (the line offsets of a plain file stay right); check that it stops before the first wrong batch, having
    yielded only rightly numbered rows.  Returns the line it stopped at."""
    wrong, expected_next = WRONG_MAPPINGS[shift]
    monkeypatch.setattr(module, "BATCH_ROWS", 100)
    monkeypatch.setattr(module, "scan_lines", lambda p: wrong())  # gzip files
    scanned = module.scan_plain(path)
    assert (scanned is None) == path.name.endswith(".gz")
    if scanned is not None:  # plain files: the offsets stay right, the mapping is wrong
        monkeypatch.setattr(module, "scan_plain", lambda p: (wrong(), scanned[1]))
    res = module.bulk(path, path.name, "x")
    assert res is not None
    lines = pa.concat_tables(list(res.batches)).column("line").to_pylist()
    assert not res.complete and res.next_line == expected_next
    assert lines == [n for n in range(1, expected_next) if n not in res.python_lines]
    return expected_next - 1 - len(res.python_lines)


_INGEST_CHILD = """
import sys, tempfile
from pathlib import Path
import kubeforensics as kf
if sys.argv[2]:
    import importlib
    importlib.import_module("kubeforensics.sources." + sys.argv[2]).BATCH_ROWS = 2_000  # many batches in any file
with tempfile.TemporaryDirectory() as d:
    rep = kf.Case.create(Path(d) / "case").ingest(sys.argv[1], progress=False)
    assert rep.totals["quarantined"] == 0, rep.totals
    print(rep.totals["ingested"])
"""


def ingest_peak_mb(path: Path, records: int, *, module: str = "") -> int:
    """Peak RSS (MB) of ``Case.ingest(path)`` in a small launcher (``tests.conftest.run_measured``), after
    checking that every one of ``records`` records was ingested; ``module`` (e.g. ``tetragon_fast``) gets
    small batches, so that memory that followed the file would show."""
    import sys

    from tests.conftest import ROOT, run_measured

    out, rss = run_measured([sys.executable, "-c", _INGEST_CHILD, str(path), module], cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[0]) == records
    return rss // 2**20


def read_both(path: Path, source: str, reader: Any, plain: Any, fmt: str | None) -> tuple[ReadResult, ReadResult]:
    """``path`` read through ``reader`` (bulk path first) and through ``plain`` (the same reader without
    ``bulk``): as ``fmt``, or with the format detected (``fmt`` None: other records go to their readers)."""
    from kubeforensics.sources import READERS
    from kubeforensics.sources.base import read_file

    if fmt is None:
        return read_file(path, readers={**READERS, source: reader}), read_file(path, readers={**READERS, source: plain})
    return read_file(path, fmt, readers={source: reader}), read_file(path, fmt, readers={source: plain})


def assert_same_tables(fast: ReadResult, ref: ReadResult, *, min_vectorised: int = 0,
                       same_order: bool = False) -> ReadResult:
    """Bulk + per-record equals per-record alone: accounting, quarantine, every value of every table
    (with ``same_order`` also the row order, line numbers and dtypes: ``Table.equals``)."""
    assert_same_accounts(fast, ref)
    assert fast.account.rows == ref.account.rows
    assert fast.tables.keys() == ref.tables.keys()
    for name in ref.tables:
        assert fast.tables[name].schema == ref.tables[name].schema, name
        assert_same_rows({r["event_id"]: r for r in fast.tables[name].to_pylist()},
                         {r["event_id"]: r for r in ref.tables[name].to_pylist()})
        if same_order:
            assert fast.tables[name].equals(ref.tables[name]), name
    assert fast.account.notes["vectorised"] >= min_vectorised, fast.account.notes
    return fast
