"""Vectorised (DuckDB) bulk path of the Falco reader: whole JSON-lines alert files at parse speed.

:func:`bulk` reads Falco JSON alerts (``json_output: true``, one object per line;
falcosidekick payloads, which add ``uuid``, alike) with DuckDB's ``read_ndjson``
and an explicit schema, and computes the ``alerts`` columns in SQL (checked per
batch, see below) for the *ordinary* alerts.  Every other line is *declined*: its line number goes into
``BulkResult.python_lines`` and the engine reads it through
:meth:`~kubeforensics.sources.falco.FalcoReader.extract`, the reference
implementation.  Cells that need Python run through the reference functions
themselves: container ids (:func:`fields.container_hex`, once per distinct
value), text that may hold a secret (:func:`redact.text`: ``output``,
``proc_cmdline``, ``fd_name``, ``ka_uri``, only where the RE2 pre-checks
:data:`_REDACT_RE2` and :data:`_FIELDS_FLAG_RE2` fire) and ``output_fields``
whose values the redaction might change (:func:`falco._fields_json`), so those
columns are identical by construction.  Keys are judged once per distinct key
list by the reference's own test (``redact._secret_key``): the string values of
secret-like keys (``ka.auth.decision`` in every ``k8s_audit`` alert) become
:data:`redact.MARK` in the JSON text, as ``redact.k8s_object`` makes them.

The query itself only reads, extracts the ``output_fields`` values and keys, casts the time and ranks the
priority; the checks that need a pattern run per batch in the consumer (:func:`_convert`), off DuckDB's
threads and several times faster than SQL's ``regexp_matches``: numpy on each value's first byte
(:func:`_odd_rows`), Arrow's RE2 over the texts (the same patterns; for ``output_fields`` one pass of
their union, :data:`_OF_ANY_RE2`, then each on the few texts it matches: :func:`_fields_checks`), and once
per distinct text for ``tags`` and ``proc.pid``.

``output_fields`` is read as JSON: DuckDB gives its compact text, re-serialised
the way orjson writes it (tested: the same escapes for every ASCII character
but the control characters DuckDB writes as ``\\u000B``-style upper-case hex,
which :data:`_ESC_RE2` sends to Python).  When its keys are already sorted and
distinct (Falco writes them sorted), that text *is* the reference's
``as_json(redact.k8s_object(of))``; otherwise the reference function runs on it.

Declined to the per-record path (it quarantines or keeps them exactly):

* an alert without ``rule``, a priority that is not a plain Falco priority word,
  a ``time`` that is not ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` (absent times fall
  back to ``output_fields`` there), a line with neither ``output`` nor
  ``output_fields`` (the sniff could route it to another reader);
* a top-level text field holding an object, array, 19-digit integer, a number
  with a 3-digit exponent, NaN or Infinity; ``tags`` other than null or a list
  of plain strings;
* ``output_fields`` other than null or a flat object of strings, integers
  (within 64 bits), booleans and nulls (:data:`_FLAT_RE2`), or with a duplicate
  key; a ``proc.pid`` that is not a plain decimal integer.

A *structural* surprise (malformed JSON, invalid UTF-8, a lone surrogate,
duplicate top-level keys, a line longer than :data:`MAX_OBJECT_BYTES`, a
truncated gzip stream) makes DuckDB raise: the batches already streamed stand
and every line from ``BulkResult.next_line`` on goes record by record, with the
line mapping checks, scans and connection of
:mod:`~kubeforensics.sources.audit_fast` and :mod:`~kubeforensics.sources.bulk_lines`.

Difference from the per-record path, by design (as for audit): JSON that orjson
refuses but DuckDB accepts (``NaN``, ``Infinity``) *in a field the alerts table
does not read* is ingested here, where the per-record path quarantines the line
as invalid JSON.  Falco never writes such JSON.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from kubeforensics.redact import MAYBE_SECRET_PATTERN
from kubeforensics.schema import ALERTS
from kubeforensics.sources import audit_fast, bulk_lines
from kubeforensics.sources.audit_fast import (
    _CHUNK,
    _SCAN_CHUNK,
    _connect,
    _json_lines_head,
    _Lines,
    _ts_ns,
    scan_lines,
)
from kubeforensics.sources.falco import PRIORITIES

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

log = logging.getLogger(__name__)

__all__ = ["BATCH_ROWS", "MAX_OBJECT_BYTES", "MIN_BULK_BYTES", "bulk", "scan_plain"]

#: Batch size, longest line and smallest file for the bulk path: the audit path's settings.
BATCH_ROWS = audit_fast.BATCH_ROWS
MAX_OBJECT_BYTES = audit_fast.MAX_OBJECT_BYTES
MIN_BULK_BYTES = audit_fast.MIN_BULK_BYTES

_V = "VARCHAR"
_COLUMNS: dict[str, str] = {
    "time": _V, "rule": _V, "priority": _V, "source": _V, "hostname": _V, "output": _V, "uuid": _V,
    "tags": "JSON", "output_fields": "JSON",
}
#: ``output_fields`` keys read into columns, by output column.
_FIELDS: dict[str, str] = {
    "k_cid": "container.id", "k_repo": "container.image.repository", "k_tag": "container.image.tag",
    "k_image": "container.image", "k_ns": "k8s.ns.name", "k_pod": "k8s.pod.name",
    "proc_name": "proc.name", "proc_cmdline": "proc.cmdline", "proc_pname": "proc.pname",
    "proc_exepath": "proc.exepath", "k_pid": "proc.pid", "user_name": "user.name", "fd_name": "fd.name",
    "ka_user": "ka.user.name", "ka_verb": "ka.verb", "ka_resource": "ka.target.resource",
    "ka_namespace": "ka.target.namespace", "ka_name": "ka.target.name", "ka_uri": "ka.uri",
    "ka_response_code": "ka.response.code",
}
#: Priority words ``falco.priority`` accepts (lower case) and their rank.
_RANKS: dict[str, int] = {
    **{p.lower(): n for n, p in enumerate(PRIORITIES)},
    "info": 6, "warn": 4, "err": 3, "crit": 2, "emerg": 0,
}

#: A top-level value read as text that was not a JSON string/integer/boolean/ordinary number (as in
#: ``hubble_fast._ODD``): an object or array, a 19-digit integer, a 3-digit exponent, NaN or Infinity.
#: Anchored at the start of the value, so that RE2 reads only its first characters.
_ODD_RE2 = r"^([\[{]|-?\d{19}|-?\d[\d.]*[eE][-+]?\d{3,}$|-?(?i:nan|inf|infinity)$)"
#: Text that ``redact.text`` could change: the shared secret pre-check, or any non-ASCII character
#: (case folding of non-ASCII letters differs between RE2 and Python).
_REDACT_RE2 = MAYBE_SECRET_PATTERN + r"|[^\x00-\x7F]"
_STR = r'"(?:[^"\\]|\\.)*"'
_SCALAR = r"(?:" + _STR + r"|0|-?[1-9]\d{0,17}|[1-9]\d{18}|true|false|null)"
#: ``output_fields`` text (DuckDB's compact JSON) that is a flat object of strings, integers that orjson
#: and DuckDB both read exactly (64 bits), booleans and nulls; anything else is declined.
_FLAT_RE2 = r"^\{" + _STR + ":" + _SCALAR + r"(?:," + _STR + ":" + _SCALAR + r")*\}$"
#: A number in (valid, compact) JSON text that is not such an integer: a fraction or exponent (DuckDB writes
#: integers beyond 64 bits that way too), ``-0``, NaN, Infinity.  Text starting with ``{`` with no bracket
#: after its first character and none of these is a flat object without the (slower) :data:`_FLAT_RE2`.
_NOT_INT_RE2 = r":(-?\d+[.eE]|-\d{19}|\d{20}|-0[,}]|-?(?i:nan|inf))"
#: ``output_fields`` text holding a value ``redact.text`` might change: the shared pre-check, with
#: ``authorization`` alone (an escaped quote or control character may stand between it and the ``:``),
#: or any non-ASCII character.  Such cells (and the columns read from them) go through the reference
#: functions.  Keys are checked exactly, per distinct key list (:func:`_key_lists`).
_FIELDS_FLAG_RE2 = MAYBE_SECRET_PATTERN + r"|authorization|[^\x00-\x7F]"
#: An escape DuckDB may write otherwise than orjson (it writes upper-case hex: ``\u000B``).
_ESC_RE2 = r'\\[^"\\bfnrt]'
#: What any of the ``output_fields`` patterns could see, in one pass: a text that starts with ``{`` and that this
#: does not match passes the quick flat test (no ``[``, no ``{`` after the first character, no
#: :data:`_NOT_INT_RE2`) and neither :data:`_ESC_RE2` nor :data:`_FIELDS_FLAG_RE2` matches it.  (Flags set
#: inside a group end with it: ``(?i)`` stays within the first.)
_OF_ANY_RE2 = "(?:" + _FIELDS_FLAG_RE2 + ")|" + _NOT_INT_RE2 + "|" + _ESC_RE2 + r"|\[|(?s:.)\{"
#: Keys ``redact._walk`` treats otherwise than by their name alone (``name``/``value`` pairs, ``kind``).
_WALK_KEYS = frozenset({"name", "value", "kind", "kubectl.kubernetes.io/last-applied-configuration"})
#: Secret-like keys whose values are replaced in the JSON text (others send the cell to Python).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_TAGS_RE2 = r'^\[("[^"\\]*"(,"[^"\\]*")*)?\]$'
_PID_RE2 = r"^(0|-?[1-9]\d{0,17})$"
#: Top-level fields read as text and checked with :data:`_ODD_RE2` (``time`` and ``priority`` must match
#: stricter forms anyway), and the first characters an odd value can start with (others need no regex).
_TEXTS = ("rule", "falco_source", "hostname", "output", "uuid")
_ODD_FIRST = np.zeros(256, dtype=bool)
_ODD_FIRST[list(b"[{-0123456789nNiI")] = True
_OPEN_BRACE = np.uint8(ord("{"))
#: The quick flat test's shape: ``{`` first, then no ``{`` or ``[`` (with no :data:`_NOT_INT_RE2` match, a flat
#: object of strings, 64-bit integers, booleans and nulls; :data:`_FLAT_RE2` decides for the other texts).
_QUICK_RE2 = r"^\{[^{\[]*$"


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql(path: str, gz: bool) -> str:
    """The query: one row per non-blank line, ``ok`` and the ``alerts`` columns (valid where ``ok``).

    ``ok`` holds the checks that need no pattern (a rule, a known priority, a time of the expected form,
    ``output`` or ``output_fields``); the others run per batch in :func:`_convert`, on the texts the query
    gives: the top-level texts, ``tags_txt`` (the JSON text of ``tags``), ``k_pid`` (``proc.pid`` as text)
    and ``output_fields`` (its JSON text).  ``of_keys`` (the keys of ``output_fields`` joined by U+001F, see
    :func:`_fields_ok`) is checked per distinct value there too: duplicate keys decline the row, unsorted
    keys send its ``output_fields`` cell to the reference function.
    """
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _COLUMNS.items()) + "}"
    src = (
        f"read_ndjson({_lit(path)}, columns={spec}, format='newline_delimited', "
        f"records=true, ignore_errors=false, compression='{'gzip' if gz else 'none'}', "
        f"maximum_object_size={MAX_OBJECT_BYTES})"
    )
    paths = ", ".join(_lit('$."' + key + '"') for key in _FIELDS.values())
    picks = ",\n    ".join(f"ofv[{n}] AS {col}" for n, col in enumerate(_FIELDS, start=1))
    ranks = " ".join(f"WHEN {_lit(word)} THEN {rank}" for word, rank in _RANKS.items())
    names = ", ".join(_lit(p) for p in PRIORITIES)
    ok = "rule IS NOT NULL AND rule <> '' AND rank IS NOT NULL AND t_ns IS NOT NULL " \
        "AND (output IS NOT NULL OR of_txt IS NOT NULL)"
    return f"""
