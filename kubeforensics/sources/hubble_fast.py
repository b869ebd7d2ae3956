"""Vectorised (DuckDB) bulk path of the Hubble reader: whole JSON-lines flow exports at parse speed.

:func:`bulk` reads a Hubble export with DuckDB's ``read_ndjson`` and an explicit
schema, and computes the ``flows`` columns in SQL for the *ordinary* flows: the
``hubble observe -o jsonpb`` envelope ``{"flow": {...}, "node_name", "time"}``
or, in files of the older bare form, the flow object itself, with L3/L4 (ports,
TCP flags), endpoints (namespace, pod, labels, identity, workload), services,
verdict and drop reason, ``is_reply``/``reply``, ``destination_names``, L7 DNS
and L7 HTTP.  Every other line is *declined*: its line number goes into
``BulkResult.python_lines`` and the engine reads it through
:meth:`~kubeforensics.sources.hubble.HubbleReader.extract`, the reference
implementation.  Declined are

* non-flow envelopes (``lost_events``, ``node_status``, ``agent_event``,
  ``debug_event``, anything else: they go to ``flow_aux``), ``*List`` wrappers,
  and lines of the other form (a bare flow in an envelope file and vice versa;
  the form is that of most of the first lines);
* text that :func:`kubeforensics.redact.text` could change (``Summary``, HTTP
  URL: the shared :data:`~kubeforensics.redact.MAYBE_SECRET_PATTERN` or any
  non-ASCII character), HTTP headers unless they are a plain
  ``[{"key", "value"}]`` list with no secret-like name or value;
* anything of an odd type or form: where text is read, an object, array,
  integer of 19 or more digits, number with a 3-digit exponent, NaN or Infinity
  (checked per batch on the output columns, :func:`_odd_rows`: DuckDB renders
  every other JSON number as ``str()`` of orjson's value); an integer field
  (ports, identity, rcode, HTTP code) that is not a plain decimal of the
  column's range; ``is_reply`` that is no boolean; a time that is not
  ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``; a drop reason code the per-record path
  might read differently (``0``, ``false``); ``l4`` other than one protocol
  object (ports and flags in Hubble's field order); lists holding nulls.

``l4`` is mapped per batch in numpy, not in SQL (:func:`_l4_columns`): its JSON
text with the digits of each number after a ``:`` written as U+0001 is a *template*, and the
few distinct templates of a batch are checked and mapped once each.  The time
text is checked and converted per batch too (:func:`_times`: one regex match
over the batch's texts when all are of the form, Arrow's cast), and so are the
endpoints' identities, the redaction pre-check of ``Summary`` and the odd-value
check of the IPs, direction and IP version, once per distinct text
(:func:`_identities`, :func:`_matching_rows`, :func:`_odd_rows_per_value`).

The rows stream out in batches of at most :data:`BATCH_ROWS`, which DuckDB
computes in a thread two batches ahead of the consumer.  The line mapping and
the part-way stop (malformed JSON, duplicate keys, wrong JSON type of a
structured field, a line over :data:`MAX_OBJECT_BYTES`, a damaged gzip stream)
work as in :mod:`kubeforensics.sources.audit_fast`, with the same machinery
(:mod:`kubeforensics.sources.bulk_lines`) and the audit path's line scan of gzip
files and DuckDB connection: a batch is yielded only when its first and last
rows carry the identifying fields (times, node, uuid) of the lines they are
mapped to, and the lines after the last yielded batch go record by record.  For
uncompressed files :func:`scan_plain` finds the lines with numpy and keeps their
offsets, so the check reads only the lines it compares; gzip files are checked
by reading forwards, skipping a chunk at a time.

Differences from the per-record path, by design (as for the audit path): JSON
that orjson refuses but DuckDB's parser accepts (``NaN``, ``Infinity``, a
number beyond double range, a trailing comma) *in a field the flows table does
not read* is ingested here, where the per-record path quarantines the line as
invalid JSON.  Hubble never writes such JSON.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from kubeforensics.redact import MAYBE_SECRET_PATTERN
from kubeforensics.schema import FLOWS
from kubeforensics.sources import audit_fast, bulk_lines
from kubeforensics.sources.audit_fast import _CHUNK, _SCAN_CHUNK, _TS_RE2, _connect, _Lines, scan_lines
from kubeforensics.sources.hubble import TCP_FLAGS
from kubeforensics.sources.records import BOM, _readline, open_evidence

if TYPE_CHECKING:
    from kubeforensics.sources.base import BulkResult

log = logging.getLogger(__name__)

#: Batch size, longest line and smallest file for the bulk path: the audit path's settings.
BATCH_ROWS = audit_fast.BATCH_ROWS
MAX_OBJECT_BYTES = audit_fast.MAX_OBJECT_BYTES
MIN_BULK_BYTES = audit_fast.MIN_BULK_BYTES
#: How many of the first lines decide whether a file holds envelopes or bare flows.
FORM_LINES = 100

_V = "VARCHAR"


def _struct(fields: dict[str, str]) -> str:
    return "STRUCT(" + ", ".join(f'"{k}" {v}' for k, v in fields.items()) + ")"


_ENDPOINT = _struct({"namespace": _V, "pod_name": _V, "labels": f"{_V}[]", "identity": _V,
                     "workloads": _struct({"name": _V}) + "[]"})
_SERVICE = _struct({"name": _V, "namespace": _V})
_L7 = _struct({
    "type": _V,
    "dns": _struct({"query": _V, "ips": f"{_V}[]", "rcode": _V, "qtypes": f"{_V}[]"}),
    "http": _struct({"method": _V, "url": _V, "code": _V, "protocol": _V, "headers": "JSON"}),
})
#: The flow fields the ``flows`` table reads.  String leaves are read as VARCHAR (DuckDB renders JSON
#: numbers and booleans there as ``fields.text`` does; odd values are declined, see ``_ODD``);
#: ``l4`` as JSON text, to see its protocol key and the order of its fields.
_FLOW: dict[str, str] = {
    "time": _V, "uuid": _V, "node_name": _V, "verdict": _V, "drop_reason": _V, "drop_reason_desc": _V,
    "Type": _V, "traffic_direction": _V, "is_reply": _V, "reply": _V,
    "source_service": _SERVICE, "destination_service": _SERVICE, "destination_names": f"{_V}[]",
    "Summary": _V, "IP": _struct({"source": _V, "destination": _V, "ipVersion": _V}), "l4": "JSON",
    "source": _ENDPOINT, "destination": _ENDPOINT, "l7": _L7,
}

#: A value read as text that was not a JSON string/integer/boolean/finite float: an object or array, a
#: 19-digit integer (orjson reads 64-bit overflow as a float), a number with a 3-digit exponent (beyond
#: double range orjson refuses the line; DuckDB keeps the text), NaN or Infinity (orjson refuses those too).
#: DuckDB renders other JSON numbers exactly as ``str()`` of orjson's value (tested on random doubles).
_ODD = r"[\[{]|-?\d{19}|-?\d[\d.]*[eE][-+]?\d{3,}(\x1f|$)|-?(?i:nan|inf|infinity)(\x1f|$)"
#: ... in the text of one value (``_odd_rows``).
_ODD_VALUE_RE2 = "^(" + _ODD + ")"
#: First bytes an odd value can start with (the others need no regex) ...
_ODD_FIRST = np.zeros(256, dtype=bool)
_ODD_FIRST[list(b"[{-0123456789nNiI")] = True
#: ... of which these need more to be odd: a digit (19 digits, or an exponent of 3 digits or more
#: that ends the value or is followed by ``\x1f``), a letter of ``nan``/``inf``/``infinity`` (the whole
#: value, or followed by ``\x1f``).
_DIGIT = bulk_lines.DIGIT
_LETTER = np.zeros(256, dtype=bool)
_LETTER[list(b"nNiI")] = True
#: The bytes of ``[\d.]`` and of ``[eE]``: an exponent form is a digit, then these, then an ``e`` or ``E``.
_MANTISSA = _DIGIT.copy()
_MANTISSA[ord(".")] = True
_EXP = np.zeros(256, dtype=bool)
_EXP[list(b"eE")] = True
_US = 0x1F
#: Text that ``redact.text`` could change: the shared secret pre-check, or any non-ASCII character
#: (case folding of non-ASCII letters differs between RE2 and Python).
_REDACT_RE2 = MAYBE_SECRET_PATTERN + r"|[^\x00-\x7F]"
_HEADER = r'\{"key":"[^"\\]*","value":"[^"\\]*"\}'
#: HTTP headers the per-record path stores unchanged (``as_json(redact.headers(h))``): a list of plain
#: key/value objects, keys in orjson's sorted order, no escapes ...
_HEADERS_SHAPE_RE2 = rf"^\[({_HEADER}(,{_HEADER})*)?\]$"
#: ... with no name ``redact.SECRET_HEADER`` matches and no value ``redact.text`` could change.
_HEADERS_DECLINE_RE2 = (
    r"(?i)authorization|cookie|x-api-key|x-auth-token|token|secret|passw|api[-_]?key|session|credential|"
    + _REDACT_RE2
)
#: ``l4`` is read as DuckDB's JSON text and mapped per batch (:func:`_l4_columns`) on its *template*: the
#: text with each number that follows a ``:`` written as ``\x01`` characters, one per digit (JSON text
#: holds no raw control character), so that the few distinct templates of a batch are checked once each.
#: A ported protocol: ports (1 to 10 digits) and flags, each optional, in Hubble's (protobuf) field order ...
_L4_PORTED = re.compile(
    r'\{"(TCP|UDP|SCTP)":\{(?:"source_port":(\x01{1,10}))?,?(?:"destination_port":(\x01{1,10}))?,?'
    r'(?:"flags":(\{[^{}]*\}))?\}\}'
)
#: ... any other protocol (ICMPv4, ICMPv6, ...): one key, an object without nested values ...
_L4_OTHER = re.compile(r'\{"([A-Za-z0-9_]+)":\{[^{}\[\]]*\}\}')
#: ... TCP flags in Hubble's field order, each at most once (DuckDB's JSON text keeps duplicate keys).
_FLAGS = re.compile("\\{" + ",?".join(f'(?:"{f}":(?:true|false))?' for f in TCP_FLAGS) + "\\}")
#: The columns :func:`_l4_columns` gives.
_L4_OUT = ("protocol", "src_port", "dst_port", "tcp_flags")
_INT32_MAX = 2**31 - 1
_INT_RE2 = r"^-?\d{1,18}$"
#: The ``flows`` columns the query computes (the provenance columns and ``time`` are added per batch).
_OUT = [c for c in FLOWS.names if c not in ("event_id", "time", "evidence", "line", "src_identity", "dst_identity",
                                              *_L4_OUT)]
#: The texts the query gives for the checks and conversions of :func:`_convert`: identities, services' names.
_RAW = ["src_identity_raw", "dst_identity_raw", "ss_name", "ss_ns", "ds_name", "ds_ns"]


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql(path: str, gzip: bool, envelopes: bool) -> str:
    """The query: one row per non-blank line, ``ok`` and the ``flows`` columns (valid where ``ok``)."""
    if envelopes:
        columns = {"flow": _struct(_FLOW), "node_name": _V, "time": _V, "items": "JSON"}
    else:
        columns = {**_FLOW, "flow": "JSON", "items": "JSON"}
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    src = (
        f"read_ndjson('{path.replace(chr(39), chr(39) * 2)}', columns={spec}, format='newline_delimited', "
        f"records=true, ignore_errors=false, compression='{'gzip' if gzip else 'none'}', "
        f"maximum_object_size={MAX_OBJECT_BYTES})"
    )

    def f(name: str) -> str:
        return f'flow."{name}"' if envelopes else f'bare."{name}"'

    if not envelopes:  # the flow's fields as one struct, so that no column name clashes with an output name
        packed = ", ".join(f'"{k}" := "{k}"' for k in _FLOW)
        src = f'(SELECT struct_pack({packed}) AS bare, "flow", "node_name", "time", "items" FROM {src})'

    is_flow = (
        '"flow" IS NOT NULL' if envelopes else
        f'"flow" IS NULL AND {f("verdict")} IS NOT NULL '
        f'AND ({f("IP")} IS NOT NULL OR {f("source")} IS NOT NULL OR {f("l4")} IS NOT NULL)'
    )

    def service(s: str) -> str:
        name, ns = f"{s}.name", f"{s}.namespace"
        return (f"CASE WHEN coalesce({name}, '') <> '' AND coalesce({ns}, '') <> '' THEN {ns} || '/' || {name} "
                f"ELSE nullif({name}, '') END")

    def endpoint(e: str, p: str) -> str:
        return (
            f"nullif({e}.namespace, '') AS {p}_namespace, nullif({e}.pod_name, '') AS {p}_pod, "
            f"{e}.labels AS {p}_labels, {e}.identity AS {p}_identity_raw, "
            f"{e}.workloads[1].name AS {p}_workload"
        )

    def int_ok(raw: str, cast: str) -> str:
        return f"({raw} IS NULL OR {raw} = '' OR (regexp_matches({raw}, '{_INT_RE2}') AND {cast} IS NOT NULL))"

    src_e, dst_e, l7, dns, http = f("source"), f("destination"), f("l7"), f("l7") + ".dns", f("l7") + ".http"
    # Checked per batch (``_odd_rows``) but not output as such: the services' texts.
    texts = [f"{f(s)}.{k} AS {a}" for s, a0 in (("source_service", "ss"), ("destination_service", "ds"))
             for k, a in (("name", a0 + "_name"), ("namespace", a0 + "_ns"))]
    ok = " AND ".join([
        "is_flow", "items IS NULL",
        ("(drop_desc_raw IS NOT NULL OR drop_raw IS NULL OR drop_raw = '' "
        "OR regexp_matches(drop_raw, '^[1-9][0-9]{0,17}$'))"),
        "(reply_raw IS NULL OR lower(reply_raw) IN ('true', 'false'))",
        f"(http_url IS NULL OR NOT regexp_matches(http_url, {_lit(_REDACT_RE2)}))",
        (f"(http_headers IS NULL OR (regexp_matches(http_headers, {_lit(_HEADERS_SHAPE_RE2)}) "
        f"AND NOT regexp_matches(http_headers, {_lit(_HEADERS_DECLINE_RE2)})))"),
        int_ok(f"{dns}.rcode", "dns_rcode"), int_ok(f"{http}.code", "http_code"),
    ])
    t_flow = f("time")
    return f"""
