"""Vectorised (DuckDB) bulk path of the Falco reader: whole JSON-lines alert files at parse speed.

:func:`bulk` reads Falco JSON alerts (``json_output: true``, one object per line;
falcosidekick payloads, which add ``uuid``, alike) with DuckDB's ``read_ndjson``
and an explicit schema, and computes the ``alerts`` columns in SQL for the
*ordinary* alerts.  Every other line is *declined*: its line number goes into
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
from kubeforensics.sources.audit_fast import _CHUNK, _connect, _json_lines_head, _Lines, _ts_ns, scan_lines
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
#: Keys ``redact._walk`` treats otherwise than by their name alone (``name``/``value`` pairs, ``kind``).
_WALK_KEYS = frozenset({"name", "value", "kind", "kubectl.kubernetes.io/last-applied-configuration"})
#: Secret-like keys whose values are replaced in the JSON text (others send the cell to Python).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_TAGS_RE2 = r'^\[("[^"\\]*"(,"[^"\\]*")*)?\]$'
_PID_RE2 = r"^(0|-?[1-9]\d{0,17})$"
#: Top-level fields read as text and checked with :data:`_ODD_RE2` (``time`` and ``priority`` must match
#: stricter forms anyway), and the first characters an odd value can start with (others need no regex).
_TEXTS = ("rule", "source", "hostname", "output", "uuid")
_ODD_FIRST = "[{-0123456789nNiI"


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql(path: str, gz: bool) -> str:
    """The query: one row per non-blank line, ``ok`` and the ``alerts`` columns (valid where ``ok``).

    ``of_keys`` (the keys of ``output_fields`` joined by U+001F, which no key holds here) is checked per
    distinct value in :func:`_convert`: duplicate keys decline the row, unsorted keys send its
    ``output_fields`` cell to the reference function.
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
    flat = (f"((starts_with(of_txt, '{{') AND NOT contains(substr(of_txt, 2), '{{') AND NOT contains(of_txt, '[') "
            f"AND NOT regexp_matches(of_txt, {_lit(_NOT_INT_RE2)})) OR regexp_matches(of_txt, {_lit(_FLAT_RE2)}))")
    ok = " AND ".join([
        "rule IS NOT NULL AND rule <> ''",
        "rank IS NOT NULL",
        "t_ns IS NOT NULL",
        "(output IS NOT NULL OR of_txt IS NOT NULL)",
        *(f"NOT coalesce(contains('{_ODD_FIRST}', left({c}, 1)) AND regexp_matches({c}, {_lit(_ODD_RE2)}), false)"
          for c in _TEXTS),
        f"(tags_txt IS NULL OR regexp_matches(tags_txt, {_lit(_TAGS_RE2)}))",
        f"(of_txt IS NULL OR of_txt = '{{}}' OR (NOT contains(of_txt, '\\u001F') AND {flat}))",
        f"(k_pid IS NULL OR k_pid = '' OR regexp_matches(k_pid, {_lit(_PID_RE2)}))",
    ])
    return f"""
WITH raw AS (
  SELECT *,
    CAST(output_fields AS {_V}) AS of_txt,
    CAST(tags AS {_V}) AS tags_txt,
    json_extract_string(output_fields, [{paths}]) AS ofv,
    CASE WHEN strlen(priority) = length(priority) THEN CASE lower(priority) {ranks} END END AS rank,
    {_ts_ns('time')} AS t_ns
  FROM {src}
), cols AS (SELECT *, {picks} FROM raw),
checked AS (SELECT *, coalesce({ok}, false) AS ok FROM cols)
SELECT
  ok,
  time AS k_time, rule, uuid,
  t_ns AS time,
  [{names}][rank + 1] AS priority, rank::INTEGER AS priority_rank,
  source AS falco_source, hostname, output,
  coalesce(regexp_matches(output, {_lit(_REDACT_RE2)}), false) AS output_flag,
  CASE WHEN ok AND tags_txt IS NOT NULL THEN CAST(tags AS {_V}[]) END AS tags,
  k_cid,
  CASE WHEN coalesce(k_repo, '') <> '' THEN CASE WHEN coalesce(k_tag, '') <> '' THEN k_repo || ':' || k_tag
       ELSE k_repo END ELSE k_image END AS image,
  CASE WHEN ka_resource IN ('pods', 'pod') AND coalesce(k_ns, '') = '' THEN ka_namespace ELSE k_ns END AS namespace,
  CASE WHEN ka_resource IN ('pods', 'pod') AND coalesce(k_pod, '') = '' THEN ka_name ELSE k_pod END AS pod,
  proc_name, proc_cmdline, proc_pname, proc_exepath,
  CASE WHEN ok AND k_pid <> '' THEN TRY_CAST(k_pid AS BIGINT) END AS proc_pid,
  user_name, fd_name, ka_user, ka_verb, ka_resource, ka_namespace, ka_name, ka_uri, ka_response_code,
  CASE WHEN ok AND of_txt <> '{{}}' THEN of_txt END AS output_fields,
  CASE WHEN ok AND of_txt <> '{{}}' THEN array_to_string(json_keys(output_fields), chr(31)) END AS of_keys,
  coalesce(ok AND of_txt <> '{{}}' AND regexp_matches(of_txt, {_lit(_FIELDS_FLAG_RE2)}), false) AS fields_flag,
  coalesce(ok AND of_txt <> '{{}}' AND regexp_matches(of_txt, {_lit(_ESC_RE2)}), false) AS esc_flag
FROM checked
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
    (``bulk_lines.scan_plain``, with this module's chunk and longest line)."""
    return bulk_lines.scan_plain(path, chunk=_CHUNK, max_line=MAX_OBJECT_BYTES)


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


