"""Vectorised (DuckDB) bulk path of the audit reader: whole JSON-lines files at parse speed.

:func:`bulk` reads an audit log with DuckDB's ``read_ndjson`` and an explicit
schema, and computes the ``audit`` columns in SQL for the *ordinary* events:
``kind: Event`` records without a request or response object, whose fields all
have the types the API server writes and whose text cannot hold a secret.
Every other line is *declined*: its line number goes into
``BulkResult.python_lines`` and the engine reads it through
:meth:`~kubeforensics.sources.audit.AuditReader.extract`, the reference
implementation.  The exact Python functions still run for the few cells that
need them (exec/attach command decoding, request-URI and status-message
redaction), so those columns are identical by construction.

The query checks the kind, the times, the request/response objects, the status code and the
impersonation; the consumer checks the rest per batch, off DuckDB's per-row path: the string fields and
lists with numpy (:func:`_odd_strings`), ``user.extra`` and ``annotations`` once per distinct text
(:func:`_extra_cells`, :func:`_ann_cells`).

The rows stream out in batches of at most :data:`BATCH_ROWS` (the case store
writes each one to Parquet and drops it), so memory does not grow with the file.
DuckDB computes them in a worker thread two batches ahead of the consumer, while
the line scan, the checks below, the conversion and the case store run.  The
whole file goes through the per-record path (``bulk`` returns None) when it is
small or starts like a whole-file document (an array, a pretty-printed object);
so does a file the line scan finds is not JSON lines of objects (``next_line`` 1).
The bulk path stops part-way, and every line after the last one its yielded
batches cover goes through the per-record path (which quarantines precisely), when

* DuckDB cannot read a line with the schema (malformed JSON, a key field of the
  wrong JSON type, duplicate keys, a line longer than :data:`MAX_OBJECT_BYTES`,
  a truncated gzip stream): it raises, possibly after streaming some batches;
* a batch's rows do not map to their lines.  DuckDB returns one row per
  non-blank line in file order (with ``ignore_errors=false`` it refuses a line
  holding two objects or a bare CR between records rather than splitting it),
  and row ``i`` is mapped to the ``i``-th non-blank line counted by
  :func:`scan_plain` (which also keeps where every line starts, so a check reads
  just the line it compares) or, for gzip files, :func:`scan_lines`.  Before a batch is yielded, its first and last rows are
  compared with the raw lines they are mapped to (auditID, stage, verb,
  requestURI and the three timestamps): a line skipped or split anywhere before
  a batch's last row shifts that row and is caught, so no wrongly numbered row
  is ever yielded;
* DuckDB returns fewer rows than there are lines (the rows it did return were
  checked): the lines after the last one go record by record.

Differences from the per-record path, by design:

* ``annotations`` and ``user_extra`` hold DuckDB's compact JSON text, with the
  keys in their original order (the per-record path sorts them): equal once
  parsed, which is how every consumer reads these columns.
* JSON that orjson refuses but DuckDB's parser accepts (``NaN``, ``Infinity``,
  a number beyond double range, a trailing comma) *in a field the audit table
  does not read* is ingested here, where the per-record path quarantines the
  line as invalid JSON.  The Kubernetes API server never writes such JSON.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from kubeforensics.redact import MAYBE_SECRET_PATTERN
from kubeforensics.schema import AUDIT
from kubeforensics.sources import audit, bulk_lines
from kubeforensics.sources.records import BOM, _is_multiline_document, open_evidence

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

log = logging.getLogger(__name__)

#: DuckDB's working-memory cap; results stream out in batches of BATCH_ROWS.
MEMORY_LIMIT = "1GB"
BATCH_ROWS = 100_000
#: Longest line DuckDB accepts: a longer one makes it fail there, and the lines from the last batch it
#: streamed on go record by record.  DuckDB's read buffers scale with it, and with 64 MB its peak memory
#: grew with the file size (+180 MB from a 50 MB to a 200 MB file; +20 MB with 16 MB).
MAX_OBJECT_BYTES = 16 * 1024 * 1024
#: Smaller files go record by record: starting DuckDB costs more than it saves (and rows keep file order).
MIN_BULK_BYTES = 1024 * 1024
_CHUNK = 16 * 1024 * 1024
#: Reads of the line scan of an uncompressed file: its arrays stay in the CPU caches (0.16 -> 0.12 CPU-s per
#: 300 MB against 16 MB reads).
_SCAN_CHUNK = 1024 * 1024

_V = "VARCHAR"
#: String leaves are read as VARCHAR: DuckDB renders numbers and booleans there exactly as
#: ``fields.text`` does (``123``, ``1.5``, ``1e-07``, ``true``); objects, arrays and integers
#: past 64 bits (which orjson reads as floats) are caught by :func:`_odd_strings` and declined.
_COLUMNS: dict[str, str] = {
    "kind": _V, "apiVersion": _V, "level": _V, "auditID": _V, "stage": _V, "requestURI": _V, "verb": _V,
    "userAgent": _V, "requestReceivedTimestamp": _V, "stageTimestamp": _V, "timestamp": _V, "metadata": "JSON",
    "user": f"STRUCT(username {_V}, uid {_V}, groups {_V}[], extra JSON)",
    "impersonatedUser": "JSON", "sourceIPs": f"{_V}[]",
    "objectRef": f"STRUCT(resource {_V}, subresource {_V}, namespace {_V}, name {_V}, apiGroup {_V}, "
                 f"apiVersion {_V}, uid {_V})",
    "responseStatus": f"STRUCT(code {_V}, reason {_V}, message {_V})",
    "annotations": "JSON", "requestObject": "JSON", "responseObject": "JSON",
}
#: The output columns of the string fields (``kind``, the three timestamps and ``responseStatus.code`` have
#: stricter checks of their own in the query) and of the two string lists, checked per batch by the consumer
#: (:func:`_odd_strings`): a value that was not a JSON string/number/boolean, or a 64-bit-overflowing
#: integer (``bulk_lines.ODD_TEXT_RE2``), or a list holding a null, declines its row.  Formerly 20 regular
#: expressions per row in the query; now numpy on each value's first bytes and a regex on the few candidates.
_STRING_COLUMNS = (
    "audit_version", "level", "audit_id", "stage", "request_uri", "verb", "user_agent", "user", "user_uid",
    "resource", "subresource", "namespace", "name", "api_group", "api_version", "object_uid", "status_reason",
    "status_message", "user_groups", "source_ips",
)
#: Same words as ``redact._MAYBE_SECRET`` (RE2 syntax; tested to agree on ASCII text).
MAYBE_SECRET_RE2 = MAYBE_SECRET_PATTERN  # one pattern, shared with kubeforensics.redact
#: ``audit._URI_SECRET_HINTS`` as one case-insensitive RE2 pattern.
URI_HINTS_RE2 = r"(?i)bearer|basic|token|passw|secret|api|key|eyj|://|auth|cred"
_NON_ASCII = r"[^\x00-\x7F]"
#: Request/response object text that ``redact.k8s_object`` leaves unchanged: none of the secret words
#: of ``redact.SECRET_NAME`` and ``redact._MAYBE_SECRET``, of the redacted keys, escapes, odd numbers.
_OBJECT_DECLINE_RE2 = (
    r"(?i)pass|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth|bearer|basic|eyJ|://"
    r"|client-key-data|client-certificate-data|last-applied|[^\x00-\x7F]|\\u|\d{19}|\b(nan|inf)"
)
#: user.extra text the per-record path stores unchanged: an object of arrays of plain strings.
_EXTRA_SHAPE_RE2 = r'^\{("[^"\\]*":\[("[^"\\]*",?)*\],?)+\}$'
#: ... holding nothing ``redact.text`` could change (any non-ASCII character or long number declines too).
_EXTRA_DECLINE_RE2 = MAYBE_SECRET_RE2 + r"|[^\x00-\x7F]|\d{19}"
#: The API server's timestamps; anything else (offsets, epoch numbers, odd dates) is declined.
_TS_RE2 = r"^(19|20|21)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?Z$"
_SA_KEYS = (
    ("sa_pod_name", "authentication.kubernetes.io/pod-name"),
    ("sa_pod_uid", "authentication.kubernetes.io/pod-uid"),
    ("sa_node_name", "authentication.kubernetes.io/node-name"),
    ("sa_credential_id", "authentication.kubernetes.io/credential-id"),
)


def _absent(e: str) -> str:
    return f"({e} IS NULL OR json_type({e}) = 'NULL')"


def _ts_ns(e: str) -> str:
    """Nanoseconds of an API-server timestamp; NULL when absent, not in that form, or not a valid date."""
    # (as one TIMESTAMP_NS cast: the same value as seconds + padded fraction, twice as fast; tested.  The cast
    # takes the trailing Z as it is: cutting it first made a copy of each text and cost four times the cast)
    return f"CASE WHEN regexp_matches({e}, '{_TS_RE2}') THEN epoch_ns(TRY_CAST({e} AS TIMESTAMP_NS)) END"


def _sql(path: str, gzip: bool) -> str:
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _COLUMNS.items()) + "}"
    src = (
        f"read_ndjson('{path.replace(chr(39), chr(39) * 2)}', columns={spec}, format='newline_delimited', "
        f"records=true, ignore_errors=false, compression='{'gzip' if gzip else 'none'}', "
        f"maximum_object_size={MAX_OBJECT_BYTES})"
    )
    uri = "requestURI"
    query = f"substr({uri}, strpos({uri}, '?') + 1)"
    ok = " AND ".join(
        [
            "kind = 'Event'",
            # the string fields and lists (_STRING_COLUMNS) are checked per batch by the consumer (_odd_strings)
            # a present time field must be a valid API-server timestamp
            "(rr_ns IS NOT NULL OR requestReceivedTimestamp IS NULL)",
            "(st_ns IS NOT NULL OR stageTimestamp IS NULL)",
            "(tt_ns IS NOT NULL OR timestamp IS NULL)",
            # metadata.creationTimestamp is only looked at when the two request times are absent
            f"(rr_ns IS NOT NULL OR tt_ns IS NOT NULL OR {_absent('metadata')})",
            "coalesce(rr_ns, tt_ns, st_ns) IS NOT NULL",
            f"(ro_txt IS NULL OR NOT regexp_matches(ro_txt, '{_OBJECT_DECLINE_RE2}'))",
            f"(resp_txt IS NULL OR NOT regexp_matches(resp_txt, '{_OBJECT_DECLINE_RE2}'))",
            # a request object whose kind is a list or an object makes audit.pod_spec_of raise (unhashable):
            # the per-record path quarantines the line; here it would stop the bulk path for the rest of the file
            "coalesce(json_type(requestObject, '$.kind') NOT IN ('ARRAY', 'OBJECT'), true)",
            _absent("impersonatedUser"),
            # user.extra and annotations are checked once per distinct text by the consumer (_Memo.extra, .annotations)
            ("(responseStatus.code IS NULL OR (regexp_matches(responseStatus.code, '^-?\\d{1,10}$') "
            "AND TRY_CAST(responseStatus.code AS INTEGER) IS NOT NULL))"),
        ]
    )
    # The first string of each key's array (the shape check allows nothing else), in one parse of user.extra:
    # four times faster than finding each ``"key":["`` with strpos and cutting the text up to the next quote.
    # Rows whose text is not of that shape, or repeats a key, are declined by the consumer (_extra_cells).
    sa_paths = ", ".join(f"'$.\"{key}\"[0]'" for _, key in _SA_KEYS)
    sa = ",\n  ".join(f"sa_values[{n}] AS {col}" for n, (col, _) in enumerate(_SA_KEYS, start=1))
    return f"""