WITH raw AS (
  SELECT *,
    CAST(output_fields AS {_V}) AS of_txt,
    CAST(tags AS {_V}) AS tags_txt,
    json_extract_string(output_fields, [{paths}]) AS ofv,
    CASE WHEN strlen(priority) = length(priority) THEN CASE lower(priority) {ranks} END END AS rank,
    {_ts_ns('time')} AS t_ns
  FROM {src}
), cols AS (SELECT *, {picks} FROM raw)
SELECT
  coalesce({ok}, false) AS ok,
  time AS k_time, rule, uuid,
  t_ns AS time,
  [{names}][rank + 1] AS priority, rank::INTEGER AS priority_rank,
  source AS falco_source, hostname, output,
  tags_txt,
  k_cid,
  CASE WHEN coalesce(k_repo, '') <> '' THEN CASE WHEN coalesce(k_tag, '') <> '' THEN k_repo || ':' || k_tag
       ELSE k_repo END ELSE k_image END AS image,
  CASE WHEN ka_resource IN ('pods', 'pod') AND coalesce(k_ns, '') = '' THEN ka_namespace ELSE k_ns END AS namespace,
  CASE WHEN ka_resource IN ('pods', 'pod') AND coalesce(k_pod, '') = '' THEN ka_name ELSE k_pod END AS pod,
  proc_name, proc_cmdline, proc_pname, proc_exepath,
  k_pid, CASE WHEN k_pid <> '' THEN TRY_CAST(k_pid AS BIGINT) END AS proc_pid,
  user_name, fd_name, ka_user, ka_verb, ka_resource, ka_namespace, ka_name, ka_uri, ka_response_code,
  CASE WHEN of_txt <> '{{}}' THEN of_txt END AS output_fields,
  CASE WHEN of_txt <> '{{}}' THEN array_to_string(json_keys(output_fields), chr(31)) END AS of_keys