# ------------------------------------------------------------------------------- cells through Python
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


def _flagged(col: pa.ChunkedArray, flag: pa.ChunkedArray | pa.Array, fn: Callable[[Any], Any],
             bad: np.ndarray) -> pa.ChunkedArray | pa.Array:
    """``fn`` (a reference function) applied to the rows where ``flag`` is set; rows where it raises are bad."""
    idx = np.flatnonzero(flag.to_numpy(zero_copy_only=False))
    if not len(idx):
        return col
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    mask = np.zeros(len(arr), dtype=bool)
    mask[idx] = True
    values: list[Any] = []
    for i in idx.tolist():
        try:
            values.append(fn(arr[i].as_py()))
        except Exception:  # noqa: BLE001 - RecordError, RecursionError, invalid JSON: the per-record path explains
            bad[i] = True
            values.append(None)
    return pc.replace_with_mask(arr, pa.array(mask), pa.array(values, type=pa.string()))


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
        mask = np.zeros(len(col), dtype=bool)
        mask[rows] = True
        col = pc.replace_with_mask(col, pa.array(mask), new)
    return col


def _convert(rb: pa.RecordBatch, offset: int, lines: _Lines, evidence: str, evidence_id: str
             ) -> tuple[pa.Table, np.ndarray]:
    """One DuckDB batch -> (alerts rows of its ordinary alerts, line numbers of the declined ones)."""
    from kubeforensics import redact
    from kubeforensics.sources.fields import container_hex

    ok = rb.column("ok").to_numpy(zero_copy_only=False)
    rows = np.arange(offset, offset + rb.num_rows, dtype=np.int64)
    line_of = lines.of(rows)
    t = pa.Table.from_batches([rb])
    if not ok.all():  # (filtering copies every column)
        t = t.filter(pa.array(ok))
    kept = line_of[ok]
    n = t.num_rows
    bad = np.zeros(n, dtype=bool)
    cols: dict[str, Any] = {name: t.column(name) for name in t.column_names}

    cols["container_id"] = _per_value(t.column("k_cid"), container_hex, pa.string(), bad)
    cols["output"] = _flagged(t.column("output"), t.column("output_flag"), redact.text, bad)
    values = t.column("fields_flag")  # a superset of what redact.text could change in any value
    for name in ("proc_cmdline", "fd_name", "ka_uri"):
        cols[name] = _flagged(t.column(name), values, redact.text, bad)
    by_keys, secret = _key_lists(t.column("of_keys"), bad)
    python = values.to_numpy(zero_copy_only=False) | t.column("esc_flag").to_numpy(zero_copy_only=False) | by_keys
    fields = t.column("output_fields").combine_chunks()
    if secret:
        fields = _mark_secret_values(fields, secret, python)
    cols["output_fields"] = _flagged(fields, pa.array(python), _fields_of, bad)

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