WITH raw AS (
  SELECT *,
    CAST(user.extra AS VARCHAR) AS extra_txt,
    CAST(annotations AS VARCHAR) AS ann_txt,
    nullif(CAST(requestObject AS VARCHAR), 'null') AS ro_txt,
    nullif(CAST(responseObject AS VARCHAR), 'null') AS resp_txt,
    {_ts_ns('requestReceivedTimestamp')} AS rr_ns,
    {_ts_ns('stageTimestamp')} AS st_ns,
    {_ts_ns('timestamp')} AS tt_ns
  FROM {src}
), checked AS (SELECT *, coalesce({ok}, false) AS ok FROM raw
), extra AS (
  SELECT *, CASE WHEN ok AND extra_txt <> '{{}}' THEN json_extract_string(user.extra, [{sa_paths}]) END AS sa_values
  FROM checked
)
SELECT
  ok,
  requestReceivedTimestamp AS k_rr, stageTimestamp AS k_st, timestamp AS k_ts,
  coalesce(rr_ns, tt_ns, st_ns) AS time,
  coalesce(rr_ns, tt_ns) AS request_time,
  st_ns AS stage_time,
  CASE WHEN rr_ns IS NOT NULL THEN 'requestReceivedTimestamp'
       WHEN tt_ns IS NOT NULL THEN 'timestamp' ELSE 'stageTimestamp' END AS time_field,
  auditID AS audit_id, stage, level, coalesce(apiVersion, '') AS audit_version, '' AS wrapper, verb,
  user.username AS "user", user.uid AS user_uid, user.groups AS user_groups,
  NULL::VARCHAR AS impersonated_user,
  sourceIPs[-1] AS source_ip, sourceIPs AS source_ips,
  userAgent AS user_agent,
  objectRef.resource AS resource, objectRef.subresource AS subresource,
  objectRef.namespace AS namespace, objectRef.name AS name,
  objectRef.apiGroup AS api_group, objectRef.apiVersion AS api_version, objectRef.uid AS object_uid,
  {uri} AS request_uri,
  coalesce(strpos({uri}, '?') > 0 AND regexp_matches({query}, '{URI_HINTS_RE2}|{_NON_ASCII}'), false) AS uri_flag,
  CASE WHEN ok THEN TRY_CAST(responseStatus.code AS INTEGER) END AS code,
  responseStatus.reason AS status_reason, responseStatus.message AS status_message,
  extra_txt AS k_extra, ann_txt AS k_ann,
  {sa},
  CASE WHEN ok THEN ro_txt END AS request_object,
  CASE WHEN ok THEN resp_txt END AS response_object,
  coalesce(objectRef.subresource IN ('exec', 'attach'), false) OR ro_txt IS NOT NULL OR resp_txt IS NOT NULL
    AS objects
