"""From evidence files to raw records, with every byte accounted for.

Handles plain and gzip files (also truncated ones), a UTF-8 BOM, CRLF, JSON
lines, a whole-file JSON array or object (pretty-printed dumps), and
Kubernetes ``*List`` wrappers (expanded into their items).  Everything that
cannot become a JSON object is yielded as a :class:`Quarantined` record with a
reason, never dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from kubeforensics import redact

if TYPE_CHECKING:
    import numpy as np

#: Longest line read into memory; longer lines are quarantined (first bytes kept).
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Largest whole-file JSON document (array or pretty-printed object) loaded at once.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
#: How much of a quarantined record's raw bytes are kept in the quarantine (the evidence keeps all).
QUARANTINE_RAW_BYTES = 1024 * 1024
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Record:
    """One JSON object read from evidence."""

    obj: dict[str, Any]
    line: int
    index: int | None = None  # position inside an array/List on that line


@dataclass(frozen=True)
class Quarantined:
    """A record that could not be used, with where it was and why."""

    evidence: str
    line: int
    reason: str
    raw: bytes
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The quarantine entry as stored in ``quarantine/<sha12>.jsonl``, secrets redacted.

        The reason and the raw text go through :mod:`kubeforensics.redact` (a
        record that still parses as JSON is redacted as an object, so Secret
        ``data`` loses its values too); the untouched bytes stay in the evidence
        copy at ``evidence``:``line``.
        """
        return {
            "evidence": self.evidence,
            "line": self.line,
            "index": self.index,
            "reason": redact.text(self.reason),
            "raw": redact_raw(self.raw),
        }


_SECRET_KIND = re.compile(r'"kind"\s*:\s*"(Secret|TokenRequest)"')
_SECRET_DATA = re.compile(r'("(?:data|stringData)"\s*:\s*\{)[^}]*\}?')


def redact_raw(raw: bytes) -> str:
    """Quarantined bytes as text with secret material redacted (invalid UTF-8 shown as ``\\xNN``)."""
    text = raw.decode("utf-8", errors="backslashreplace")
    if not redact.enabled() or not text:
        return text
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if _SECRET_KIND.search(text):  # a damaged Secret: its data values cannot be told apart by name
            text = _SECRET_DATA.sub(lambda m: f'{m.group(1)}"{redact.MARK}"}}', text)
        return redact.text(text) or ""
    try:
        return orjson.dumps(redact.k8s_object(obj)).decode()
    except (TypeError, orjson.JSONEncodeError, RecursionError):
        # Too deep to walk or to write back: keep only what the text patterns allow.
        return redact.text(text) or ""


