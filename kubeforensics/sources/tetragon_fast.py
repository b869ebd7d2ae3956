"""Vectorised (DuckDB) bulk path of the Tetragon reader: whole JSON-lines exports at parse speed.

:func:`bulk` reads a Tetragon export with DuckDB's ``read_ndjson`` and an explicit
schema and computes the ``processes`` columns in SQL for the *ordinary* events:
``process_exec``, ``process_exit`` and ``process_kprobe`` lines with a
``node_name``, whose fields have the types Tetragon writes.  Every other line is
*declined*: its line number goes into ``BulkResult.python_lines`` and the engine
reads it through :meth:`~kubeforensics.sources.tetragon.TetragonReader.extract`,
the reference implementation.  Cells that need Python run through the reference
functions themselves, once per distinct value where values repeat:
``pod_labels`` (:func:`tetragon._labels`, :func:`fields.as_json`), container ids
(:func:`fields.container_hex`), arguments that may hold a secret
(:func:`redact.text`), and the kprobe ``args``/``return`` (:func:`tetragon._probe`),
so those columns are identical by construction.

Declined to the per-record path (it quarantines or keeps them exactly):

* other event types (tracepoint, lsm, uprobe, usdt, loader, throttle, rate_limit_info,
  unknown ``process_*`` keys), lines without ``node_name``;
* a line with more than one top-level event key, found by a text scan:
  every line must hold exactly one ``"process_`` (``"process_credentials`` aside)
  and no backslash escape, unless it is checked line by line (see :func:`scan`);
* a value of an unexpected JSON type: text fields holding an object/array or a
  64-bit-overflowing number, integers not written as plain decimal digits (or as
  strings of them), timestamps not of the form ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z``,
  lists holding null, JSON values (labels, namespaces, kprobe arguments) holding a
  number of 19 digits or more, anything the reference function raises on.

The query checks the event keys; everything else is checked by the consumer, per
batch: the text values with numpy on the bytes of each value
(:func:`bulk_lines.odd_text_rows`), the integers and the times with numpy too, as it
converts them (:func:`_ints`, :func:`_times`: the query passes their texts on), the
JSON values once per distinct value, in the reference calls that parse them.

A *structural* surprise (a struct field that is a scalar, a list that is a string,
malformed JSON, invalid UTF-8, duplicate keys, a line longer than
:data:`MAX_OBJECT_BYTES`, a truncated gzip stream) makes DuckDB raise: the batches
already streamed stand and every line from ``BulkResult.next_line`` on goes
record by record, as in :mod:`~kubeforensics.sources.audit_fast`, whose
connection settings this module reuses (and, with it, the line cursor and batch
loop of :mod:`~kubeforensics.sources.bulk_lines`).

Difference from the per-record path, by design (as for audit): JSON that orjson
refuses but DuckDB accepts (``NaN``, ``Infinity``, integers beyond 64 bits) *in a
field the processes table does not read* is ingested here, where the per-record
path quarantines the line as invalid JSON.  Tetragon never writes such JSON.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from kubeforensics.redact import MAYBE_SECRET_PATTERN
from kubeforensics.schema import PROCESSES
from kubeforensics.sources import bulk_lines
from kubeforensics.sources.audit_fast import (
    _CHUNK,
    BATCH_ROWS,
    MAX_OBJECT_BYTES,
    MIN_BULK_BYTES,
    _connect,
    _json_lines_head,
    _Lines,
)
from kubeforensics.sources.records import BOM, _is_multiline_document, open_evidence

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

log = logging.getLogger(__name__)

__all__ = ["BATCH_ROWS", "MAX_OBJECT_BYTES", "MIN_BULK_BYTES", "bulk", "scan"]

_V = "VARCHAR"
_PROC = (
    f"STRUCT(exec_id {_V}, parent_exec_id {_V}, pid {_V}, tid {_V}, uid {_V}, auid {_V}, \"binary\" {_V}, "
    f"arguments {_V}, cwd {_V}, flags {_V}, start_time {_V}, cap STRUCT(effective {_V}[], permitted {_V}[]), "
    "ns JSON, "
    f"pod STRUCT(namespace {_V}, name {_V}, uid {_V}, workload {_V}, workload_kind {_V}, pod_labels JSON, "
    f"labels JSON, container STRUCT(id {_V}, name {_V}, image STRUCT(name {_V}, id {_V}))), docker {_V})"
)
_PARENT = f"STRUCT(exec_id {_V}, pid {_V}, \"binary\" {_V}, arguments {_V})"
_COMMON = f"process {_PROC}, parent {_PARENT}, ancestors STRUCT(exec_id {_V})[], time {_V}"
#: The events handled here; every other top-level key is either an envelope key or found by the text scan.
_COLUMNS: dict[str, str] = {
    "process_exec": f"STRUCT({_COMMON})",
    "process_exit": f"STRUCT({_COMMON}, status {_V}, signal {_V})",
    "process_kprobe": (
        f"STRUCT({_COMMON}, function_name {_V}, policy_name {_V}, action {_V}, \"return\" JSON, args JSON)"
    ),
    "rate_limit_info": "JSON",
    "node_name": _V, "time": _V, "cluster_name": _V,
}
_EVENTS = ("process_exec", "process_exit", "process_kprobe")
#: A text value that was not a JSON string/number/boolean (DuckDB renders an object or a list as its JSON
#: text), or a 64-bit-overflowing integer (``bulk_lines.ODD_TEXT_RE2``) is looked for with numpy by
#: :func:`bulk_lines.odd_text_rows` in :data:`_TEXT_COLUMNS`.
#: The columns of a query batch holding the text fields the reference reads with ``fields.text`` (list
#: columns: their values; a list must not hold a null either, ``fields.strings`` would drop it).
_TEXT_COLUMNS = (
    "node", "cluster", "exec_id", "parent_exec_id", "k_parent_exec_id", "binary", "args", "cwd", "flags",
    "namespace", "pod", "pod_uid", "workload", "workload_kind", "k_container_id", "container_name", "image",
    "image_id", "k_docker", "parent_binary", "parent_args", "exit_signal", "function_name", "policy_name", "action",
    "caps_effective", "caps_permitted", "ancestors",
)
#: Text that :func:`redact.text` might change: the shared pre-check, or any non-ASCII character
#: (RE2 and Python ``re`` fold case differently outside ASCII).
_REDACT_RE2 = MAYBE_SECRET_PATTERN + r"|[^\x00-\x7F]"
#: A number token in DuckDB's compact JSON text that a round trip might not keep (19 digits and more: DuckDB
#: keeps the digits, orjson reads up to 64 bits): JSON values holding one are declined (labels, namespaces:
#: once per distinct value; kprobe args and return).  ``NaN`` and ``Infinity``, which DuckDB accepts too,
#: make ``orjson.loads`` of the text raise: also declined.
_JSON_ODD = re.compile(r"[:\[,]-?[0-9]{19}", re.ASCII)


def _sql(path: str, gz: bool) -> str:
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _COLUMNS.items()) + "}"
    src = (
        f"read_ndjson('{path.replace(chr(39), chr(39) * 2)}', columns={spec}, format='newline_delimited', "
        f"records=true, ignore_errors=false, compression='{'gzip' if gz else 'none'}', "
        f"maximum_object_size={MAX_OBJECT_BYTES})"
    )

    def pick(field: str, events: tuple[str, ...] = _EVENTS) -> str:
        return "coalesce(" + ", ".join(f"{e}.{field}" for e in events) + ")"

    # The text values (``_TEXT_COLUMNS``), the lists (nulls) and the JSON texts (``_JSON_ODD``) are checked
    # by the consumer (``_convert``): per batch with numpy, or once per distinct value; so are the integers
    # (:func:`_ints`) and the times (:func:`_times`), which the consumer also converts: the query passes their
    # texts on as they are.
    ok = "n_events = 1 AND node_name IS NOT NULL AND rate_limit_info IS NULL"
    n_events = " + ".join(f"({e} IS NOT NULL)::INTEGER" for e in _EVENTS)
    return f"""
