"""The reader protocol and the engine that runs a reader over an evidence file.

A reader is a small class with

* ``name``: the format name (``audit``, ``tetragon``, ...), as used by ``--as``;
* ``tables``: the :class:`~kubeforensics.schema.TableSpec` s it fills, main table first;
* ``sniff(obj) -> bool``: does this JSON object look like one of its records;
* ``extract(obj) -> iterable of (table_name, row)``: the rows one record gives.
  Row values use the column's Python type (timestamps as ``int`` nanoseconds
  since the epoch, see :func:`kubeforensics.sources.fields.ts`).  A record that
  cannot be used raises :class:`~kubeforensics.errors.RecordError` with the
  reason; it is then quarantined.

The engine adds the provenance columns (``event_id``, ``evidence``, ``line``),
builds Arrow tables in batches and keeps the accounting:
``records == ingested + quarantined`` for every file.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa

from kubeforensics.errors import RecordError, UnknownFormatError
from kubeforensics.schema import TableSpec, to_arrow
from kubeforensics.sources.records import Quarantined, Record, iter_records, sha256_file

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

Row = dict[str, Any]
SNIFF_RECORDS = 50


@dataclass
class BulkResult:
    """What a reader's optional vectorised ``bulk`` path makes of a whole file, streamed.

    ``batches`` yields tables of rows for the reader's main table, provenance
    columns included, in file order; each row is one record.  The other fields
    are filled in by the producer *as it goes* and are complete only once
    ``batches`` is exhausted (or has raised):

    * ``records``: the records the yielded batches account for;
    * ``python_lines``: line numbers (up to ``next_line - 1``) it declined, which
      the engine then reads through the per-record path (``extract``);
    * ``next_line``: the first line that yielded batches do not cover (updated
      before each batch is yielded);
    * ``complete``: True when the batches and ``python_lines`` cover the whole
      file.  When False (the bulk reader failed or stopped part-way: a malformed
      line, a damaged stream, a row it could not map to its line), every line
      from ``next_line`` on goes through the per-record path, which quarantines
      precisely.  ``complete=False, next_line=1`` means the whole file.

    ``line_starts``, when the bulk reader's line scan found them (an uncompressed
    file), are where each line starts (line ``n`` at ``line_starts[n - 1]``): the
    per-record read of the declined lines seeks to them instead of reading the
    whole file again up to the last one.
    """

    batches: Iterator[pa.Table]
    records: int = 0
    python_lines: set[int] = field(default_factory=set)
    next_line: int = 1
    complete: bool = False
    line_starts: np.ndarray | None = None


@runtime_checkable
class Reader(Protocol):
    name: ClassVar[str]
    tables: ClassVar[tuple[TableSpec, ...]]

    def sniff(self, obj: Mapping[str, Any]) -> bool: ...

    def extract(self, obj: Mapping[str, Any]) -> Iterable[tuple[str, Row]]: ...


@dataclass
class FileAccount:
    """What happened to one evidence file."""

    path: str
    format: str
    records: int = 0
    ingested: int = 0
    quarantined: int = 0
    rows: Counter[str] = field(default_factory=Counter)  # rows written per table
    notes: Counter[str] = field(default_factory=Counter)  # e.g. records routed to another format
    error: str | None = None  # a file-level problem (unknown format, unreadable)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "records": self.records,
            "ingested": self.ingested,
            "quarantined": self.quarantined,
            "rows": dict(self.rows),
            "notes": dict(self.notes),
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class ReadResult:
    """Everything read from one file, in memory (see :func:`read_file`)."""

    account: FileAccount
    tables: dict[str, pa.Table]
    quarantine: list[Quarantined]

    def frame(self, table: str | None = None):  # -> pandas.DataFrame
        name = table or next(iter(self.tables))
        return self.tables[name].to_pandas()


def detect_format(path: str | Path, readers: Mapping[str, Reader], *, keep: dict[str, Any] | None = None) -> str:
    """Name of the reader that claims most of the first records; raises UnknownFormatError.

    ``keep``: a whole-file document parsed to sniff it is kept there for the read that follows
    (``iter_records(..., keep=)``); emptied when no reader claims the file."""
    votes: Counter[str] = Counter()
    seen = 0
    for rec in iter_records(path, keep=keep):
        if isinstance(rec, Quarantined):
            continue
        seen += 1
        for name, reader in readers.items():
            try:
                if reader.sniff(rec.obj):
                    votes[name] += 1
                    break
            except Exception:  # noqa: BLE001, S112 - a raising sniff does not claim it; never fails a file
                continue
        if seen >= SNIFF_RECORDS:
            break
    if not votes:
        if keep is not None:
            keep.clear()
        what = "no JSON records" if seen == 0 else f"{seen} JSON records that no reader recognises"
        raise UnknownFormatError(
            f"{path}: unknown format ({what})",
            hint="use --as audit|tetragon|hubble|falco|k8s-events|k8s-objects to force one",
        )
    return votes.most_common(1)[0][0]


class FileIngest:
    """Run readers over one file and yield Arrow batches per table.

    Records that the file's reader does not recognise but another reader does
    (mixed files) are routed to that reader, unless the format was forced.
    """

    def __init__(
        self,
        path: str | Path,
        readers: Mapping[str, Reader],
        fmt: str | None = None,
        *,
        evidence: str | None = None,
        evidence_id: str | None = None,
        batch_size: int = 50_000,
    ) -> None:
        self.path = Path(path)
        self.readers = readers
        self.forced = fmt is not None
        self._kept: dict[str, Any] = {}  # a List document parsed by format detection, for batches() to read
        self.format = fmt or detect_format(self.path, readers, keep=self._kept)
        if self.format not in readers:
            raise UnknownFormatError(f"unknown format {self.format!r}", hint=f"choose one of {sorted(readers)}")
        self.evidence = evidence or self.path.name
        self.evidence_id = evidence_id or sha256_file(self.path)[:12]
        self.batch_size = batch_size
        self.account = FileAccount(str(path), self.format)
        self.quarantine: list[Quarantined] = []

    def _reader_for(self, obj: Mapping[str, Any]) -> Reader:
        main = self.readers[self.format]
        if self.forced:
            return main
        try:
            if main.sniff(obj):
                return main
        except Exception:  # noqa: BLE001, S110 - a raising sniff does not claim it (per record: no log)
            pass
        for name, reader in self.readers.items():
            if name == self.format:
                continue
            try:
                if reader.sniff(obj):
                    self.account.notes[f"routed to {name}"] += 1
                    return reader
            except Exception:  # noqa: BLE001, S112 - as above
                continue
        return main  # let the main reader explain why it cannot use it

    def _try_bulk(self) -> BulkResult | None:
        """Run the reader's vectorised path when it has one; None means: read record by record."""
        bulk = getattr(self.readers[self.format], "bulk", None)
        if bulk is None:
            return None
        try:
            return bulk(self.path, self.evidence, self.evidence_id)
        except Exception as exc:  # noqa: BLE001 - the per-record path is the reference; fall back to it
            log.debug("bulk path declined %s: %s", self.path, exc)
            return None

    def batches(self) -> Iterator[tuple[TableSpec, pa.Table]]:
        """Yield ``(table spec, arrow table)`` batches; fills ``account`` and ``quarantine``."""
        specs: dict[str, TableSpec] = {}
        for r in self.readers.values():
            for t in r.tables:
                specs[t.name] = t
        pending: dict[str, list[Row]] = {}
        acc = self.account
        only_lines: set[int] | None = None
        from_line: int | None = None
        bulk = self._try_bulk()
        if bulk is not None:
            yield from self._bulk_batches(bulk)
            if bulk.complete and not bulk.python_lines:
                return
            only_lines = bulk.python_lines
            from_line = None if bulk.complete else max(bulk.next_line, 1)
        kept, self._kept = self._kept or None, {}
        starts = bulk.line_starts if bulk is not None else None
        for rec in iter_records(self.path, self.evidence, only_lines=only_lines, from_line=from_line, keep=kept,
                                line_starts=starts):
            acc.records += 1
            if isinstance(rec, Quarantined):
                self._quarantine(rec)
                continue
            event_id = f"{self.evidence_id}:{rec.line}" + (f":{rec.index}" if rec.index is not None else "")
            reader = self._reader_for(rec.obj)
            try:
                rows = list(reader.extract(rec.obj))
            except RecordError as exc:
                self._quarantine(self._q(rec, str(exc)))
                continue
            except RecursionError:
                self._quarantine(self._q(rec, f"{reader.name} record nested too deeply to read"))
                continue
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
                self._quarantine(self._q(rec, f"unexpected shape for a {reader.name} record: {type(exc).__name__}: {exc}"))
                continue
            acc.ingested += 1
            for n, (table, row) in enumerate(rows):
                row["event_id"] = event_id if n == 0 else f"{event_id}#{n}"
                row["evidence"] = self.evidence
                row["line"] = rec.line
                bucket = pending.setdefault(table, [])
                bucket.append(row)
                if len(bucket) >= self.batch_size:
                    yield from self._flush(specs, pending, table)
        for table in list(pending):
            yield from self._flush(specs, pending, table)

    def _bulk_batches(self, bulk: BulkResult) -> Iterator[tuple[TableSpec, pa.Table]]:
        """Pass the bulk path's batches on as they come (each one can be written and dropped)."""
        main = self.readers[self.format].tables[0]
        acc = self.account
        batches = iter(bulk.batches)
        while True:
            try:
                table = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - lines from bulk.next_line on go record by record
                log.debug("bulk path of %s stopped before line %d: %s", self.path, bulk.next_line, exc)
                bulk.complete = False
                return
            acc.records += table.num_rows
            acc.ingested += table.num_rows
            acc.notes["vectorised"] += table.num_rows
            if table.num_rows:
                acc.rows[main.name] += table.num_rows
                yield main, table

    def _flush(self, specs: Mapping[str, TableSpec], pending: dict[str, list[Row]], table: str):
        rows = pending.pop(table, [])
        if not rows:
            return
        spec = specs[table]
        try:
            arrow = to_arrow(spec, rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            arrow = self._to_arrow_one_by_one(spec, rows)
        self.account.rows[table] += arrow.num_rows
        yield spec, arrow

    def _to_arrow_one_by_one(self, spec: TableSpec, rows: list[Row]) -> pa.Table:
        """Slow path when a batch does not convert: find and quarantine the rows that do not fit."""
        good: list[Row] = []
        for row in rows:
            try:
                to_arrow(spec, [row])
                good.append(row)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
                self.account.ingested -= 1
                self._quarantine(
                    Quarantined(self.evidence, row["line"], f"value does not fit table {spec.name}: {exc}", b"")
                )
        return to_arrow(spec, good)

    def _q(self, rec: Record, reason: str) -> Quarantined:
        import orjson

        try:
            raw = orjson.dumps(rec.obj)
        except (TypeError, orjson.JSONEncodeError, RecursionError):
            # orjson refuses depth > 255; the evidence copy keeps the original line.
            raw = f"(record cannot be re-serialised; see {self.evidence} line {rec.line})".encode()
        return Quarantined(self.evidence, rec.line, reason, raw[: 1024 * 1024], rec.index)

    def _quarantine(self, q: Quarantined) -> None:
        self.account.quarantined += 1
        self.quarantine.append(q)


def read_file(
    path: str | Path,
    fmt: str | None = None,
    *,
    readers: Mapping[str, Reader] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReadResult:
    """Read one evidence file into memory: tables per name, accounting, quarantine.

    For large inputs use a :class:`~kubeforensics.case.Case`, which streams to disk.
    """
    from kubeforensics.sources import READERS

    ing = FileIngest(path, readers or READERS, fmt)
    parts: dict[str, list[pa.Table]] = {}
    for spec, table in ing.batches():
        parts.setdefault(spec.name, []).append(table)
        if progress:
            progress(table.num_rows)
    # File order (the bulk path yields its rows before the lines it declined).
    tables = {name: pa.concat_tables(ts).sort_by([("line", "ascending"), ("event_id", "ascending")])
              for name, ts in parts.items()}
    for t in ing.readers[ing.format].tables:
        tables.setdefault(t.name, t.arrow_schema.empty_table())
    return ReadResult(ing.account, tables, ing.quarantine)


#: Files inside an evidence folder that are documentation, not evidence.
NOT_EVIDENCE = ("README.md", "README.txt", "GROUND_TRUTH.json")


def evidence_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Files named, and files below folders named (recursed, sorted).

    Returns ``(evidence, skipped)``: hidden files and documentation (README.md,
    GROUND_TRUTH.json) found inside folders are not evidence and are returned in
    ``skipped`` so that callers can report them.  A missing path raises InputError.
    """
    from kubeforensics.errors import InputError

    out: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file():
                    (skipped if q.name.startswith(".") or q.name in NOT_EVIDENCE else out).append(q)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return out, skipped


def read_frames(*paths: str | Path, fmt: str | None = None) -> dict[str, pd.DataFrame]:
    """Read files or folders into memory and return the canonical tables as DataFrames, by name.

    For quick looks, tests and benchmarks on small inputs; for real evidence use a
    :class:`~kubeforensics.case.Case` (hashed, streamed to disk, audit stages merged).
    Records that cannot be used are quarantined and not returned: check
    :func:`read_file` accounts when that matters.
    """

    files, _ = evidence_files(paths)
    parts: dict[str, list[pa.Table]] = {}
    for f in files:
        for name, table in read_file(f, fmt).tables.items():
            parts.setdefault(name, []).append(table)
    return {name: pa.concat_tables(ts).to_pandas() for name, ts in parts.items()}