FROM cols
"""


def bulk(path: str | Path, evidence: str, evidence_id: str) -> BulkResult | None:
    """Read a Falco JSON-lines alert file with DuckDB; decline what only the per-record path can do.

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
        lines).  Otherwise the ``alerts`` rows of the ordinary alerts stream out
        of ``batches`` (at most :data:`BATCH_ROWS` rows each); the declined line
        numbers, the record count and where the bulk path stopped are complete
        once ``batches`` is exhausted (see :class:`~kubeforensics.sources.base.BulkResult`).
    """
    path = Path(path)
    gz = bulk_lines.bulk_gzip(path, MIN_BULK_BYTES)
    if gz is None or not _json_lines_head(path):
        return None
    return bulk_lines.streamed(lambda result: _stream(path, gz, evidence, evidence_id, result))


def scan_plain(path: Path) -> tuple[_Lines, np.ndarray] | None:
    """:func:`audit_fast.scan_lines` for an uncompressed file, also giving where each line starts
    (``bulk_lines.scan_plain``, with the audit scan's 1 MB reads and this module's longest line)."""
    return bulk_lines.scan_plain(path, chunk=_SCAN_CHUNK, max_line=MAX_OBJECT_BYTES)


#: Fields that identify a line: (path of JSON keys, DuckDB column), compared by ``bulk_lines.matches``.
_KEYS: bulk_lines.Keys = (
    (("time",), "k_time"), (("rule",), "rule"), (("hostname",), "hostname"), (("uuid",), "uuid"),
    (("output",), "output"),
)


def _stream(path: Path, gz: bool, evidence: str, evidence_id: str, result: BulkResult) -> Iterator[pa.Table]:
    """The batches of :func:`bulk` (``bulk_lines.stream``); keeps ``result`` up to date before each one is yielded.

    As ``hubble_fast._stream``: a batch whose first or last row does not carry
    the identifying fields of the line it is mapped to is dropped and the stream
    ends with ``result.complete`` False (so does a DuckDB error, or a file that
    is not JSON lines of objects); the lines from ``result.next_line`` on then go
    record by record.
    """

    def open_lines() -> tuple[_Lines | None, bulk_lines.Cursor | None]:
        return bulk_lines.open_lines(path, gz, _KEYS, scan_gz=scan_lines, scan=scan_plain, chunk=_CHUNK,
                                     max_line=MAX_OBJECT_BYTES)

    def convert(rb: pa.RecordBatch, offset: int, lines: _Lines) -> tuple[pa.Table, np.ndarray]:
        return _convert(rb, offset, lines, evidence, evidence_id)

    yield from bulk_lines.stream(result, path, _sql(str(path), gz), open_lines, convert, connect=_connect,
                                 batch_rows=BATCH_ROWS, name="falco-bulk")


# ------------------------------------------------------------------------------- checks, per batch
def _odd_rows(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows of a text column holding a value :data:`_ODD_RE2` matches: numpy on each value's first byte (the
    string offsets into the data buffer), the regex (Arrow's RE2, anchored) only on values starting with a
    byte of :data:`_ODD_FIRST` (or on all, when most do: a copy of them would cost more)."""
    values, _, _ = bulk_lines.flat_strings(col)
    layout = bulk_lines.string_bytes(values)
    if layout is None:
        return np.zeros(0, dtype=np.int64)
    offsets, data, present = layout
    cand = np.flatnonzero(present & _ODD_FIRST[data[np.minimum(offsets[:-1], len(data) - 1)]])
    if not len(cand):
        return cand
    if 2 * len(cand) > len(values):
        hit = pc.match_substring_regex(values, _ODD_RE2).fill_null(False).to_numpy(zero_copy_only=False)
        return cand[hit[cand]]
    hit = pc.match_substring_regex(values.take(pa.array(cand)), _ODD_RE2).to_numpy(zero_copy_only=False)
    return cand[hit]