WITH l4 AS (
  SELECT *, CAST({f('l4')} AS VARCHAR) AS l4_raw FROM {src}
), raw AS (
  SELECT *,
    {is_flow} AS is_flow,
    CASE WHEN {t_flow} IS NULL OR {t_flow} = '' THEN "time" ELSE {t_flow} END AS t_txt,
    {f('drop_reason_desc')} AS drop_desc_raw, {f('drop_reason')} AS drop_raw,
    coalesce({f('is_reply')}, {f('reply')}) AS reply_raw
  FROM l4
), cols AS (
  SELECT *,
    {f('uuid')} AS uuid,
    coalesce({f('node_name')}, "node_name") AS node,
    {f('verdict')} AS verdict,
    CASE WHEN drop_desc_raw IS NOT NULL THEN drop_desc_raw
         WHEN regexp_matches(drop_raw, '^[1-9][0-9]{{0,17}}$') THEN drop_raw END AS drop_reason,
    {f('Type')} AS flow_type,
    {f('traffic_direction')} AS traffic_direction,
    lower(reply_raw) = 'true' AS is_reply,
    {f('IP')}.source AS src_ip, {f('IP')}.destination AS dst_ip, {f('IP')}."ipVersion" AS ip_version,
    {endpoint(src_e, 'src')},
    {endpoint(dst_e, 'dst')},
    {f('destination_names')} AS dst_names,
    {service(f('source_service'))} AS src_service,
    {service(f('destination_service'))} AS dst_service,
    {l7}.type AS l7_type,
    {dns}.query AS dns_query, {dns}.ips AS dns_ips,
    TRY_CAST(nullif({dns}.rcode, '') AS INTEGER) AS dns_rcode, {dns}.qtypes AS dns_qtypes,
    {http}.method AS http_method, {http}.url AS http_url,
    TRY_CAST(nullif({http}.code, '') AS INTEGER) AS http_code, {http}.protocol AS http_protocol,
    CAST({http}.headers AS VARCHAR) AS http_headers,
    {f('Summary')} AS summary,
    {', '.join(texts)}
  FROM raw
)
SELECT coalesce({ok}, false) AS ok, t_txt, {', '.join(_OUT)}, l4_raw, {', '.join(_RAW)}
FROM cols
"""


def _form(path: Path) -> bool | None:
    """True when most of the first lines are envelopes, False for bare flows, None when neither."""
    envelopes = bare = 0
    with open_evidence(path) as f:
        for n in range(FORM_LINES):
            data, too_long = _readline(f)
            if not data:
                break
            if n == 0 and data.startswith(BOM):
                data = data[3:]
            try:
                obj = orjson.loads(data) if data.strip() and not too_long else None
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            if obj.get("flow") is not None:
                envelopes += 1
            elif "verdict" in obj:
                bare += 1
            elif "node_name" in obj or "time" in obj:  # another envelope (lost_events, node_status, ...)
                envelopes += 1
    if envelopes == bare == 0:
        return None
    return envelopes >= bare


def bulk(path: str | Path, evidence: str, evidence_id: str) -> BulkResult | None:
    """Read a Hubble JSON-lines export with DuckDB; decline what only the per-record path can do.

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
        lines, no flows among its first lines).  Otherwise the ``flows`` rows of
        the ordinary flows stream out of ``batches`` (at most :data:`BATCH_ROWS`
        rows each); the declined line numbers, the record count and where the
        bulk path stopped are complete once ``batches`` is exhausted (see
        :class:`~kubeforensics.sources.base.BulkResult`).
    """
    path = Path(path)
    gz = bulk_lines.bulk_gzip(path, MIN_BULK_BYTES)
    if gz is None:
        return None
    try:
        envelopes = _form(path)
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # a damaged stream: the per-record path explains
        log.debug("bulk path of %s declined: %s", path, exc)
        return None
    if envelopes is None:
        return None
    return bulk_lines.streamed(lambda result: _stream(path, gz, envelopes, evidence, evidence_id, result))


def scan_plain(path: Path) -> tuple[_Lines, np.ndarray] | None:
    """:func:`audit_fast.scan_lines` for an uncompressed file, also giving where each line starts
    (``bulk_lines.scan_plain``, reading 1 MB at a time as the audit path: a chunk's newline mask stays in the
    cache; 16 MB chunks cost about twice the CPU)."""
    return bulk_lines.scan_plain(path, chunk=_SCAN_CHUNK, max_line=MAX_OBJECT_BYTES)


#: Fields that identify a line: (path of JSON keys, DuckDB column), compared by ``bulk_lines.matches``.
#: In envelopes, the columns the query gives anyway: the time text (the flow's, else the envelope's), the node
#: (the flow's, else the envelope's) and the flow's uuid, taken from the line as the query takes them.
def _keys_envelope(obj: dict[str, Any]) -> Iterable[tuple[Any, str]]:
    flow = obj.get("flow")
    flow = flow if isinstance(flow, dict) else {}
    t = flow.get("time")
    if t is None or t == "":
        t = obj.get("time")
    node = flow.get("node_name")
    if node is None:
        node = obj.get("node_name")
    return ((t, "t_txt"), (node, "node"), (flow.get("uuid"), "uuid"))


_KEYS_BARE: bulk_lines.Keys = (
    (("time",), "t_txt"), (("node_name",), "node"), (("uuid",), "uuid"), (("verdict",), "verdict"),
)


def _stream(
    path: Path, gz: bool, envelopes: bool, evidence: str, evidence_id: str, result: BulkResult
) -> Iterator[pa.Table]:
    """The batches of :func:`bulk` (``bulk_lines.stream``); keeps ``result`` up to date before each one is yielded.

    The line scan (:func:`scan_plain`, or :func:`audit_fast.scan_lines` for gzip
    files) runs while DuckDB computes the first batches.  As ``audit_fast._stream``:
    a batch whose first or last row does not carry the identifying fields of the
    line it is mapped to is dropped and the stream ends with ``result.complete``
    False (so does a DuckDB error, or a file that is not JSON lines of objects);
    the lines from ``result.next_line`` on then go record by record.
    """
    keys: bulk_lines.Keys | bulk_lines.Fields = _keys_envelope if envelopes else _KEYS_BARE

    def open_lines() -> tuple[_Lines | None, bulk_lines.Cursor | None]:
        return bulk_lines.open_lines(path, gz, keys, scan_gz=scan_lines, scan=scan_plain, chunk=_CHUNK,
                                     max_line=MAX_OBJECT_BYTES)

    memo: dict[str, _L4Info] = {}

    def convert(rb: pa.RecordBatch, offset: int, lines: _Lines) -> tuple[pa.Table, np.ndarray]:
        return _convert(rb, offset, lines, evidence, evidence_id, memo)

    yield from bulk_lines.stream(result, path, _sql(str(path), gz, envelopes), open_lines, convert,
                                 connect=_connect, batch_rows=BATCH_ROWS, name="hubble-bulk")


#: Output columns holding text read by ``fields.text`` / ``fields.strings`` (checked by :func:`_odd_rows`).
_TEXT_COLUMNS = [c.name for c in FLOWS.columns if c.type in ("str", "list<str>")
                 and c.name not in ("event_id", "evidence", "src_service", "dst_service", "http_headers", *_L4_OUT)]
#: ... of which these are checked once per distinct value (:func:`_odd_rows_per_value`): few values per batch,
#: each starting with a byte that needs a closer look (a digit: IPs; ``I``: ``INGRESS``, ``IPv4``).
_PER_VALUE_COLUMNS = ("src_ip", "dst_ip", "traffic_direction", "ip_version")


def _odd_candidates(cand: np.ndarray, first: np.ndarray, starts: np.ndarray, lens: np.ndarray, data: np.ndarray,
                    us: bool) -> np.ndarray:
    """Of the rows ``cand`` (whose values start with a byte of :data:`_ODD_FIRST`), those ``_ODD`` may match:
    a necessary condition on the value's length and a few of its bytes, so that the regex reads only these.

    ``first``, ``starts`` and ``lens``: each candidate's first byte, where its text starts in ``data`` and its
    length; ``us``: whether any value holds ``\x1f`` (which may end a match inside a value).
    """
    keep = ~(_DIGIT[first] | _LETTER[first])  # [, {, -: the regex decides
    letter = np.flatnonzero(_LETTER[first])
    if len(letter):  # nan, inf, infinity: the whole value, or followed by \x1f
        n = lens[letter]
        hit = (n == 3) | (n == 8)
        if us:
            at = starts[letter]
            hit |= ((n > 3) & (data[np.where(n > 3, at + 3, at)] == _US)) \
                | ((n > 8) & (data[np.where(n > 8, at + 8, at)] == _US))
        keep[letter] = hit
    digit = np.flatnonzero(_DIGIT[first])
    if len(digit):
        if us:
            keep[digit] = True
        else:
            n = lens[digit]
            at = starts[digit]
            expo = np.zeros(len(digit), dtype=bool)
            # the exponent form: the value ends with 3 digits (its last byte checked first, then the few left) ...
            end = at + n
            walk = np.flatnonzero(n >= 5)
            for back in (1, 2, 3):
                walk = walk[_DIGIT[data[end[walk] - back]]]
            # ... after an e or E that only [\d.] precede (from the second byte, with room for 3 digits after it)
            k = 1
            while len(walk):
                b = data[at[walk] + k]
                expo[walk[_EXP[b]]] = True
                k += 1
                walk = walk[_MANTISSA[b] & (n[walk] - 4 >= k)]
            # 19 leading digits (the 19th byte first: a hex id or a name fails at once)
            long = np.flatnonzero(n >= 19)
            for k in range(18, 0, -1):
                if not len(long):
                    break
                long = long[_DIGIT[data[at[long] + k]]]
            expo[long] = True
            keep[digit] = expo
    return cand[keep]


def _odd_rows(col: pa.Array) -> np.ndarray:
    """Rows of a text or list-of-text column holding a value ``fields.text`` would read otherwise than
    DuckDB (see ``_ODD``), or a list holding a null (``fields.strings`` drops those).

    The first byte of each value decides most (:data:`_ODD_FIRST`), the few candidates left
    (:func:`_odd_candidates`) go to the regex; a list's values are mapped to their rows only when one is odd."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    is_list = pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
    values = col.flatten() if is_list else col
    bad = []
    if is_list and values.null_count:
        bad.append(np.flatnonzero(~values.is_valid().to_numpy(zero_copy_only=False)))
    n = len(values)
    buf = values.buffers()[2] if n and values.null_count < n else None
    if buf is not None and buf.size:
        wide = pa.types.is_large_string(values.type)
        offsets: np.ndarray = np.frombuffer(values.buffers()[1], dtype=np.int64 if wide else np.int32)[
            values.offset:values.offset + n + 1]
        data = np.frombuffer(buf, dtype=np.uint8)
        starts = offsets[:-1]
        # the first byte of each value (of the last byte of the data for an empty value at the end: not present)
        first = data[np.minimum(starts, len(data) - 1)]
        present = np.greater(offsets[1:], starts)
        if values.null_count:
            present &= values.is_valid().to_numpy(zero_copy_only=False)
        cand = np.flatnonzero(present & _ODD_FIRST[first])
        if len(cand):
            cand = _odd_candidates(cand, first[cand], starts[cand], offsets[cand + 1] - starts[cand], data,
                                   bool(np.any(data[int(offsets[0]):int(offsets[-1])] == _US)))
        if len(cand):
            hit = pc.match_substring_regex(values.take(pa.array(cand)), _ODD_VALUE_RE2)
            bad.append(cand[hit.to_numpy(zero_copy_only=False)])
    if not bad:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(bad)
    if not len(idx) or not is_list:
        return idx
    return pc.list_parent_indices(col).to_numpy()[idx]


