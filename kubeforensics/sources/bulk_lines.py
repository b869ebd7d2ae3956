"""Shared pieces of the DuckDB bulk paths: where lines start, reading the lines a row is mapped to, prefetching.

* :class:`Lines`: the row -> line mapping (row ``i`` of DuckDB's result is the
  ``i``-th non-blank line).
* :func:`scan_plain`: one numpy pass over an uncompressed JSON-lines file finds
  where every line starts and which lines are blank.
* :class:`SeekCursor` (uncompressed files) and :class:`SkipCursor` (gzip files,
  forwards only, skipping a chunk at a time) read the raw line a DuckDB row is
  mapped to; :func:`matches` compares its identifying fields with the row.
* :class:`Prefetch`: DuckDB's batches computed in a worker thread, a few ahead.
* :func:`stream`: the loop the bulk paths share: batches from :class:`Prefetch`,
  each checked against its lines before it is converted and yielded.
* :func:`bulk_gzip` and :func:`streamed`: the first and last steps of each ``bulk()``.

Used by :mod:`~kubeforensics.sources.audit_fast`,
:mod:`~kubeforensics.sources.hubble_fast` and
:mod:`~kubeforensics.sources.tetragon_fast`.  The sizes (chunk, longest line,
batch rows) are parameters: each module keeps its own settings.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson
import pyarrow as pa

from kubeforensics.sources.records import BOM, GZIP_MAGIC, open_evidence

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

log = logging.getLogger(__name__)

#: Identifying fields of a line: (path of JSON keys, DuckDB column) ...
Keys = tuple[tuple[tuple[str, ...], str], ...]
#: ... or a function giving (value in the parsed line, DuckDB column) pairs, for fields no fixed path reaches.
Fields = Callable[[dict[str, Any]], Iterable[tuple[Any, str]]]


class Lines:
    """Where the non-blank lines of a JSON-lines file are: ``numbers[i]`` is the line of row ``i``."""

    def __init__(self, count: int, numbers: np.ndarray | None) -> None:
        self.count = count
        self.numbers = numbers  # None: no blank lines, row i is line i + 1

    def of(self, rows: np.ndarray) -> np.ndarray:
        return rows + 1 if self.numbers is None else self.numbers[rows]

    def line(self, row: int) -> int:
        """The line of row ``row``."""
        return row + 1 if self.numbers is None else int(self.numbers[row])


def scan_plain(path: Path, *, chunk: int, max_line: int) -> tuple[Lines, np.ndarray] | None:
    """Where the lines of an uncompressed JSON-lines file start, and which of them are blank.

    One pass with numpy (the newlines of each chunk at once).  Returns
    ``(lines, offsets)``: ``lines`` the row -> line mapping and ``offsets[n - 1]``
    the byte where line ``n`` starts.  None when a non-blank line does not start
    with ``{`` (after white space) or the file cannot be read.
    """
    starts: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            pending = np.zeros(1, dtype=np.int64)  # line starts whose first byte is in a later chunk
            base = 0
            while data := f.read(chunk):
                arr = np.frombuffer(data, dtype=np.uint8)
                at = np.concatenate([pending, np.flatnonzero(arr == 10).astype(np.int64) + (base + 1)])
                inside = at < base + len(data)
                starts.append(at[inside])
                firsts.append(arr[at[inside] - base])
                pending = at[~inside]
                base += len(data)
            offsets = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
            first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.uint8)
            if head.startswith(BOM) and len(first):
                first[0] = head[3] if len(head) > 3 else 0
            odd = np.flatnonzero(first != ord("{"))
            if not len(odd):
                return Lines(len(offsets), None), offsets
            blank = np.zeros(len(offsets), dtype=bool)
            for i in odd.tolist():  # blank lines, CRLF blank lines, indented records
                f.seek(int(offsets[i]) + (3 if i == 0 and head.startswith(BOM) else 0))
                text = f.readline(max_line + 2).strip()
                if not text:
                    blank[i] = True
                elif text[:1] != b"{":
                    return None
            numbers = np.flatnonzero(~blank).astype(np.int64) + 1
            return Lines(len(numbers), numbers), offsets
    except OSError as exc:  # the per-record path explains
        log.debug("bulk scan of %s failed: %s", path, exc)
        return None


def _dig(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path[:-1]:
        obj = obj.get(k)  # type: ignore[assignment]
        if not isinstance(obj, dict):
            return None
    return obj.get(path[-1])


def matches(raw: bytes | None, keys: Keys | Fields, rb: pa.RecordBatch, row: int) -> bool:
    """True when row ``row`` of ``rb`` holds the identifying fields of the raw line ``raw``.

    A text value must equal the row's; a number, boolean or object only be
    present there (DuckDB renders it as text); an absent one absent.
    """
    if raw is None:
        return False
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(obj, dict):
        return False
    pairs = keys(obj) if callable(keys) else ((_dig(obj, path), col) for path, col in keys)
    for want, col in pairs:
        got = rb.column(col)[row].as_py()
        if want is None:
            same = got is None
        elif isinstance(want, str):
            same = got == want
        else:  # a number, boolean, object: DuckDB renders it as text; present is enough
            same = got is not None
        if not same:
            return False
    return True


class SeekCursor:
    """Reads the line a DuckDB row is mapped to by its offset (uncompressed files), to compare their fields."""

    def __init__(self, path: Path, offsets: np.ndarray, keys: Keys | Fields, max_line: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._offsets = offsets
        self.line_starts = offsets  # handed on to the per-record read of the declined lines (BulkResult)
        self._keys = keys
        self._max = max_line

    def close(self) -> None:
        self._f.close()

    def get(self, n: int) -> bytes | None:
        """The text of line ``n``; None past the end or when longer than ``max_line``."""
        if not 0 < n <= len(self._offsets):
            return None
        self._f.seek(int(self._offsets[n - 1]))
        data = self._f.readline(self._max + 2)
        if len(data) > self._max + 1:
            return None
        return data[3:] if n == 1 and data.startswith(BOM) else data

    def matches(self, rb: pa.RecordBatch, row: int, line: int) -> bool:
        return matches(self.get(line), self._keys, rb, row)


class SkipCursor:
    """Reads the raw lines of a (gzip) file forwards, skipping the lines between two checks a chunk at a time."""

    def __init__(self, path: Path, keys: Keys | Fields, *, chunk: int, max_line: int) -> None:
        self._f = open_evidence(path)
        self._keys = keys
        self._chunk = chunk
        self._max = max_line
        self._buf = b""
        self._pos = 0  # where the next line starts in self._buf
        self._line = 0  # lines consumed
        self._last: bytes | None = None  # the text of line self._line

    def close(self) -> None:
        self._f.close()

    def _more(self) -> bool:
        data = self._f.read(self._chunk)
        self._buf, self._pos = (self._buf[self._pos:] + data if self._pos < len(self._buf) else data), 0
        return bool(data)

    def get(self, n: int) -> bytes | None:
        """The text of line ``n`` (asked for in increasing order); None past the end or too long."""
        if n == self._line:
            return self._last
        if n < self._line:
            return None
        todo = n - 1 - self._line  # lines to skip
        while todo:
            have = self._buf.count(b"\n", self._pos)
            if have < todo:  # the whole buffer
                todo -= have
                self._line += have
                self._buf, self._pos = b"", 0
                if not self._more():
                    return None
                continue
            for _ in range(todo):
                self._pos = self._buf.index(b"\n", self._pos) + 1
            self._line += todo
            todo = 0
        while (end := self._buf.find(b"\n", self._pos)) < 0:
            if len(self._buf) - self._pos > self._max or not self._more():
                break
        stop = len(self._buf) if end < 0 else end + 1
        data = self._buf[self._pos:stop]
        self._pos = stop
        self._line += 1
        too_long = len(data) > self._max + 2
        self._last = None if not data or too_long else data[3:] if n == 1 and data.startswith(BOM) else data
        return self._last

    def matches(self, rb: pa.RecordBatch, row: int, line: int) -> bool:
        return matches(self.get(line), self._keys, rb, row)


_END = object()


class Prefetch:
    """DuckDB's batches, computed in a worker thread up to ``depth`` ahead of the consumer.

    DuckDB works without the GIL, so the query runs while the consumer scans
    the lines, checks and converts batches and the case store writes them.  At
    most ``depth`` batches wait in the queue: memory stays flat.
    """

    def __init__(self, sql: str, connect: Callable[[], Any], batch_rows: int, *, depth: int = 2,
                 name: str = "bulk-query") -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._con: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sql, connect, batch_rows), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, sql: str, connect: Callable[[], Any], batch_rows: int) -> None:
        try:
            self._con = connect()
            self._ready.set()
            for rb in self._con.sql(sql).to_arrow_reader(batch_rows):
                if not self._put(rb):
                    return
            self._put(_END)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            self._ready.set()
            if self._con is not None:
                self._con.close()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the query (when still running) and wait for the thread."""
        self._stop.set()
        self._ready.wait()
        if self._thread.is_alive() and self._con is not None:
            try:
                self._con.interrupt()
            except Exception as exc:  # noqa: BLE001 - closed meanwhile
                log.debug("bulk path: interrupting DuckDB: %s", exc)
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


class Cursor(Protocol):
    """:class:`SeekCursor` or :class:`SkipCursor`."""

    def matches(self, rb: pa.RecordBatch, row: int, line: int) -> bool: ...

    def close(self) -> None: ...


def open_lines(path: Path, gz: bool, keys: Keys | Fields, *, scan_gz: Callable[[Path], Lines | None],
               scan: Callable[[Path], tuple[Lines, np.ndarray] | None], chunk: int,
               max_line: int) -> tuple[Lines | None, Cursor | None]:
    """The line mapping of a file and a cursor on its lines: ``scan`` (offsets kept, :class:`SeekCursor`)
    for an uncompressed file, ``scan_gz`` and a :class:`SkipCursor` for a gzip one; None when not JSON lines."""
    if gz:
        return scan_gz(path), SkipCursor(path, keys, chunk=chunk, max_line=max_line)
    scanned = scan(path)
    if scanned is None:
        return None, None
    return scanned[0], SeekCursor(path, scanned[1], keys, max_line)


def stream(
    result: BulkResult,
    path: Path,
    sql: str,
    open_lines: Callable[[], tuple[Lines | None, Cursor | None]],
    convert: Callable[[pa.RecordBatch, int, Lines], tuple[pa.Table, np.ndarray]],
    *,
    connect: Callable[[], Any],
    batch_rows: int,
    name: str,
) -> Iterator[pa.Table]:
    """The batches of a bulk path; keeps ``result`` up to date before each one is yielded.

    DuckDB runs ``sql`` in a worker thread two batches ahead (:class:`Prefetch`)
    while this one calls ``open_lines`` (the line mapping and a cursor on the raw
    lines) and converts.  Before a batch is yielded, the line mapping of its
    first and last row is checked against the raw line: DuckDB must have
    returned exactly one row per non-blank line, in file order.  A batch that
    passes goes through ``convert(batch, offset, lines)`` (offset: its first
    row), which gives the table and the declined line numbers.  When a check
    fails, or DuckDB raises part-way, the batch is dropped and the stream ends
    with ``result.complete`` False: the lines from ``result.next_line`` on go
    record by record.  So do the lines after the last row when DuckDB returns
    fewer rows than there are lines (the rows it returned were checked).
    """
    cursor: Cursor | None = None
    prefetch: Prefetch | None = None
    offset = 0
    try:
        prefetch = Prefetch(sql, connect, batch_rows, name=name)
        lines, cursor = open_lines()
        if isinstance(cursor, SeekCursor):
            result.line_starts = cursor.line_starts
        if lines is None or lines.count == 0 or cursor is None:
            log.debug("bulk path: %s is not JSON lines of objects; it goes record by record", path)
            return
        for rb in prefetch:
            if not rb.num_rows:
                continue
            end = offset + rb.num_rows
            if end > lines.count or not (cursor.matches(rb, 0, lines.line(offset))
                                         and cursor.matches(rb, rb.num_rows - 1, lines.line(end - 1))):
                log.debug("bulk path: rows %d-%d of %s do not map to their lines; the rest goes record by record",
                          offset, end, path)
                return
            table, rejected = convert(rb, offset, lines)
            del rb
            offset = end
            result.records += table.num_rows
            result.python_lines.update(int(n) for n in rejected)
            result.next_line = lines.line(end - 1) + 1
            yield table
            del table
        if offset == lines.count:
            result.complete = True
        else:  # the rows returned were checked: the lines after the last one go record by record
            log.debug("bulk path: %s has %d JSON lines but DuckDB read %d rows", path, lines.count, offset)
    except Exception as exc:  # noqa: BLE001 - malformed JSON, damaged stream...: the per-record path explains
        log.debug("bulk path of %s stopped before line %d: %s", path, result.next_line, exc)
    finally:
        if cursor is not None:
            cursor.close()
        if prefetch is not None:
            prefetch.close()


def bulk_gzip(path: Path, min_bytes: int) -> bool | None:
    """None when ``path`` is smaller than ``min_bytes`` (read record by record: the bulk path does
    not pay off); otherwise whether it is gzip-compressed."""
    if path.stat().st_size < min_bytes:
        return None
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def streamed(batches: Callable[[BulkResult], Iterator[pa.Table]]) -> BulkResult:
    """A :class:`~kubeforensics.sources.base.BulkResult` whose batches ``batches(result)`` produces
    (the generator fills the result in as it goes)."""
    from kubeforensics.sources.base import BulkResult

    result = BulkResult(iter(()))
    result.batches = batches(result)
    return result


# ------------------------------------------------------------------------------- value checks, per batch
#: A text value that was not a JSON string/number/boolean (DuckDB renders an object or a list read as VARCHAR
#: as its JSON text), or an integer of 19 digits or more (orjson, the reference, reads 64-bit overflow as a
#: float; DuckDB keeps the digits): what :func:`odd_text_rows` finds, as a regular expression.
ODD_TEXT_RE2 = r"^([\[{]|-?\d{19})"
_JSON_FIRST = np.zeros(256, dtype=bool)
_JSON_FIRST[list(b"[{")] = True
#: Which byte values are ASCII digits (a lookup table for numpy: ``DIGIT[bytes]``).
DIGIT = np.zeros(256, dtype=bool)
DIGIT[list(b"0123456789")] = True
_MINUS = np.zeros(256, dtype=bool)
_MINUS[ord("-")] = True
_ODD_FIRST = _JSON_FIRST | DIGIT | _MINUS
_NINETEEN = np.arange(19)


def flat_strings(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray | None, np.ndarray]:
    """The string values of a text or list-of-text column: ``(values, parents, nulls)``.

    ``parents[i]`` is the row of value ``i`` (None for a text column: the row
    itself); ``nulls`` the values that are null inside a list (a text column: none).
    """
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        return col, None, np.zeros(0, dtype=np.int64)
    parents = pc.list_parent_indices(col).to_numpy()
    values = col.flatten()
    nulls = np.flatnonzero(~values.is_valid().to_numpy(zero_copy_only=False)) if values.null_count else \
        np.zeros(0, dtype=np.int64)
    return values, parents, nulls


def string_bytes(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(offsets, data, present)`` of a string array, no copy: value ``i`` is ``data[offsets[i]:offsets[i + 1]]``,
    ``present`` where it is neither null nor empty.  None when no value has a byte."""
    n = len(values)
    data = values.buffers()[2] if n and values.null_count < n else None
    if data is None or not data.size:
        return None
    wide = pa.types.is_large_string(values.type)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if wide else np.int32)[values.offset: values.offset + n + 1]
    present = np.greater(offsets[1:], offsets[:-1])
    if values.null_count:
        present &= values.is_valid().to_numpy(zero_copy_only=False)
    return offsets, np.frombuffer(data, dtype=np.uint8), present


def rows_of(found: list[np.ndarray], parents: np.ndarray | None) -> np.ndarray:
    """The rows of the values ``found`` (see :func:`flat_strings`)."""
    if not found:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(found)
    return parents[idx] if parents is not None else idx


def odd_text_rows(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows of a text or list-of-text column holding a value :data:`ODD_TEXT_RE2` matches, or (a list) a null.

    numpy on the first bytes of the values (the string offsets into the data
    buffer), and on the next 19 bytes of the few values starting with a digit
    or a minus; no regex.  The row numbers may repeat.
    """
    values, parents, nulls = flat_strings(col)
    bad = [nulls] if len(nulls) else []
    layout = string_bytes(values)
    if layout is not None:
        offsets, text, present = layout
        starts = offsets[:-1]
        # the first byte of each value (of the last byte of the data for an empty value at the end: not present)
        odd_first = _ODD_FIRST[text[np.minimum(starts, len(text) - 1)]] & present
        if odd_first.any():
            cand = np.flatnonzero(odd_first)
            at, size = starts[cand], np.subtract(offsets[cand + 1], starts[cand])
            first = text[at]
            bad.append(cand[_JSON_FIRST[first]])  # an object or a list: no more to see
            # 19 digits, after a minus or not (the 19 bytes after the sign, in values long enough for them)
            sign = _MINUS[first]
            second = text[np.minimum(at + 1, len(text) - 1)]
            long = (DIGIT[first] | sign) & np.greater_equal(size, sign + 19) & DIGIT[second]
            if long.any():
                digits = DIGIT[text[(at[long] + sign[long])[:, None] + _NINETEEN]].all(axis=1)
                bad.append(cand[long][digits])
    return rows_of(bad, parents)


def dictionary(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of a column and, for each row, the index of its value (nulls: one past the last):
    for checks run once per distinct value."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = col.dictionary_encode()
    idx = enc.indices
    if idx.null_count:
        idx = idx.fill_null(len(enc.dictionary))
    return enc.dictionary, idx.to_numpy(zero_copy_only=False)