FROM extra
"""


#: The row -> line mapping (``bulk_lines.Lines``).
_Lines = bulk_lines.Lines


def scan_lines(path: Path) -> _Lines | None:
    """One streaming pass over the (decompressed) bytes: count the lines, find the blank ones.

    Returns None when the file is not JSON lines of objects (a whole-file
    document, a line that is not an object) or cannot be read to the end.
    """
    try:
        with open_evidence(path) as f:
            first = f.read(_CHUNK)
            head = first[3:] if first.startswith(BOM) else first
            if head.lstrip()[:1] == b"[" or _is_multiline_document(head[:4096]):
                return None
            total = starts = 0
            chunk, prev_end = head, b"\n"
            while chunk:
                total += chunk.count(b"\n")
                starts += chunk.count(b"\n{") + (prev_end == b"\n" and chunk[:1] == b"{")
                prev_end = chunk[-1:]
                chunk = f.read(_CHUNK)
            lines = total + (prev_end != b"\n")
            if starts == lines:  # every line starts with "{": none is blank
                return _Lines(lines, None)
            return _slow_scan(path)
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # the per-record path explains
        log.debug("bulk scan of %s failed: %s", path, exc)
        return None


def _slow_scan(path: Path) -> _Lines | None:
    """Line by line, for files with blank or indented lines."""
    numbers: list[int] = []
    with open_evidence(path) as f:
        for n, data in enumerate(f, start=1):
            if n == 1 and data.startswith(BOM):
                data = data[3:]
            s = data.strip()
            if not s:
                continue
            if s[:1] != b"{":
                return None
            numbers.append(n)
    return _Lines(len(numbers), np.asarray(numbers, dtype=np.int64))


def _connect() -> Any:
    import duckdb

    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "preserve_insertion_order": True})
    con.execute("SET enable_progress_bar = false")  # it would print into `ingest --json` output
    return con


def bulk(path: str | Path, evidence: str, evidence_id: str) -> BulkResult | None:
    """Read an audit JSON-lines file with DuckDB; decline what only the per-record path can do.

    Parameters
    ----------
    path : str or Path
        The evidence file (plain or gzip).
    evidence, evidence_id : str
        Provenance: the ``evidence`` column and the prefix of ``event_id`` (``<evidence_id>:<line>``).

    Returns
    -------
    BulkResult or None
        None when the whole file must be read record by record.  Otherwise the
        ``audit`` rows of the ordinary events stream out of ``batches`` (at most
        :data:`BATCH_ROWS` rows each, so memory does not grow with the file); the
        declined line numbers, the record count and where the bulk path stopped
        are complete once ``batches`` is exhausted (see
        :class:`~kubeforensics.sources.base.BulkResult`).
    """
    path = Path(path)
    gz = bulk_lines.bulk_gzip(path, MIN_BULK_BYTES)
    if gz is None or not _json_lines_head(path):
        return None
    return bulk_lines.streamed(lambda result: _stream(path, gz, evidence, evidence_id, result))


def _json_lines_head(path: Path) -> bool:
    """False when the file starts like a whole-file document (an array, a pretty-printed object) or is empty."""
    try:
        with open_evidence(path) as f:
            first = f.read(4096)
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # the per-record path explains
        log.debug("bulk path of %s declined: %s", path, exc)
        return False
    head = first[3:] if first.startswith(BOM) else first
    return bool(head.strip()) and head.lstrip()[:1] != b"[" and not _is_multiline_document(head)


def scan_plain(path: Path) -> tuple[_Lines, np.ndarray] | None:
    """:func:`scan_lines` for an uncompressed file, also giving where each line starts (see ``bulk_lines``)."""
    return bulk_lines.scan_plain(path, chunk=_SCAN_CHUNK, max_line=MAX_OBJECT_BYTES)


def _stream(path: Path, gz: bool, evidence: str, evidence_id: str, result: BulkResult) -> Iterator[pa.Table]:
    """The batches of :func:`bulk` (``bulk_lines.stream``); keeps ``result`` up to date before each one is yielded.

    DuckDB computes the batches in a worker thread two ahead while this one scans
    the lines (:func:`scan_plain`, which keeps where each line starts, or
    :func:`scan_lines` for gzip files) and converts.  The first and last row of
    each batch are checked against the raw lines they are mapped to
    (``bulk_lines.SeekCursor``, or ``SkipCursor`` reading a gzip file forwards a
    chunk at a time); a failed check or a DuckDB error ends the stream with
    ``result.complete`` False.
    """
    memo = _Memo()

    def open_lines() -> tuple[_Lines | None, bulk_lines.Cursor | None]:
        return bulk_lines.open_lines(path, gz, _KEYS, scan_gz=scan_lines, scan=scan_plain, chunk=_CHUNK,
                                     max_line=MAX_OBJECT_BYTES)

    def convert(rb: pa.RecordBatch, offset: int, lines: _Lines) -> tuple[pa.Table, np.ndarray]:
        return _convert(rb, offset, lines, evidence, evidence_id, memo)

    yield from bulk_lines.stream(result, path, _sql(str(path), gz), open_lines, convert, connect=_connect,
                                 batch_rows=BATCH_ROWS, name="audit-bulk")


#: Fields that identify a line: (JSON key, DuckDB column), compared by ``bulk_lines.matches``.
_KEY_FIELDS = (
    ("auditID", "audit_id"), ("stage", "stage"), ("verb", "verb"), ("requestURI", "request_uri"),
    ("requestReceivedTimestamp", "k_rr"), ("stageTimestamp", "k_st"), ("timestamp", "k_ts"),
)
_KEYS: bulk_lines.Keys = tuple(((key,), col) for key, col in _KEY_FIELDS)


def _replace(col: pa.Array, idx: np.ndarray, values: list[Any], typ: pa.DataType) -> pa.Array:
    mask = np.zeros(len(col), dtype=bool)
    mask[idx] = True
    return pc.replace_with_mask(col, pa.array(mask), pa.array(values, type=typ))


def _scatter(n: int, idx: np.ndarray, values: list[Any], typ: pa.DataType) -> pa.Array:
    """An array of n nulls with ``values`` at positions ``idx`` (any type, lists included)."""
    pos = np.full(n, -1, dtype=np.int64)
    pos[idx] = np.arange(len(idx), dtype=np.int64)
    return pa.array(values, type=typ).take(pa.array(pos, mask=pos < 0))


_OBJECT_COLUMNS = (
    "name", "exec_command", "exec_container", "exec_stdin", "exec_tty", "pod_privileged", "pod_host_pid",
    "pod_host_network", "pod_host_ipc", "pod_host_paths", "pod_capabilities", "pod_service_account", "pod_images",
    "pod_node_name",
)


class _Memo:
    """Results of the reference code that depend on one part of an event only, computed once per distinct part.

    ``audit._safe_uri`` changes only the query (``uri[:q + 1]`` stays), and the
    exec/attach columns of an event without request or response object come
    from the query alone (``audit.exec_from_uri``): both are computed once per
    distinct query (the same ``kubectl exec`` command recurs).  The ``pod_*``
    columns come from the pod spec alone (``audit.pod_columns``): once per
    distinct spec, keyed by its orjson serialisation (a workload's replicas are
    created from one template).  Each is exactly what the reference computes.
    Bounded: a table is cleared when it reaches :data:`MEMO_ENTRIES`.
    """

    def __init__(self) -> None:
        self.queries: dict[str, str] = {}
        self.execs: dict[str | None, tuple[Any, ...]] = {}
        self.specs: dict[bytes, dict[str, Any]] = {}
        self.anns: dict[str, tuple[Any, ...]] = {}

    def safe_uri(self, uri: str) -> str:
        q = uri.find("?")
        if q < 0:
            return audit._safe_uri(uri)
        query = uri[q + 1:]
        safe = self.queries.get(query)
        if safe is None:
            if len(self.queries) >= MEMO_ENTRIES:
                self.queries.clear()
            safe = self.queries[query] = audit._safe_uri("?" + query)[1:]
        return uri[: q + 1] + safe

    def exec_cells(self, uri: str | None, name: str | None, resource: str | None, subresource: str,
                   verb: str | None) -> tuple[Any, ...]:
        """The cells (:data:`_CELL_COLUMNS`) of an exec/attach event without objects."""
        key = uri.partition("?")[2] if uri else None
        got = self.execs.get(key)
        if got is None:
            if len(self.execs) >= MEMO_ENTRIES:
                self.execs.clear()
            row: dict[str, Any] = {"name": name}
            audit.object_columns(row, None, None, uri, resource, subresource, verb)
            got = self.execs[key] = tuple(map(row.get, _CELL_COLUMNS))
        return got

    def pod_columns(self, spec: Mapping[str, Any], row: dict[str, Any]) -> None:
        """``audit.pod_columns``, once per distinct pod spec (the ``pod_cols`` of ``audit.object_columns``)."""
        key = orjson.dumps(spec)  # equal text, equal spec: the columns depend on nothing else
        got = self.specs.get(key)
        if got is None:
            if len(self.specs) >= MEMO_ENTRIES:
                self.specs.clear()
            got = self.specs[key] = {}
            audit.pod_columns(spec, got)
        row.update(got)

    def annotations(self, texts: pa.Array) -> tuple[np.ndarray, list[pa.Array]]:
        """Per distinct ``annotations`` text (:func:`_ann_cells`, remembered): ok, and the cells
        ``annotations, decision, authz_reason``."""
        values = texts.to_pylist()
        if len(self.anns) + len(values) > MEMO_ENTRIES:
            self.anns.clear()
        got = [self.anns.get(t) or self.anns.setdefault(t, _ann_cells(t)) for t in values]
        return (np.array([g[0] for g in got], dtype=bool),
                [pa.array([g[k] for g in got], pa.string()) for k in (1, 2, 3)])


_EXTRA_KEY = re.compile(r'"([^"\\]*)":\[')
_DECISION, _REASON = "authorization.k8s.io/decision", "authorization.k8s.io/reason"


#: A user.extra text of service-account claims only, each at most once, in sorted order (Go writes a map's
#: keys sorted), arrays of plain strings: the usual text, which needs no other shape or repeat check.
_EXTRA_CLAIMS_RE2 = "^\\{" + "".join(
    f'("{re.escape(key)}":\\[("[^"\\\\]*"(,"[^"\\\\]*")*)?\\],?)?' for key in sorted(k for _, k in _SA_KEYS)
) + "\\}$"


def _extra_cells(texts: pa.Array) -> tuple[np.ndarray, list[pa.Array]]:
    """Per distinct ``user.extra`` text (DuckDB's compact JSON): ok, and the ``user_extra`` cells.

    ok when the per-record path stores it unchanged: ``{}``, or an object of arrays of plain strings
    (:data:`_EXTRA_SHAPE_RE2`) holding nothing ``redact.text`` could change (:data:`_EXTRA_DECLINE_RE2`)
    with no key twice (orjson, the reference, keeps the last of a repeated key; DuckDB's functions the
    first).  The patterns run in RE2, as they did in the query.  The usual text, the service-account
    claims once each in sorted order (:data:`_EXTRA_CLAIMS_RE2`), needs nothing more.  In any other text
    of the shape every key, and nothing else, is followed by ``":[``: counting that and each claim's
    ``"<claim>":[`` settles repeats of claims; texts with other keys are split in Python.  The claims
    themselves (``sa_*``) are read by the query.
    """
    n = len(texts)
    empty = pc.equal(texts, "{}").to_numpy(zero_copy_only=False)
    ok = ~pc.match_substring_regex(texts, _EXTRA_DECLINE_RE2).to_numpy(zero_copy_only=False)
    usual = pc.match_substring_regex(texts, _EXTRA_CLAIMS_RE2).to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(ok & ~usual)
    if len(rest):
        more = texts.take(pa.array(rest))
        shape = pc.match_substring_regex(more, _EXTRA_SHAPE_RE2).to_numpy(zero_copy_only=False)
        keys = pc.count_substring(more, '":[').to_numpy(zero_copy_only=False)
        claims = [pc.count_substring(more, f'"{key}":[').to_numpy(zero_copy_only=False) for _, key in _SA_KEYS]
        good = shape & np.all(np.stack(claims) <= 1, axis=0)
        for k in np.flatnonzero(good & (keys - np.sum(claims, axis=0) > 1)):  # two or more other keys
            found = _EXTRA_KEY.findall(more[int(k)].as_py())
            good[k] = len(found) == len(set(found))
        ok[rest] = good
    ok |= empty
    return ok, [pc.if_else(pa.array(empty), pa.nulls(n, pa.string()), texts)]


def _ann_cells(text: str) -> tuple[Any, ...]:
    """``annotations`` the bulk path can store (DuckDB's text, equal once parsed): JSON ``null`` (none), or
    an object with no key twice whose decision and reason are strings or null."""
    if text == "null":
        return (True, None, None, None)
    if text[:1] != "{":
        return (False, None, None, None)
    try:
        pairs = json.loads(text, object_pairs_hook=lambda kv: kv)
    except ValueError:
        return (False, None, None, None)
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        return (False, None, None, None)
    d = dict(pairs)
    decision, reason = d.get(_DECISION), d.get(_REASON)
    if not (decision is None or isinstance(decision, str)) or not (reason is None or isinstance(reason, str)):
        return (False, None, None, None)
    return (True, text, decision, reason)


def _per_text(col: pa.Array | pa.ChunkedArray, cells: Any, width: int) -> tuple[np.ndarray, list[pa.Array]]:
    """``cells(distinct texts)`` spread over the rows: (ok per row, one array per further cell).

    ``cells`` takes the Arrow array of a batch's distinct texts and gives ``(ok array, [width cell
    arrays])``.  Rows without a text are ok, with null cells."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if col.null_count == n:
        return np.ones(n, dtype=bool), [pa.nulls(n, pa.string()) for _ in range(width)]
    enc = pc.dictionary_encode(col)
    idx = enc.indices
    ok_d, cols = cells(enc.dictionary)
    ok_u = np.append(ok_d, True)
    where = pc.fill_null(idx, len(ok_d)).to_numpy(zero_copy_only=False)
    return ok_u[where], [c.take(idx) for c in cols]


#: Distinct queries remembered by :class:`_Memo` before it starts afresh.
MEMO_ENTRIES = 65_536
#: The columns of :data:`_OBJECT_COLUMNS` that depend on more than objectRef's name.
_CELL_COLUMNS = _OBJECT_COLUMNS[1:]


def _object_cells(t: pa.Table, raw_uri: pa.Array, cols: dict[str, Any], memo: _Memo | None = None) -> None:
    """exec/attach and request-object columns through the reference code (``audit.object_columns``).

    Each row's cells (all of :data:`_OBJECT_COLUMNS` but ``name``) are one tuple
    (exec commands' shared per query), and the columns are built from the tuples
    at the end; the ``pod_*`` columns are computed once per distinct pod spec
    (:meth:`_Memo.pod_columns`: the replicas of a workload are created from one template).
    """
    memo = memo or _Memo()

    todo = np.flatnonzero(t.column("objects").to_numpy())
    if not len(todo):
        return
    take = pa.array(todo)
    ro_txt = t.column("request_object").take(take).to_pylist()
    resp_txt = t.column("response_object").take(take).to_pylist()
    names = t.column("name").take(take).to_pylist()
    resources = t.column("resource").take(take).to_pylist()
    subresources = t.column("subresource").take(take).to_pylist()
    verbs = t.column("verb").take(take).to_pylist()
    uris = raw_uri.take(take).to_pylist()
    cells: list[tuple[Any, ...]] = []
    stream = audit._STREAM_SUBRESOURCES
    loads = orjson.loads
    for k in range(len(todo)):
        sub = subresources[k]
        if sub in stream and ro_txt[k] is None and resp_txt[k] is None:  # name stays: not a create of an object
            cells.append(memo.exec_cells(uris[k], names[k], resources[k], sub, verbs[k]))
            continue
        row: dict[str, Any] = {"name": names[k]}
        ro = loads(ro_txt[k]) if ro_txt[k] is not None else None
        resp = loads(resp_txt[k]) if resp_txt[k] is not None else None
        audit.object_columns(row, ro, resp, uris[k], resources[k], sub, verbs[k], pod_cols=memo.pod_columns)
        names[k] = row["name"]
        cells.append(tuple(map(row.get, _CELL_COLUMNS)))
    n = t.num_rows
    cols["name"] = _replace(t.column("name").combine_chunks(), todo, names, AUDIT.column("name").arrow_type)
    for j, c in enumerate(_CELL_COLUMNS):
        cols[c] = _scatter(n, todo, [cell[j] for cell in cells], AUDIT.column(c).arrow_type)


def _odd_strings(rb: pa.RecordBatch, ok: np.ndarray) -> np.ndarray:
    """``ok`` without the rows holding an odd value in a string field or list (:data:`_STRING_COLUMNS`)."""
    bad = [bulk_lines.odd_text_rows(rb.column(c)) for c in _STRING_COLUMNS]
    rows = np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)
    if not len(rows):
        return ok
    ok = ok.copy()
    ok[rows] = False
    return ok