def _odd_rows_per_value(col: pa.Array) -> np.ndarray:
    """:func:`_odd_rows` of a text column, read once per distinct value (the rows of the odd ones)."""
    values, idx = bulk_lines.dictionary(col)
    odd = _odd_rows(values)
    if not len(odd):
        return np.zeros(0, dtype=np.int64)
    hit = np.zeros(len(values) + 1, dtype=bool)
    hit[odd] = True
    return np.flatnonzero(hit[idx])


#: What one ``l4`` template gives: (usable, protocol, TCP flags, index of the source port's number among
#: the numbers of the text or -1, the same for the destination port).
_L4Info = tuple[bool, "str | None", "str | None", int, int]
_NO_L4: _L4Info = (True, None, None, -1, -1)
_BAD_L4: _L4Info = (False, None, None, -1, -1)
#: At most this many templates are remembered per stream (the memo starts afresh when full).
MEMO_TEMPLATES = 4096


def _l4_template(t: str) -> _L4Info:
    """What an ``l4`` template (see :data:`_L4_PORTED`) gives, as the per-record path reads it: ``{}`` nothing;
    one ported protocol with its ports and flags (flags in :data:`TCP_FLAGS` order, ``""`` when none is
    true); one other protocol; anything else is declined."""
    if t == "{}":
        return _NO_L4
    m = _L4_PORTED.fullmatch(t)
    if m is not None:
        proto, sp, dp, fl = m.groups()
        if fl is not None and _FLAGS.fullmatch(fl) is None:
            return _BAD_L4
        flags = None if fl is None or fl == "{}" else ",".join(k for k in TCP_FLAGS if f'"{k}":true' in fl)
        return True, proto, flags, 0 if sp else -1, (1 if sp else 0) if dp else -1
    m = _L4_OTHER.fullmatch(t)
    if m is not None and m.group(1) not in ("TCP", "UDP", "SCTP"):
        return True, m.group(1), None, -1, -1
    return _BAD_L4