WITH raw AS (
  SELECT *,
    {pick('process')} AS p,
    {pick('parent')} AS par,
    {pick('ancestors')} AS ancestors,
    {n_events} AS n_events,
    coalesce(nullif(time, ''), nullif({pick('time')}, '')) AS t_txt,
    CAST(process_kprobe.args AS {_V}) AS k_args,
    CAST(process_kprobe."return" AS {_V}) AS k_ret
  FROM {src}
), checked AS (SELECT *, coalesce({ok}, false) AS ok FROM raw)
SELECT
  ok, t_txt AS k_t_txt, p.start_time AS k_start_time,
  time AS k_time, node_name AS node, p.exec_id AS exec_id, p.pid AS k_pid,
  CASE WHEN t_txt IS NOT NULL THEN 'time' ELSE 'process.start_time' END AS time_source,
  CASE WHEN process_exec IS NOT NULL THEN 'exec' WHEN process_exit IS NOT NULL THEN 'exit' ELSE 'kprobe' END
    AS event_type,
  cluster_name AS cluster,
  coalesce(p.parent_exec_id, par.exec_id) AS parent_exec_id, par.exec_id AS k_parent_exec_id,
  p.tid AS k_tid, p.uid AS k_uid, p.auid AS k_auid,
  p."binary" AS "binary", p.arguments AS args,
  p.cwd AS cwd, p.flags AS flags,
  p.pod.namespace AS namespace, p.pod.name AS pod, p.pod.uid AS pod_uid,
  p.pod.workload AS workload, p.pod.workload_kind AS workload_kind,
  CAST(p.pod.pod_labels AS {_V}) AS k_pod_labels, CAST(p.pod.labels AS {_V}) AS k_labels,
  p.pod.container.id AS k_container_id, p.docker AS k_docker,
  p.pod.container.name AS container_name,
  p.pod.container.image.name AS image, p.pod.container.image.id AS image_id,
  par."binary" AS parent_binary, par.arguments AS parent_args,
  par.pid AS k_parent_pid,
  list_transform(ancestors, lambda a: coalesce(a.exec_id, '')) AS ancestors,
  p.cap.effective AS caps_effective, p.cap.permitted AS caps_permitted,
  CAST(p.ns AS {_V}) AS k_ns,
  process_kprobe.function_name AS function_name, process_kprobe.policy_name AS policy_name,
  process_kprobe.action AS action,
  process_exit.status AS k_status, nullif(process_exit.signal, '') AS exit_signal,
  k_args, k_ret, process_kprobe IS NOT NULL AS is_kprobe