def _tags(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """``tags`` from its JSON text (null: no tags): which rows hold null or a list of plain strings
    (:data:`_TAGS_RE2`; the others are declined), and the list column.  Once per distinct text."""
    values, idx = bulk_lines.dictionary(col)
    good = pc.match_substring_regex(values, _TAGS_RE2).to_numpy(zero_copy_only=False)
    lists = [orjson.loads(text) if g else None for text, g in zip(values.to_pylist(), good.tolist())]
    lists.append(None)
    return np.append(good, True)[idx], pa.array(lists, type=pa.list_(pa.string())).take(pa.array(idx))


def _pid_ok(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows whose ``proc.pid`` text is null, empty or a plain decimal (:data:`_PID_RE2`): the query's
    ``BIGINT`` cast is the per-record path's integer for those.  Once per distinct text."""
    values, idx = bulk_lines.dictionary(col)
    good = pc.match_substring_regex(values, _PID_RE2).to_numpy(zero_copy_only=False)
    good |= pc.equal(values, "").to_numpy(zero_copy_only=False)
    return np.append(good, True)[idx]


def _matches(col: pa.Array, pattern: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``col`` (or of ``col``'s ``rows``): whether RE2 ``pattern`` matches its text (null: no)."""
    if rows is not None:
        col = col.take(pa.array(rows))
    hit = pc.match_substring_regex(col, pattern)
    if hit.null_count:
        hit = hit.fill_null(False)
    return hit.to_numpy(zero_copy_only=False)


def _fields_checks(of: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``output_fields`` texts (null: none, or ``{}``): ``(ok, esc, flag)``.

    * ``ok``: null, or a flat object of strings, 64-bit integers, booleans and nulls: the quick test
      (:data:`_QUICK_RE2` and no :data:`_NOT_INT_RE2` match) or :data:`_FLAT_RE2`;
    * ``esc``: :data:`_ESC_RE2` matches (the cell goes to the reference function);
    * ``flag``: :data:`_FIELDS_FLAG_RE2` matches (the cell and the value columns go to ``redact.text``).

    Pattern matches are partial (RE2, as SQL's ``regexp_matches``).  One pass of :data:`_OF_ANY_RE2` settles
    the texts starting with ``{`` that it does not match (ok, neither escape nor flag: nearly all); the
    patterns themselves run on the others.

    A key holding U+001F (which splits it in ``of_keys``) needs no check: DuckDB writes it escaped
    (``\\u001F``), so ``esc`` sends the cell to the reference function, and the split can only add
    duplicates (declining the row), never hide one.
    """
    n = len(of)
    ok = np.ones(n, dtype=bool)
    esc = np.zeros(n, dtype=bool)
    flag = np.zeros(n, dtype=bool)
    layout = bulk_lines.string_bytes(of)
    if layout is None:  # all null (a text of JSON is never empty)
        return ok, esc, flag
    offsets, data, present = layout
    brace = present & (data[np.minimum(offsets[:-1], len(data) - 1)] == _OPEN_BRACE)
    valid = of.is_valid().to_numpy(zero_copy_only=False) if of.null_count else np.ones(n, dtype=bool)
    look = np.flatnonzero(valid & (~brace | _matches(of, _OF_ANY_RE2)))
    if len(look):
        texts = of.take(pa.array(look))
        ok[look] = (_matches(texts, _QUICK_RE2) & ~_matches(texts, _NOT_INT_RE2)) | _matches(texts, _FLAT_RE2)
        esc[look] = _matches(texts, _ESC_RE2)
        flag[look] = _matches(texts, _FIELDS_FLAG_RE2)
    return ok, esc, flag


# ------------------------------------------------------------------------------- cells through Python
def _replace_rows(col: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """``col`` with its ``rows`` (increasing) replaced by ``values``.

    ``values`` spread to the rows (null elsewhere) and coalesced with ``col``: several times cheaper for long
    texts than ``replace_with_mask`` or one ``take`` of both; with a null among ``values``, that take."""
    values = values.cast(col.type)
    if values.null_count:
        idx = np.arange(len(col), dtype=np.int64)
        idx[rows] = len(col) + np.arange(len(rows), dtype=np.int64)
        return pa.concat_arrays([col, values]).take(pa.array(idx))
    where = np.zeros(len(col), dtype=np.int64)
    where[rows] = np.arange(len(rows), dtype=np.int64)
    missing = np.ones(len(col), dtype=bool)
    missing[rows] = False
    return pc.coalesce(values.take(pa.array(where, mask=missing)), col)


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
        except Exception:  # noqa: BLE001 - the per-record path explains
            out.append(None)
            failed.append(k)
    idx = enc.indices
    if failed:
        bad |= np.isin(idx.to_numpy(zero_copy_only=False), np.asarray(failed))
    return pa.array(out, type=typ).take(idx)


def _flagged(col: pa.ChunkedArray | pa.Array, flag: np.ndarray, fn: Callable[[Any], Any],
             bad: np.ndarray) -> pa.ChunkedArray | pa.Array:
    """``fn`` (a reference function) applied to the rows where ``flag`` is set; rows where it raises are bad."""
    idx = np.flatnonzero(flag)
    if not len(idx):
        return col
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    values: list[Any] = []
    for i, value in zip(idx.tolist(), arr.take(pa.array(idx)).to_pylist()):
        try:
            values.append(fn(value))
        except Exception:  # noqa: BLE001 - RecordError, RecursionError, invalid JSON: the per-record path explains
            bad[i] = True
            values.append(None)
    return _replace_rows(arr, idx, pa.array(values, type=pa.string()))

def _fields_of(text: str) -> str | None:
    """``output_fields`` the way :meth:`FalcoReader.extract` stores it, from DuckDB's JSON text."""
    from kubeforensics.sources import falco

    return falco._fields_json(orjson.loads(text))


class _KeyList:
    """What the keys of one ``output_fields`` key list mean for its cells."""

    __slots__ = ("dup", "python", "secret")

    def __init__(self, text: str) -> None:
        from kubeforensics import redact

        names = text.split("\x1f")
        self.dup = len(set(names)) != len(names)  # the row is declined
        # not in orjson's order, or a key the walk treats specially: the reference function
        self.python = names != sorted(names) or not _WALK_KEYS.isdisjoint(names)
        # keys whose string values redact.k8s_object replaces, as redact._walk tests them
        self.secret = [k for k in names if k in ("client-certificate-data", "bearerToken") or redact._secret_key(k)]
        if any(not _PLAIN_KEY.fullmatch(k) for k in self.secret):
            self.python = True


def _key_lists(keys: pa.ChunkedArray, bad: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per row: whether its ``output_fields`` cell needs the reference function, and the rows per
    secret-like key whose string value is replaced; rows with a duplicate key are marked bad.
    Decided once per distinct key list (``keys``: the keys joined by U+001F)."""
    col = keys.combine_chunks()
    enc = pc.dictionary_encode(col)  # nulls stay null: no output_fields
    idx = enc.indices.to_numpy(zero_copy_only=False)
    valid = enc.indices.is_valid().to_numpy(zero_copy_only=False)
    lists = [_KeyList(text) for text in enc.dictionary.to_pylist()]

    def rows(which: list[int]) -> np.ndarray:
        if not which:
            return np.zeros(len(col), dtype=bool)
        return np.isin(idx, np.asarray(which)) & valid

    bad |= rows([k for k, kl in enumerate(lists) if kl.dup])
    python = rows([k for k, kl in enumerate(lists) if kl.python])
    secret: dict[str, list[int]] = {}
    for k, kl in enumerate(lists):
        for name in kl.secret:
            secret.setdefault(name, []).append(k)
    return python, {name: rows(which) & ~python for name, which in secret.items()}


def _mark_secret_values(col: pa.Array, secret: dict[str, np.ndarray], skip: np.ndarray) -> pa.Array:
    """The string value of each secret-like key replaced by ``redact.MARK`` in the JSON text of the rows
    given (not in ``skip``).  In DuckDB's compact text of a flat object, ``"key":"`` after ``{`` or ``,``
    can only be that key and the start of its string value (a quote inside a string is escaped, and a key
    of these characters holds none); a value of another type stays, as ``redact._walk`` leaves it."""
    from kubeforensics import redact

    for name, where in secret.items():
        rows = np.flatnonzero(where & ~skip)
        if not len(rows):
            continue
        key = name.replace(".", "\\.")
        take = pa.array(rows)
        new = pc.replace_substring_regex(col.take(take), pattern=f'([{{,])"{key}":"(?:[^"\\\\]|\\\\.)*"',
                                         replacement=f'\\1"{name}":"{redact.MARK}"', max_replacements=1)
        col = _replace_rows(col, rows, new)
    return col


def _convert(rb: pa.RecordBatch, offset: int, lines: _Lines, evidence: str, evidence_id: str
             ) -> tuple[pa.Table, np.ndarray]:
    """One DuckDB batch -> (alerts rows of its ordinary alerts, line numbers of the declined ones)."""
    from kubeforensics import redact
    from kubeforensics.sources.fields import container_hex

    ok = rb.column("ok").to_numpy(zero_copy_only=False).copy()
    for name in _TEXTS:
        ok[_odd_rows(rb.column(name))] = False
    tags_ok, tags = _tags(rb.column("tags_txt"))
    ok &= tags_ok
    ok &= _pid_ok(rb.column("k_pid"))
    of = rb.column("output_fields")
    # the shape; an escape DuckDB may write otherwise than orjson (the reference function); a value redact.text
    # might change (a superset)
    of_ok, esc, fields_flag = _fields_checks(of)
    ok &= of_ok
    output_flag = _matches(rb.column("output"), _REDACT_RE2)
    rows = np.arange(offset, offset + rb.num_rows, dtype=np.int64)
    line_of = lines.of(rows)
    t = pa.Table.from_batches([rb])
    if not ok.all():  # (filtering copies every column)
        keep = pa.array(ok)
        t, tags = t.filter(keep), tags.filter(keep)
        esc, fields_flag, output_flag = esc[ok], fields_flag[ok], output_flag[ok]
    kept = line_of[ok]
    n = t.num_rows
    bad = np.zeros(n, dtype=bool)
    cols: dict[str, Any] = {name: t.column(name) for name in t.column_names}

    cols["tags"] = tags
    cols["container_id"] = _per_value(t.column("k_cid"), container_hex, pa.string(), bad)
    cols["output"] = _flagged(t.column("output"), output_flag, redact.text, bad)
    for name in ("proc_cmdline", "fd_name", "ka_uri"):
        cols[name] = _flagged(t.column(name), fields_flag, redact.text, bad)
    by_keys, secret = _key_lists(t.column("of_keys"), bad)
    python = fields_flag | esc | by_keys
    fields = t.column("output_fields").combine_chunks()
    if secret:
        fields = _mark_secret_values(fields, secret, python)
    cols["output_fields"] = _flagged(fields, python, _fields_of, bad)

    line = pa.array(kept, type=pa.int64())
    cols["line"] = line
    cols["event_id"] = pc.binary_join_element_wise(evidence_id, pc.cast(line, pa.string()), ":")
    cols["evidence"] = pa.repeat(evidence, n)
    cols["time"] = pc.cast(t.column("time"), pa.int64()).cast(ALERTS.column("time").arrow_type)
    arrays = []
    for field in ALERTS.arrow_schema:
        c = cols[field.name]
        if c.type != field.type:
            c = c.cast(field.type)
        arrays.append(c)
    table = pa.Table.from_arrays(arrays, schema=ALERTS.arrow_schema)
    rejected = line_of[~ok]
    if bad.any():
        rejected = np.sort(np.concatenate([rejected, kept[bad]]))
        table = table.filter(pa.array(~bad))
    return table, rejected