def _l4_columns(col: pa.Array, memo: dict[str, _L4Info]) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """``protocol``, ``src_port``, ``dst_port`` and ``tcp_flags`` from ``l4`` JSON texts (null: no ``l4``), and
    which rows they are right for (the others are declined).

    Each text becomes its template (:data:`_L4_PORTED`): the digits of every number after a ``:`` (walked
    forwards from the colons of the string buffer with numpy, all numbers of the batch at once) become U+0001,
    so a batch has a few distinct templates, each mapped once (:func:`_l4_template`, remembered in ``memo``).
    The ports are the numbers at the template's indices, valid up to ``2**31 - 1``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    valid = col.is_valid().to_numpy(zero_copy_only=False) if col.null_count else None
    bufs = col.buffers()
    wide = pa.types.is_large_string(col.type)
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)[col.offset:col.offset + n + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = (np.frombuffer(bufs[2], dtype=np.uint8)[lo:hi] if bufs[2] is not None else np.zeros(0, dtype=np.uint8))
    starts = offsets[:-1] - lo
    # a number: the digits after a ':' (walked forwards from there, a digit at a time, all numbers at once)
    colon = np.flatnonzero(data[:-1] == ord(":")) + 1
    num_pos = colon[(data[colon] - np.uint8(48)) < 10]
    values = np.zeros(len(num_pos), dtype=np.int64)  # the numbers (their first 10 digits: longer ones never match)
    template = data.copy()
    walk = np.arange(len(num_pos))  # the numbers with a digit at offset k
    k = 0
    while len(walk):
        here = num_pos[walk] + k
        template[here] = 1
        if k < 10:
            values[walk] = values[walk] * 10 + (data[here] - 48)
        k += 1
        more = here + 1 < len(data)
        walk, here = walk[more], here[more] + 1
        walk = walk[(data[here] - np.uint8(48)) < 10]
    rel = (offsets - lo).astype(np.int64 if wide else np.int32)
    texts = pa.Array.from_buffers(col.type, n, [None, pa.py_buffer(rel), pa.py_buffer(template)])
    enc = texts.dictionary_encode()
    uniq = enc.dictionary.to_pylist()
    infos = []
    for t in uniq:
        info = memo.get(t)
        if info is None:
            if len(memo) >= MEMO_TEMPLATES:
                memo.clear()
            info = memo[t] = _l4_template(t)
        infos.append(info)
    infos.append(_NO_L4)  # null: no l4
    idx = enc.indices.to_numpy(zero_copy_only=False)
    if valid is not None:
        idx = np.where(valid, idx, len(uniq))
    ok_t = np.array([i[0] for i in infos], dtype=bool)
    proto_t = pa.array([i[1] for i in infos], type=pa.string())
    flags_t = pa.array([i[2] for i in infos], type=pa.string())
    ok_t[_odd_rows(proto_t)] = False
    ok_t[_odd_rows(flags_t)] = False
    ok = ok_t[idx]
    take = pa.array(idx)
    cols: dict[str, pa.Array] = {"protocol": proto_t.take(take), "tcp_flags": flags_t.take(take)}
    first = np.searchsorted(num_pos, starts)  # the first number of each row
    for name, at in (("src_port", 3), ("dst_port", 4)):
        k = np.array([i[at] for i in infos], dtype=np.int64)[idx]
        has = k >= 0
        port = np.zeros(n, dtype=np.int64)
        port[has] = values[first[has] + k[has]]
        ok &= port <= _INT32_MAX
        cols[name] = pa.array(port.astype(np.int32), mask=~has, type=pa.int32())
    return ok, cols


_TIME = FLOWS.column("time").arrow_type
_EPOCH = "1970-01-01T00:00:00Z"


def _cast_times(texts: pa.Array) -> pa.Array:
    """Arrow's cast of ISO 8601 texts to ``time``; null for a text it refuses (an impossible date such as
    February 30: the whole cast fails, so the halves are cast again until the refused texts are alone)."""
    try:
        return pc.cast(texts, _TIME)
    except pa.ArrowInvalid:
        if len(texts) == 1:
            return pa.nulls(1, _TIME)
        half = len(texts) // 2
        return pa.concat_arrays([_cast_times(texts.slice(0, half)), _cast_times(texts.slice(half))])


#: Days of each month (February of a leap year has 29).
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _possible_dates(texts: pa.Array) -> np.ndarray:
    """Which texts of :data:`_TS_RE2`'s form name a day their month has (not February 30, April 31, ...)."""
    def number(start: int, stop: int) -> np.ndarray:
        return pc.cast(pc.utf8_slice_codeunits(texts, start, stop), pa.int64()).to_numpy(zero_copy_only=False)

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return day <= _MONTH_DAYS[month] + (leap & (month == 2))