def sha256_file(path: str | Path, chunk: int = 4 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_evidence(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently decompressing gzip."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _expand(obj: Any, line: int, evidence: str, raw: bytes) -> Iterator[Record | Quarantined]:
    """Turn one parsed JSON value into records: arrays and *List objects are expanded."""
    if isinstance(obj, dict):
        items = obj.get("items")
        kind = obj.get("kind")
        if isinstance(items, list) and isinstance(kind, str) and kind.endswith("List"):
            item_kind = kind[: -len("List")] if kind != "List" else None
            for n, item in enumerate(items):
                if isinstance(item, dict):
                    if item_kind and "kind" not in item:
                        item = {**item, "kind": item_kind}
                    yield Record(item, line, n)
                else:
                    yield Quarantined(evidence, line, f"item {n} of {kind} is not an object", raw[:4096], n)
            return
        yield Record(obj, line, None)
    elif isinstance(obj, list):
        for n, item in enumerate(obj):
            if isinstance(item, dict):
                yield Record(item, line, n)
            else:
                yield Quarantined(
                    evidence, line, f"element {n} of the JSON array is {type(item).__name__}, not an object",
                    orjson.dumps(item)[:4096], n,
                )
    else:
        yield Quarantined(evidence, line, f"JSON value is {type(obj).__name__}, not an object", raw[:4096])


def _readline(f: IO[bytes]) -> tuple[bytes, bool]:
    """Read one line; returns (line, too_long).  A too-long line is consumed but only its start kept."""
    data = f.readline(MAX_LINE_BYTES + 1)
    if len(data) <= MAX_LINE_BYTES or data.endswith(b"\n"):
        return data, False
    head = data[:QUARANTINE_RAW_BYTES]
    while True:
        more = f.readline(MAX_LINE_BYTES)
        if not more or more.endswith(b"\n"):
            break
    return head, True


#: Read size of the line skipper of restricted reads (:func:`iter_records` with ``only_lines``/``from_line``).
SKIP_CHUNK = 4 * 1024 * 1024


class _LineSkipper:
    """An uncompressed file read a chunk at a time: skips lines without looking at them, reads one like ``readline``.

    With ``line_starts`` (where each line of this very file starts: ``line_starts[n - 1]`` for line ``n``, as the
    bulk paths' line scan finds them), a skip seeks to the line instead of counting the newlines before it.
    """

    def __init__(self, f: IO[bytes], chunk: int, line_starts: np.ndarray | None = None) -> None:
        self._f = f
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self._starts = line_starts
        self._done = 0  # lines skipped or read to their newline so far

    def skip(self, k: int) -> int:
        """Skip ``k`` lines; returns how many were skipped (fewer at the end of the file)."""
        if self._starts is not None:
            target = min(self._done + k, len(self._starts))
            if target < len(self._starts):
                self._f.seek(int(self._starts[target]))
            else:
                self._f.seek(0, 2)  # past the last line
            self._buf, self._pos = b"", 0
            skipped, self._done = target - self._done, target
            return skipped
        done = 0
        while done < k:
            have = self._buf.count(b"\n", self._pos)
            if have >= k - done:
                for _ in range(k - done):
                    self._pos = self._buf.index(b"\n", self._pos) + 1
                self._done += k
                return k
            done += have  # the whole buffer: a partial line at its end goes on in the next chunk
            self._buf, self._pos = self._f.read(self._chunk), 0
            if not self._buf:
                self._done += done
                return done
        self._done += done
        return done

    def readline(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, up to and including the next newline."""
        while True:
            end = self._buf.find(b"\n", self._pos, self._pos + limit)
            if end >= 0:
                out, self._pos = self._buf[self._pos:end + 1], end + 1
                self._done += 1
                return out
            if len(self._buf) - self._pos >= limit:
                out = self._buf[self._pos:self._pos + limit]
                self._pos += limit
                return out
            more = self._f.read(self._chunk)
            if not more:
                out, self._buf, self._pos = self._buf[self._pos:], b"", 0
                return out
            self._buf, self._pos = self._buf[self._pos:] + more, 0


def _identity(path: str | Path) -> tuple[Any, ...] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def iter_records(
    path: str | Path,
    evidence: str | None = None,
    *,
    only_lines: Container[int] | None = None,
    from_line: int | None = None,
    keep: dict[str, Any] | None = None,
    line_starts: np.ndarray | None = None,
) -> Iterator[Record | Quarantined]:
    """Yield every record of an evidence file, in order.

    ``evidence`` is the name used in quarantine entries (defaults to the path).
    ``only_lines`` and ``from_line`` restrict a JSON-lines file to the line
    numbers in ``only_lines`` plus every line from ``from_line`` on (either may be
    None; with both None every line is read).  Other lines are not even parsed,
    nor checked for length: in an uncompressed file they are skipped a chunk at
    a time (when ``only_lines`` can be iterated), in a gzip file line by line (so
    that a damaged stream is reported after the same line as in a full read).
    Both are ignored for whole-file JSON documents.  ``keep`` is a dict shared by
    format detection and the read that follows (see ``FileIngest``): a whole-file
    document parsed here is kept in it, and the next ``iter_records`` given the
    same dict takes it from there, once, while the file is unchanged, instead of
    parsing the same bytes again.  ``line_starts`` (where each line of this file
    starts, from a bulk path's line scan) lets a restricted read of an uncompressed
    file seek to the lines it wants instead of counting every newline before them.
    """
    ident = _identity(path) if keep is not None else None
    if keep and ident is not None and keep.get("file") == ident:
        obj, data = keep.pop("doc")
        keep.clear()
        yield from _expand(obj, 1, evidence or str(path), data)
        return
    restricted = only_lines is not None or from_line is not None
    first_all = from_line if from_line is not None else float("inf")
    evidence = evidence or str(path)
    f = open_evidence(path)
    line_no = 0
    try:
        try:
            first = f.peek(4096)[:4096] if hasattr(f, "peek") else b""  # type: ignore[attr-defined]
        except (OSError, EOFError, zlib.error):
            first = b""
        head = first[3:] if first.startswith(BOM) else first
        if head.lstrip()[:1] == b"[" or _is_multiline_document(head):
            yield from _whole_document(f, evidence, keep, ident)
            return
        reader: Any = f
        targets: list[int] | None = None  # the wanted lines before first_all, in order, when skipping
        if restricted and not isinstance(f, gzip.GzipFile) and (only_lines is None or hasattr(only_lines, "__iter__")):
            reader = _LineSkipper(f, SKIP_CHUNK, line_starts)
            targets = sorted(n for n in only_lines if n < first_all) if only_lines is not None else []  # type: ignore[attr-defined]
        ti = 0
        while True:
            try:
                if targets is not None and line_no + 1 < first_all:
                    while ti < len(targets) and targets[ti] <= line_no:
                        ti += 1
                    nxt = targets[ti] if ti < len(targets) else first_all
                    if nxt == float("inf"):
                        return
                    todo = int(nxt) - 1 - line_no
                    if todo > 0:
                        line_no += reader.skip(todo)
                        if line_no < nxt - 1:
                            return
                data, too_long = _readline(reader)
            except (OSError, EOFError, zlib.error) as exc:
                yield Quarantined(
                    evidence, line_no + 1,
                    f"compressed stream is damaged after line {line_no}: {exc}; records up to here were read",
                    b"",
                )
                return
            if not data:
                return
            line_no += 1
            if restricted and line_no < first_all and (only_lines is None or line_no not in only_lines):
                continue
            if line_no == 1 and data.startswith(BOM):
                data = data[3:]
            if too_long:
                yield Quarantined(evidence, line_no, f"line longer than {MAX_LINE_BYTES} bytes", data)
                continue
            stripped = data.strip()
            if not stripped:
                continue
            try:
                obj = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                yield Quarantined(evidence, line_no, _json_reason(stripped, exc), stripped[:QUARANTINE_RAW_BYTES])
                continue
            yield from _expand(obj, line_no, evidence, stripped)
    finally:
        f.close()


def _is_multiline_document(head: bytes) -> bool:
    """True when the file starts with a JSON object that does not end on its first line."""
    text = head.lstrip()
    if text[:1] != b"{":
        return False
    first_line = text.split(b"\n", 1)[0].strip()
    try:
        orjson.loads(first_line)
        return False
    except orjson.JSONDecodeError:
        pass
    # JSON lines whose first line is damaged: a later complete line parses on its own.
    for later in text.split(b"\n")[1:-1]:
        later = later.strip()
        if later.startswith(b"{") and later.endswith(b"}"):
            try:
                orjson.loads(later)
                return False
            except orjson.JSONDecodeError:
                continue
    # A pretty-printed object starts with a line that is just "{" or '{ "key": ...' without a close.
    return b"\n" in text and first_line.count(b"{") > first_line.count(b"}")


def _whole_document(f: IO[bytes], evidence: str, keep: dict[str, Any] | None = None,
                    ident: tuple[Any, ...] | None = None) -> Iterator[Record | Quarantined]:
    try:
        data = f.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        yield Quarantined(evidence, 1, f"compressed stream is damaged: {exc}", b"")
        return
    if len(data) > MAX_DOCUMENT_BYTES:
        yield Quarantined(
            evidence, 1, f"JSON document larger than {MAX_DOCUMENT_BYTES} bytes; split it into JSON lines",
            data[:4096],
        )
        return
    if data.startswith(BOM):
        data = data[3:]
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # Maybe it is JSON lines after all, with a pretty-printed first record: fall back to lines.
        yield from _lines_of(data, evidence, _json_reason(data, exc))
        return
    if keep is not None and ident is not None:
        keep.clear()
        keep.update(file=ident, doc=(obj, data))
    yield from _expand(obj, 1, evidence, data)


def _lines_of(data: bytes, evidence: str, doc_reason: str) -> Iterator[Record | Quarantined]:
    stream = io.BytesIO(data)
    parsed_any = False
    pending: list[Quarantined] = []
    for line_no, raw in enumerate(stream, start=1):
        s = raw.strip()
        if not s:
            continue
        try:
            obj = orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            pending.append(Quarantined(evidence, line_no, _json_reason(s, exc), s[:QUARANTINE_RAW_BYTES]))
            continue
        parsed_any = True
        yield from _expand(obj, line_no, evidence, s)
    if not parsed_any:
        yield Quarantined(evidence, 1, doc_reason, data[:QUARANTINE_RAW_BYTES])
        return
    yield from pending


def _json_reason(data: bytes, exc: Exception) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as ue:
        return f"invalid UTF-8 at byte {ue.start}"
    msg = str(exc)
    if "recursion" in msg.lower() or "depth" in msg.lower():
        return "JSON nested too deeply"
    return f"invalid JSON: {msg}"
