"""What both live collectors share: retries with backoff, durations, and handing evidence to a case.

A collector never writes rows itself.  It writes what it received, in the shapes the
readers accept (one JSON object per line), into a staging folder, writes a
``collection.json`` record of *how* it collected (target, parameters, counts,
errors, times, partial-collection flags), and then calls :meth:`Case.ingest` on the
data files, so collected records go through the same readers into the same case as
files do.  Files no reader takes (``collection.json``, pod logs, watch event logs)
are still copied into the case as hashed, read-only evidence and listed in the
manifest, with ``records: 0``.

Credentials are never written: the collection record names the cluster, context,
user entry or URL, never a token, password, API key or client key.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from kubeforensics.case.manifest import now_iso
from kubeforensics.errors import CollectorError

log = logging.getLogger(__name__)
T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | float) -> float:
    """Seconds in a duration such as ``90``, ``30s``, ``10m``, ``2h``, ``1d``.

    Raises
    ------
    CollectorError
        When the text is not a duration.
    """
    if isinstance(text, (int, float)):
        return float(text)
    m = _DURATION.match(text)
    if not m:
        raise CollectorError(f"not a duration: {text!r}", hint="use e.g. 90s, 10m, 2h")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``base * 2**n`` capped at ``cap`` seconds, ``attempts`` tries."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, n: int) -> float:
        d = min(self.cap, self.base * (2 ** n))
        return d * (0.5 + random.random() / 2)


def with_retries(fn: Callable[[], T], what: str, retryable: Callable[[BaseException], bool],
                 backoff: Backoff | None = None, on_retry: Callable[[BaseException, int], None] | None = None) -> T:
    """Call ``fn``; retry transient failures (``retryable(exc)``) with exponential backoff.

    The last failure is re-raised when every attempt failed; a non-transient failure at once.
    """
    b = backoff or Backoff()
    for n in range(b.attempts):
        try:
            return fn()
        except Exception as exc:
            if not retryable(exc) or n == b.attempts - 1:
                raise
            d = b.delay(n)
            log.warning("%s: transient failure (%s); retry %d/%d in %.1fs", what, _short(exc), n + 1,
                        b.attempts - 1, d)
            if on_retry:
                on_retry(exc, n + 1)
            b.sleep(d)
    raise AssertionError("unreachable")  # pragma: no cover


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


@dataclass
class Staging:
    """A temporary folder where a collector writes evidence files before they enter the case."""

    prefix: str
    path: Path = field(init=False)
    data_files: list[Path] = field(default_factory=list)
    other_files: list[tuple[Path, str]] = field(default_factory=list)  # (path, format label)

    def __post_init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"kubeforensics-{self.prefix}-"))

    def open_jsonl(self, name: str) -> JsonlWriter:
        """A JSON-lines file that will be ingested through the readers."""
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        self.data_files.append(p)
        return JsonlWriter(p)

    def write_other(self, name: str, data: bytes, label: str) -> Path:
        """A file kept as evidence but not read (pod logs, watch event logs)."""
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.other_files.append((p, label))
        return p

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class JsonlWriter:
    """Append JSON objects, one per line, counting them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._f = open(path, "ab")  # noqa: SIM115 - closed by close()/__exit__

    def write(self, obj: Any) -> None:
        self._f.write(orjson.dumps(obj) + b"\n")
        self.count += 1

    def write_many(self, objs: Iterable[Any]) -> None:
        for o in objs:
            self.write(o)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_collection_id() -> str:
    return str(uuid.uuid4())


def register_unread(case: Any, path: Path, *, collected_by: str, label: str, parameters: dict[str, Any]) -> None:
    """Keep a file no reader takes (collection record, pod logs) as evidence; see ``Case.add_unread``."""
    case.add_unread(path, label=label, collected_by=collected_by, parameters=parameters, source=collected_by)


def hand_over(case: Any, staging: Staging, record: dict[str, Any], *, collected_by: str,
              summary: dict[str, Any], progress: bool | None = None) -> dict[str, Any]:
    """Ingest the staged data files, then register the collection record and other files as evidence.

    Returns the ingest accounting (``IngestReport.to_json()``) and stores it in the record.
    """
    params = {"collection": record["id"], **summary}
    files = [p for p in staging.data_files if p.exists() and p.stat().st_size > 0]
    report: dict[str, Any] = {"files": [], "totals": {"records": 0, "ingested": 0, "quarantined": 0}}
    if files:
        report = case.ingest(files, collected_by=collected_by, parameters=params, progress=progress,
                             source=collected_by).to_json()
    record["ingest"] = report
    record["finished"] = now_iso()
    for p, label in staging.other_files:
        register_unread(case, p, collected_by=collected_by, label=label, parameters=params)
    rec_path = staging.path / f"collection-{record['id'][:8]}.json"
    rec_path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    register_unread(case, rec_path, collected_by=collected_by, label="collection-record", parameters=params)
    case.log.append("collect", collection=record["id"], collected_by=collected_by, status=record.get("status"),
                    totals=report["totals"])
    return report


def check_case_dir(path: str | Path) -> Any:
    """Open or create the case (imported lazily so that importing the collector stays cheap)."""
    from kubeforensics.case import Case

    return Case.create(path)


def fail(message: str, hint: str | None = None) -> CollectorError:
    return CollectorError(message, hint=hint)