#: A run of texts of :data:`_TS_RE2`'s form, written one after the other: ``Z`` ends each and is in none
#: elsewhere, so a string of ``k`` such texts has ``k`` ``Z`` characters, one at the end of each.
_TS_RUN_RE2 = "^(?:" + _TS_RE2[1:-1] + ")+$"


def _all_times(col: pa.Array) -> bool:
    """True when every text of ``col`` is of :data:`_TS_RE2`'s form, by one match of :data:`_TS_RUN_RE2` over
    the texts' bytes taken as one string (a batch's are contiguous in its buffer) instead of one per row.

    The run splits into texts of the form only after its ``Z`` characters; when each row is non-empty, not null
    and ends with a ``Z``, and the bytes hold as many ``Z`` characters as there are rows, those splits are the
    rows' ends."""
    n = len(col)
    if not n or col.null_count or pa.types.is_large_string(col.type):
        return False
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset:col.offset + n + 1]
    if not np.all(offsets[1:] > offsets[:-1]):
        return False
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8)
    lo, hi = int(offsets[0]), int(offsets[-1])
    if not np.all(data[offsets[1:] - 1] == ord("Z")) or np.count_nonzero(data[lo:hi] == ord("Z")) != n:
        return False
    run = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([lo, hi], dtype=np.int32)),
                                                 col.buffers()[2]])
    return bool(pc.match_substring_regex(run, _TS_RUN_RE2)[0].as_py())