def _convert(
    rb: pa.RecordBatch, offset: int, lines: _Lines, evidence: str, evidence_id: str, memo: _Memo | None = None
) -> tuple[pa.Table, np.ndarray]:
    """One DuckDB batch -> (audit rows of its ordinary events, line numbers of the declined ones)."""
    from kubeforensics import redact
    memo = memo or _Memo()
    ok = _odd_strings(rb, rb.column("ok").to_numpy(zero_copy_only=False))
    extra_ok, extra_cols = _per_text(rb.column("k_extra"), _extra_cells, 1)
    ann_ok, ann_cols = _per_text(rb.column("k_ann"), memo.annotations, 3)
    ok = ok & extra_ok & ann_ok
    texts = dict(zip(["user_extra", "annotations", "decision", "authz_reason"],
                     extra_cols + ann_cols))
    rows = np.arange(offset, offset + rb.num_rows, dtype=np.int64)
    rejected = lines.of(rows[~ok])
    mask = pa.array(ok)
    t = pa.Table.from_batches([rb]).filter(mask)
    n = t.num_rows
    line = pa.array(lines.of(rows[ok]), type=pa.int64())
    cols: dict[str, Any] = {name: t.column(name) for name in t.column_names}
    cols["line"] = line
    for name, arr in texts.items():
        cols[name] = arr.filter(mask)
    cols["event_id"] = pc.binary_join_element_wise(evidence_id, pc.cast(line, pa.string()), ":")
    cols["evidence"] = pa.repeat(evidence, n)
    for name in ("time", "request_time", "stage_time"):
        cols[name] = pc.cast(t.column(name), pa.int64()).cast(AUDIT.column(name).arrow_type)

    raw_uri = t.column("request_uri").combine_chunks()
    flagged = np.flatnonzero(t.column("uri_flag").to_numpy())
    if len(flagged):
        cols["request_uri"] = _replace(raw_uri, flagged, [memo.safe_uri(u) for u in raw_uri.take(pa.array(flagged)).to_pylist()],
                                       pa.string())
    msg = t.column("status_message").combine_chunks()
    present = np.flatnonzero(msg.is_valid().to_numpy(zero_copy_only=False))
    if len(present):
        cols["status_message"] = _replace(msg, present, [redact.text(msg[int(i)].as_py()) for i in present],
                                          pa.string())
    _object_cells(t, raw_uri, cols, memo)
    arrays = []
    for field in AUDIT.arrow_schema:
        c = cols.get(field.name)
        if c is None:
            c = pa.nulls(n, field.type)
        elif c.type != field.type:
            c = c.cast(field.type)
        arrays.append(c)
    return pa.Table.from_arrays(arrays, schema=AUDIT.arrow_schema), rejected