FROM checked
"""


# ------------------------------------------------------------------------------------------- the text scan
_KEY = b'"process_'
_CREDENTIALS = b'"process_credentials'  # a Process field (and a kprobe argument kind), not an event key


def _line_hits(line: bytes) -> int:
    """Top-level-event-key candidates in one line; anything escaped counts too (it could hide a key)."""
    return (line.count(_KEY) - line.count(_CREDENTIALS) + line.count(b'"rate_limit_info"')
            + (1 if b"\\u" in line else 0))


_LINE_START = np.frombuffer(b'{"process_', dtype=np.uint8)
#: The scan reads this much at a time: a block small enough to stay in a core's L2 cache between its passes
#: (newlines, key count, backslash), which then do not each read it from memory (measured: 1 MB ~0.33 CPU-s
#: on the 490 MB export against ~0.4 for 16 MB chunks, more under memory contention).
_SCAN_CHUNK = 1 << 20


class _Scan:
    """Line numbers of the non-blank lines and the lines that must go record by record."""

    def __init__(self, offsets: bool = False) -> None:
        self.count = 0  # non-blank lines
        self.physical = 0  # lines read so far
        self.base = 0  # bytes read so far
        self.starts: list[np.ndarray] | None = [] if offsets else None  # where each physical line starts
        self.pieces: list[np.ndarray | range] = []  # non-blank line numbers, per block
        self.blank = False
        self.odd: list[int] = []  # non-blank lines whose key count is not exactly one
        self._eq = np.zeros(0, dtype=bool)  # scratch for the newline search, reused

    def block(self, buf: bytes | bytearray, first: bool, start: int = 0, end: int | None = None) -> bool:
        """Account for the whole lines ``buf[start:end]``; False when the file is not JSON lines of objects."""
        end = len(buf) if end is None else end
        size = end - start
        if size <= 0:
            return True
        if len(self._eq) < size:
            self._eq = np.empty(max(size, _SCAN_CHUNK), dtype=bool)
        data = np.frombuffer(buf, dtype=np.uint8, count=size, offset=start)
        nl = np.flatnonzero(np.equal(data, 10, out=self._eq[:size]))
        closed = len(nl) > 0 and int(nl[-1]) == size - 1
        n = len(nl) + (0 if closed else 1)
        # where each line starts (relative to ``start``): 0, then after each newline but the last one's
        heads = np.empty(n, dtype=np.int64)
        heads[0] = 0
        heads[1:] = nl[: n - 1] + 1
        if self.starts is not None:
            self.starts.append(heads + self.base)
        self.base += size
        w = len(_LINE_START)
        if (
            int(heads[-1]) + w <= size
            and bool((data[heads[:, None] + np.arange(w)] == _LINE_START).all())
            and buf.count(_KEY, start, end) == n
            and buf.find(b"\\", start, end) < 0
        ):
            # every line starts with an event key and holds no other "process_ and no escape: clean
            # (each line is at least as long as the key, so the gather stays inside the block)
            self.pieces.append(range(self.physical + 1, self.physical + n + 1))
            self.count += n
            self.physical += n
            return True
        numbers: list[int] = []
        for k, text in enumerate(bytes(buf[start:end]).split(b"\n")[:n]):
            if first and k == 0 and text.startswith(BOM):
                text = text[3:]
            line = self.physical + k + 1
            s = text.strip()
            if not s:
                self.blank = True
                continue
            if s[:1] != b"{":
                return False
            numbers.append(line)
            if _line_hits(s) != 1:
                self.odd.append(line)
        self.pieces.append(np.asarray(numbers, dtype=np.int64))
        self.count += len(numbers)
        self.physical += n
        return True

    def offsets(self) -> np.ndarray | None:
        """``offsets[n - 1]``: the byte where physical line ``n`` starts (None unless asked for)."""
        if self.starts is None:
            return None
        return np.concatenate(self.starts) if self.starts else np.zeros(0, dtype=np.int64)

    def lines(self) -> _Lines:
        if not self.blank:
            return _Lines(self.count, None)
        parts = [np.arange(p.start, p.stop, dtype=np.int64) if isinstance(p, range) else p for p in self.pieces]
        return _Lines(self.count, np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


_NOT_SPACE = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # what ``bytes.lstrip()`` stops at


def _read_blocks(f: Any, st: _Scan) -> bool:
    """Feed the whole lines of ``f`` to ``st`` a chunk at a time; False when it is not JSON lines of objects
    (a JSON array or a multi-line document, judged on the first chunk; a line that is not an object).

    The chunks are read into one reused buffer (no fresh memory per chunk, no copy
    of it): the whole lines of a chunk go to :meth:`_Scan.block` in place, and only
    the line cut at its end is copied, to be completed by the next chunk.
    """
    buf = bytearray(_SCAN_CHUNK)
    view = memoryview(buf)
    carry: list[bytes] = []  # the start of a line cut by the end of the previous chunk(s)
    first = True
    size = f.readinto(view)
    if size:
        skip = 3 if buf.startswith(BOM, 0, size) else 0
        lead = _NOT_SPACE.search(buf, skip, size)
        if (lead is not None and buf[lead.start()] == ord("[")) or _is_multiline_document(
            bytes(view[skip : min(size, skip + 4096)])
        ):
            return False
    while size:
        start = 0
        if carry:
            nl = buf.find(b"\n", 0, size)
            if nl < 0:  # a line longer than a chunk
                carry.append(bytes(view[:size]))
                size = f.readinto(view)
                continue
            if not st.block(b"".join(carry) + bytes(view[: nl + 1]), first):
                return False
            first, carry, start = False, [], nl + 1
        end = buf.rfind(b"\n", start, size) + 1
        if end > start:
            if not st.block(buf, first, start, end):
                return False
            first = False
        else:
            end = start
        if end < size:
            carry.append(bytes(view[end:size]))
        size = f.readinto(view)
    return not carry or st.block(b"".join(carry), first)


def scan(path: Path, *, offsets: bool = False) -> tuple[_Lines, np.ndarray, np.ndarray | None] | None:
    """One streaming pass: where the non-blank lines are, and which lines hold other than one event key.

    A block of lines where every line starts with ``{"process_``, ``"process_``
    occurs once per line and no backslash occurs is clean as a whole (with numpy
    and ``bytearray.count``); any other block is checked line by line.  Returns
    ``(lines, odd, starts)``, ``odd`` the sorted line numbers whose text has no or
    several top-level-key candidates (declined), ``starts`` where each line
    starts (with ``offsets``, for an uncompressed file: the batch checks then
    seek to their two lines instead of reading the file again), or None when
    the file is not JSON lines of objects or cannot be read to the end.
    """
    st = _Scan(offsets)
    try:
        with open_evidence(path) as f:
            if not _read_blocks(f, st):
                return None
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # the per-record path explains
        log.debug("bulk scan of %s failed: %s", path, exc)
        return None
    return st.lines(), np.asarray(sorted(st.odd), dtype=np.int64), st.offsets()


# ----------------------------------------------------------------------------------------- the bulk path
def bulk(path: str | Path, evidence: str, evidence_id: str) -> BulkResult | None:
    """Read a Tetragon JSON-lines export with DuckDB; decline what only the per-record path can do.

    Parameters
    ----------
    path : str or Path
        The evidence file (plain or gzip).
    evidence, evidence_id : str
        Provenance: the ``evidence`` column and the prefix of ``event_id`` (``<evidence_id>:<line>``).

    Returns
    -------
    BulkResult or None
        None when the whole file must be read record by record (small, not JSON
        lines).  Otherwise the ``processes`` rows of the ordinary events stream
        out of ``batches`` (at most :data:`BATCH_ROWS` rows each); the declined
        line numbers, the record count and where the bulk path stopped are
        complete once ``batches`` is exhausted (see
        :class:`~kubeforensics.sources.base.BulkResult`).
    """
    path = Path(path)
    gz = bulk_lines.bulk_gzip(path, MIN_BULK_BYTES)
    if gz is None or not _json_lines_head(path):
        return None
    return bulk_lines.streamed(lambda result: _stream(path, gz, evidence, evidence_id, result))


def _key_fields(obj: dict[str, Any]) -> tuple[tuple[Any, str], ...]:
    """The fields that identify a Tetragon line (``bulk_lines.Fields``): envelope time and node, the event's
    ``process.exec_id`` and ``process.pid`` (an integer as DuckDB renders it, so that it is compared too)."""
    ev = next((obj[k] for k in _EVENTS if k in obj), None)
    proc = ev.get("process") if isinstance(ev, dict) else None
    exec_id = proc.get("exec_id") if isinstance(proc, dict) else None
    pid = proc.get("pid") if isinstance(proc, dict) else None
    pid = str(pid) if pid.__class__ is int else pid
    return (obj.get("time"), "k_time"), (obj.get("node_name"), "node"), (exec_id, "exec_id"), (pid, "k_pid")


def _stream(path: Path, gz: bool, evidence: str, evidence_id: str, result: BulkResult) -> Iterator[pa.Table]:
    """The batches of :func:`bulk` (``bulk_lines.stream``); keeps ``result`` up to date before each one is yielded.

    As in :func:`audit_fast._stream`: :func:`scan` runs while DuckDB parses (it
    starts first), and the first and last row of each batch are checked against
    the raw lines they are mapped to (found by their offset from :func:`scan` in
    a plain file, read forwards by a ``bulk_lines.SkipCursor`` in a gzip one); a
    failed check or a DuckDB error ends the stream with ``result.complete`` False,
    and a file the scan finds is not JSON lines of objects yields nothing
    (``next_line`` 1: all of it goes record by record).
    """
    odd = np.zeros(0, dtype=np.int64)

    def open_lines() -> tuple[_Lines | None, bulk_lines.Cursor | None]:
        nonlocal odd
        scanned = scan(path, offsets=not gz)
        if scanned is None:
            return None, None
        lines, odd, starts = scanned
        if starts is not None:
            return lines, bulk_lines.SeekCursor(path, starts, _key_fields, max_line=MAX_OBJECT_BYTES)
        return lines, bulk_lines.SkipCursor(path, _key_fields, chunk=_CHUNK, max_line=MAX_OBJECT_BYTES)

    def convert(rb: pa.RecordBatch, offset: int, lines: _Lines) -> tuple[pa.Table, np.ndarray]:
        return _convert(rb, offset, lines, odd, evidence, evidence_id)

    yield from bulk_lines.stream(result, path, _sql(str(path), gz), open_lines, convert, connect=_connect,
                                 batch_rows=BATCH_ROWS, name="tetragon-bulk")


# ------------------------------------------------------------------------------- cells through Python
class _Decline(Exception):
    """A row the reference code would treat differently: it goes record by record."""


_DIGIT = bulk_lines.DIGIT
_MINUS = ord("-")
#: An integer has at most this many digits (after an optional minus): ``-?[0-9]{1,18}``, the way Tetragon writes
#: them (a JSON number, or a string of digits for 64-bit values), always within 64 bits.
_INT_DIGITS = 18


def _lengths(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(starts, sizes, data, present)`` of a string array (see ``bulk_lines.string_bytes``); None when no
    value has a byte."""
    layout = bulk_lines.string_bytes(values)
    if layout is None:
        return None
    offsets, data, present = layout
    starts = offsets[:-1].astype(np.int64)
    return starts, offsets[1:] - starts, data, present


def _gather(data: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``data[at[i] + j]`` for ``j < width`` (a ``(len(at), width)`` array; outside the data, up to ``width``
    bytes before or after it: zero).  Rows of a sliding window over a padded copy: a row is taken as a whole
    (an index per byte costs 25 times as much)."""
    padded = np.zeros(len(data) + 2 * width, dtype=np.uint8)
    padded[width: width + len(data)] = data
    return sliding_window_view(padded, width)[at + width]


def _ints(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """An integer text column (DuckDB's text of a JSON number or string) as int64, and its bad rows.

    Null and empty texts are null (``fields.integer``); a text other than ``-?[0-9]{1,18}`` is bad (declined):
    counted with numpy, the non-digit bytes of each value (a running sum over the data buffer) must be none but
    a leading minus.  The good texts are then cast by Arrow (the others masked as null).
    """
    values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(values)
    layout = _lengths(values)
    if layout is None:
        return pa.nulls(n, pa.int64()), np.zeros(n, dtype=bool)
    starts, sizes, data, present = layout
    other = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(~_DIGIT[data], out=other[1:])
    minus = present & (data[np.minimum(starts, len(data) - 1)] == _MINUS)
    digits = sizes - minus
    good = present & (other[starts + sizes] - other[starts] == minus) & (digits >= 1) & (digits <= _INT_DIGITS)
    if values.offset:  # (the validity below starts at the buffers' first value)
        values = pa.concat_arrays([values])
    validity = pa.py_buffer(np.packbits(good, bitorder="little"))
    masked = pa.Array.from_buffers(values.type, n, [validity, *values.buffers()[1:]], null_count=n - int(good.sum()))
    return pc.cast(masked, pa.int64()), present & ~good


#: ``YYYY-MM-DDTHH:MM:SS``: where the digits are, and the separators (``--T::`` between them).
_TS_HEAD = 19
#: The lowest byte and how far above it a byte may be at each place: a digit, or the separator.
_TS_LOW = np.frombuffer(b"0000-00-00T00:00:00", dtype=np.uint8)[:, None]
_TS_SPAN = np.array([9 if c == "d" else 0 for c in "dddd-dd-ddTdd:dd:dd"], dtype=np.uint8)[:, None]
_FRAC = 9
_TS_WIDTH = _TS_HEAD + 1 + _FRAC + 1  # and the dot, the fraction and the Z
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _times(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ns, present, bad)`` of a time text column: UTC nanoseconds of the texts of the form
    ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` (a year 1900-2199, a valid date and time of day: what ``fields.ts`` reads
    the same), which rows hold a text (null and empty ones are absent), which hold another text (declined).

    numpy on the bytes of each value: its length, the separators and digits at their places, the last ``Z``,
    the fraction's digits; the fields (one matrix product of the digits) are checked (the days of the month,
    leap years) and counted in days since 1970 as ``datetime`` does (the proleptic Gregorian calendar: Howard
    Hinnant's ``days_from_civil``).
    """
    values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(values)
    ns = np.zeros(n, dtype=np.int64)
    layout = _lengths(values)
    if layout is None:
        return ns, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    starts, sizes, data, present = layout
    idx = np.flatnonzero(present)
    size = sizes[idx]
    fracs = size - (_TS_HEAD + 2)  # the fraction's digits, after the dot (none: no dot either)
    # the date and time, the dot, the fraction, the Z (and more): a row per place, so that every step below
    # works on contiguous rows (a reduction across a row of 19 bytes per value costs several times as much)
    head = np.ascontiguousarray(_gather(data, starts[idx], _TS_WIDTH).T)
    tail = np.arange(_FRAC)[:, None] < fracs  # the fraction's places
    frac = head[_TS_HEAD + 1: _TS_HEAD + 1 + _FRAC]
    # each byte within its place's range: a digit, or the separator (uint8: below the range wraps above it)
    good = (np.subtract(head[:_TS_HEAD], _TS_LOW) <= _TS_SPAN).all(axis=0)
    good &= (size == _TS_HEAD + 1) | ((fracs >= 1) & (fracs <= _FRAC))
    good &= head[np.minimum(size, _TS_WIDTH) - 1, np.arange(len(idx))] == ord("Z")
    good &= (size == _TS_HEAD + 1) | ((head[_TS_HEAD] == ord(".")) & (_DIGIT[frac] | ~tail).all(axis=0))
    d = head[:_TS_HEAD].astype(np.int64) - 48
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month, day, hour, minute, second = (d[k] * 10 + d[k + 1] for k in (5, 8, 11, 14, 17))
    good &= (year >= 1900) & (year <= 2199) & (month >= 1) & (month <= 12)
    month = np.where(good, month, 1)  # (an index below; bad rows are bad anyway)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    good &= (day >= 1) & (day <= _MONTH_DAYS[month] + ((month == 2) & leap))
    good &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # days since 1970-01-01 (days_from_civil; years >= 1900, so no negative era)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    nanos = np.zeros(len(idx), dtype=np.int64)
    for k in range(_FRAC):  # the digits after the fraction's last count as zeros
        nanos = nanos * 10 + np.where(tail[k], frac[k], 48) - 48
    ns[idx] = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000_000 + nanos
    bad = np.zeros(n, dtype=bool)
    bad[idx[~good]] = True
    return ns, present, bad


def _json_text(value: str) -> str:
    """``value`` (DuckDB's JSON text of a field), or :class:`_Decline` when it holds a number a round trip might
    not keep (:data:`_JSON_ODD`)."""
    if _JSON_ODD.search(value):
        raise _Decline(value[:40])
    return value


def _per_value(col: pa.ChunkedArray | pa.Array, fn: Callable[[Any], Any], typ: pa.DataType,
               bad: np.ndarray) -> pa.Array:
    """``fn`` applied once per distinct value of ``col`` (nulls included); rows where it raises are marked bad."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = pc.dictionary_encode(col, null_encoding="encode")
    out: list[Any] = []
    failed: list[int] = []
    for k, value in enumerate(enc.dictionary.to_pylist()):
        try:
            out.append(fn(value))
        except Exception:  # noqa: BLE001 - RecordError, a JSON round trip that fails...: decline
            out.append(None)
            failed.append(k)
    idx = enc.indices
    if failed:
        bad |= np.isin(idx.to_numpy(zero_copy_only=False), np.asarray(failed))
    return pa.array(out, type=typ).take(idx)


def _labels_of(pod_labels: str | None, labels: str | None) -> str | None:
    """``pod_labels`` the way :meth:`TetragonReader._row` computes it, from DuckDB's JSON text."""
    from kubeforensics.sources import tetragon
    from kubeforensics.sources.fields import as_json

    value = orjson.loads(_json_text(pod_labels)) if pod_labels is not None else None
    legacy = orjson.loads(_json_text(labels)) if labels is not None else None  # checked even when not used
    if value is None:
        value = tetragon._labels(legacy, "process.pod.labels")
    else:
        value = tetragon._obj(value, "process.pod.pod_labels")
    return as_json(value) if value is not None else None


def _host_namespaces(ns: str | None) -> list[str] | None:
    """``host_namespaces`` the way :func:`tetragon._process` computes it, from DuckDB's JSON text."""
    from kubeforensics.sources import tetragon

    if ns is None:
        return None
    return [
        name
        for name, v in tetragon._obj(orjson.loads(_json_text(ns)), "process.ns").items()
        if tetragon._obj(v, "process.ns.<name>").get("is_host") is True
    ]


def _pod_labels(t: pa.Table, bad: np.ndarray) -> pa.Array | pa.ChunkedArray:
    legacy = t.column("k_labels")
    if legacy.null_count == len(legacy):  # the usual case: one reference call per distinct label set
        return _per_value(t.column("k_pod_labels"), lambda v: _labels_of(v, None), pa.string(), bad)
    out: list[str | None] = []
    cache: dict[tuple[str | None, str | None], str | None] = {}
    for k, pair in enumerate(zip(t.column("k_pod_labels").to_pylist(), legacy.to_pylist())):
        try:
            if pair not in cache:
                cache[pair] = _labels_of(*pair)
            out.append(cache[pair])
        except Exception:  # noqa: BLE001 - the per-record path explains
            bad[k] = True
            out.append(None)
    return pa.array(out, type=pa.string())


def _redacted(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """``col`` through :func:`redact.text`: once per distinct value that :data:`_REDACT_RE2` (RE2, as the
    query used to) flags; the others are kept as they are."""
    from kubeforensics import redact

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = pc.dictionary_encode(col)  # nulls stay null indices
    uniq = enc.dictionary
    idx = np.flatnonzero(pc.match_substring_regex(uniq, _REDACT_RE2).to_numpy(zero_copy_only=False))
    if not len(idx):
        return col
    mask = np.zeros(len(uniq), dtype=bool)
    mask[idx] = True
    values = [redact.text(v) for v in uniq.take(pa.array(idx)).to_pylist()]
    return pc.replace_with_mask(uniq, pa.array(mask), pa.array(values, type=pa.string())).take(enc.indices)


_PROBE_COLUMNS = ("return_value", "decoded_args", "sock_family", "sock_protocol", "saddr", "daddr", "sport", "dport",
                  "file_path")


def _probe_cells(t: pa.Table, cols: dict[str, Any], bad: np.ndarray) -> None:
    """kprobe ``return`` and ``args`` through :func:`tetragon._probe`, the reference."""
    from kubeforensics.sources import tetragon

    n = t.num_rows
    todo = np.flatnonzero(t.column("is_kprobe").to_numpy(zero_copy_only=False))
    if not len(todo):
        return
    take = pa.array(todo)
    args = t.column("k_args").take(take).to_pylist()
    rets = t.column("k_ret").take(take).to_pylist()
    values: dict[str, list[Any]] = {c: [] for c in _PROBE_COLUMNS}
    for k in range(len(todo)):
        ev: dict[str, Any] = {}
        row: dict[str, Any] = {}
        try:
            if rets[k] is not None:
                ev["return"] = orjson.loads(_json_text(rets[k]))
            if args[k] is not None:
                ev["args"] = orjson.loads(_json_text(args[k]))
            tetragon._probe("process_kprobe", ev, row)
        except Exception:  # noqa: BLE001 - the per-record path explains
            bad[todo[k]] = True
            row = {}
        for c in _PROBE_COLUMNS:
            values[c].append(row.get(c))
    pos = np.full(n, -1, dtype=np.int64)
    pos[todo] = np.arange(len(todo), dtype=np.int64)
    positions = pa.array(pos, mask=pos < 0)
    for c, vals in values.items():
        cols[c] = pa.array(vals, type=PROCESSES.column(c).arrow_type).take(positions)

#: The integer columns and the query's texts of them (:func:`_ints`).
_INT_COLUMNS = {"pid": "k_pid", "tid": "k_tid", "uid": "k_uid", "auid": "k_auid", "parent_pid": "k_parent_pid",
                "exit_status": "k_status"}


def _convert(
    rb: pa.RecordBatch, offset: int, lines: _Lines, odd: np.ndarray, evidence: str, evidence_id: str
) -> tuple[pa.Table, np.ndarray]:
    """One DuckDB batch -> (processes rows of its ordinary events, line numbers of the declined ones)."""
    from kubeforensics.sources.fields import container_hex

    rows = np.arange(offset, offset + rb.num_rows, dtype=np.int64)
    line_of = lines.of(rows)
    ok = rb.column("ok").to_numpy(zero_copy_only=False) & ~np.isin(line_of, odd)
    for name in _TEXT_COLUMNS:
        ok[bulk_lines.odd_text_rows(rb.column(name))] = False
    t_ns, t_present, t_bad = _times(rb.column("k_t_txt"))
    st_ns, st_present, st_bad = _times(rb.column("k_start_time"))
    ok &= ~t_bad & ~st_bad & (t_present | st_present)  # no time at all: the reference raises
    ints: dict[str, pa.Array] = {}
    for name, k in _INT_COLUMNS.items():
        ints[name], int_bad = _ints(rb.column(k))
        ok &= ~int_bad
    t = pa.Table.from_batches([rb])
    if not ok.all():  # (a filter copies every column, even when it keeps every row)
        t = t.filter(pa.array(ok))
    kept = line_of[ok]
    n = t.num_rows
    bad = np.zeros(n, dtype=bool)
    cols: dict[str, Any] = {name: t.column(name) for name in t.column_names}

    cols["pod_labels"] = _pod_labels(t, bad)
    cols["host_namespaces"] = _per_value(t.column("k_ns"), _host_namespaces, pa.list_(pa.string()), bad)

    def hex_of(value: str | None) -> str | None:
        return container_hex(value)

    cid = _per_value(t.column("k_container_id"), hex_of, pa.string(), bad)
    docker = _per_value(t.column("k_docker"), hex_of, pa.string(), bad)
    cols["container_id"] = pc.coalesce(cid, docker)
    cols["args"] = _redacted(t.column("args"))
    cols["parent_args"] = _redacted(t.column("parent_args"))
    _probe_cells(t, cols, bad)

    line = pa.array(kept, type=pa.int64())
    cols["line"] = line
    cols["event_id"] = pc.binary_join_element_wise(evidence_id, pc.cast(line, pa.string()), ":")
    cols["evidence"] = pa.repeat(evidence, n)
    keep = None if ok.all() else pa.array(ok)
    for name, v in ints.items():
        cols[name] = v if keep is None else v.filter(keep)
    when = np.where(t_present, t_ns, st_ns)[ok]
    cols["time"] = pa.array(when).cast(PROCESSES.column("time").arrow_type)
    cols["start_time"] = pa.array(st_ns[ok], mask=~st_present[ok]).cast(PROCESSES.column("start_time").arrow_type)
    arrays = []
    for field in PROCESSES.arrow_schema:
        c = cols.get(field.name)
        if c is None:
            c = pa.nulls(n, field.type)
        elif c.type != field.type:
            c = c.cast(field.type)
        arrays.append(c)
    table = pa.Table.from_arrays(arrays, schema=PROCESSES.arrow_schema)
    rejected = line_of[~ok]
    if bad.any():
        rejected = np.sort(np.concatenate([rejected, kept[bad]]))
        table = table.filter(pa.array(~bad))
    return table, rejected