def _times(col: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Which rows have a usable time text (``YYYY-MM-DDTHH:MM:SS[.fraction]Z``, :data:`_TS_RE2` as the audit path,
    of a real date), and the ``time`` column (valid for those rows).

    Arrow's cast gives exactly the nanoseconds DuckDB's ``TIMESTAMP_NS`` cast gives for these texts (tested); the
    regex keeps out the forms it accepts beyond them (offsets, a space for ``T``, other years).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if _all_times(col):  # one regex match for the batch (most batches)
        ok = np.ones(len(col), dtype=bool)
    else:
        ok = pc.match_substring_regex(col, _TS_RE2).fill_null(False).to_numpy(zero_copy_only=False)
    texts = col if ok.all() else pc.if_else(pa.array(ok), col, _EPOCH)
    try:
        time = pc.cast(texts, _TIME)
    except pa.ArrowInvalid:  # impossible dates (found at once, not by halves), then any other refusal by halves
        ok &= _possible_dates(texts)
        time = _cast_times(pc.if_else(pa.array(ok), col, _EPOCH))
    if time.null_count:
        ok &= time.is_valid().to_numpy(zero_copy_only=False)
    return ok, time


def _matching_rows(col: pa.Array, pattern: str) -> np.ndarray:
    """Rows whose text RE2 ``pattern`` matches (as SQL's ``regexp_matches``), the regex read once per distinct text."""
    values, idx = bulk_lines.dictionary(col)
    hit = pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)
    if not hit.any():
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.append(hit, False)[idx])


def _identities(col: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """An endpoint's ``identity`` as DuckDB's text: which rows read as the per-record path reads them (null, empty,
    or a decimal of at most 18 digits: :data:`_INT_RE2`), and the int64 column (null for null and empty).

    Converted once per distinct text (Arrow's cast of such a decimal is DuckDB's ``BIGINT`` cast)."""
    values, idx = bulk_lines.dictionary(col)
    good = pc.match_substring_regex(values, _INT_RE2)
    ints = pc.cast(pc.if_else(good, values, "0"), pa.int64())
    usable = np.append((good.to_numpy(zero_copy_only=False) | pc.equal(values, "").to_numpy(zero_copy_only=False)),
                       True)
    cells = pa.concat_arrays([pc.if_else(good, ints, pa.scalar(None, pa.int64())), pa.nulls(1, pa.int64())])
    return usable[idx], cells.take(pa.array(idx))


def _convert(
    rb: pa.RecordBatch, offset: int, lines: _Lines, evidence: str, evidence_id: str,
    memo: dict[str, _L4Info] | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """One DuckDB batch -> (flows rows of its ordinary flows, line numbers of the declined ones)."""
    ok = rb.column("ok").to_numpy(zero_copy_only=False).copy()
    for name in (*_TEXT_COLUMNS, "ss_name", "ss_ns", "ds_name", "ds_ns"):
        ok[(_odd_rows_per_value if name in _PER_VALUE_COLUMNS else _odd_rows)(rb.column(name))] = False
    ok[_matching_rows(rb.column("summary"), _REDACT_RE2)] = False
    ids: dict[str, pa.Array] = {}
    for side in ("src", "dst"):
        usable, ids[side + "_identity"] = _identities(rb.column(side + "_identity_raw"))
        ok &= usable
    l4_ok, l4 = _l4_columns(rb.column("l4_raw"), {} if memo is None else memo)
    ok &= l4_ok
    time_ok, time = _times(rb.column("t_txt"))
    ok &= time_ok
    rows = np.arange(offset, offset + rb.num_rows, dtype=np.int64)
    rejected = lines.of(rows[~ok])
    t = pa.Table.from_batches([rb])
    if not ok.all():
        keep = pa.array(ok)
        t = t.filter(keep)
        l4 = {k: v.filter(keep) for k, v in l4.items()}
        ids = {k: v.filter(keep) for k, v in ids.items()}
        time = time.filter(keep)
    n = t.num_rows
    line = pa.array(lines.of(rows[ok]), type=pa.int64())
    cols: dict[str, Any] = {
        **l4,
        **ids,
        "line": line,
        "event_id": pc.binary_join_element_wise(evidence_id, pc.cast(line, pa.string()), ":"),
        "evidence": pa.repeat(evidence, n),
        "time": time,
    }
    arrays = []
    for field in FLOWS.arrow_schema:
        c = cols.get(field.name)
        if c is None:
            c = t.column(field.name)
        if c.type != field.type:
            c = c.cast(field.type)
        arrays.append(c)
    return pa.Table.from_arrays(arrays, schema=FLOWS.arrow_schema), rejected
