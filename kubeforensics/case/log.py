"""The case log: an append-only JSON-lines file of bookmarks, notes and integrity records.

Entries are never rewritten; a bookmark is "removed" by appending a
``retract`` entry that names it.  Each entry carries a sequence number, a
UTC time, the kind, and the previous entry's hash, so that edits in the
middle of the log are detectable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kubeforensics.case.manifest import now_iso
from kubeforensics.errors import CaseError

KINDS = ("bookmark", "note", "retract", "manifest", "ingest", "answer", "setting", "collect")


@dataclass(frozen=True)
class Bookmark:
    id: str
    time: str
    target_kind: str  # event, finding, process, story-step, entity
    target: str
    note: str
    tags: tuple[str, ...]
    author: str


class CaseLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise CaseError(f"{self.path}:{n}: case log entry is not valid JSON ({exc})") from exc

    def _last(self) -> tuple[int, str]:
        seq, prev = 0, ""
        if self.path.exists():
            with open(self.path, "rb") as f:
                for line in f:
                    if line.strip():
                        seq += 1
                        prev = hashlib.sha256(line.rstrip(b"\n")).hexdigest()
        return seq, prev

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind not in KINDS:
            raise CaseError(f"unknown case log entry kind {kind!r}", hint=f"one of {KINDS}")
        seq, prev = self._last()
        entry = {"seq": seq + 1, "time": now_iso(), "kind": kind, "prev": prev, **fields}
        data = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data + b"\n")
        finally:
            os.close(fd)
        # The head (seq and hash of the last line) lets verify see a removed or edited last entry.
        head = orjson.dumps({"seq": entry["seq"], "sha256": hashlib.sha256(data).hexdigest()})
        tmp = self.head_path.with_suffix(".tmp")
        tmp.write_bytes(head)
        os.replace(tmp, self.head_path)
        return entry

    @property
    def head_path(self) -> Path:
        return self.path.with_name("log.head")

    def chain_problem(self) -> str | None:
        """None when every entry's ``prev`` is the sha256 of the line before it and ``seq`` counts up;
        otherwise what is wrong (an entry edited, removed or inserted).  An edit of the very last
        line cannot be seen by the chain; the manifest hash it records is checked separately."""
        if not self.path.exists():
            return "the case log is missing"
        prev, seq = "", 0
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, start=1):
                raw = line.rstrip(b"\n")
                if not raw.strip():
                    continue
                try:
                    entry = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return f"log.jsonl line {n} is not valid JSON"
                seq += 1
                if entry.get("prev", "") != prev:
                    return f"log.jsonl line {n} does not follow the line before it (an entry was edited, removed or inserted)"
                if entry.get("seq") != seq:
                    return f"log.jsonl line {n} has seq {entry.get('seq')}, expected {seq}"
                prev = hashlib.sha256(raw).hexdigest()
        if self.head_path.exists():
            try:
                head = orjson.loads(self.head_path.read_bytes())
            except orjson.JSONDecodeError:
                return "log.head is not valid JSON"
            if head.get("seq") != seq or head.get("sha256") != prev:
                return (f"log.jsonl ends at entry {seq} but log.head records entry {head.get('seq')} "
                        "(entries removed at the end, or the last entry edited)")
        return None

    def last_manifest_sha(self) -> str | None:
        sha = None
        for e in self.entries():
            if e.get("kind") == "manifest":
                sha = e.get("sha256")
        return sha

    def bookmark(
        self, target: str, note: str = "", *, kind: str = "event", tags: Sequence[str] = (), author: str = ""
    ) -> Bookmark:
        entry = self.append(
            "bookmark", target_kind=kind, target=str(target), note=note, tags=list(tags),
            author=author or os.environ.get("USER", ""),
        )
        return Bookmark(
            f"b{entry['seq']}", entry["time"], kind, str(target), note, tuple(tags), entry["author"]
        )

    def bookmarks(self) -> list[Bookmark]:
        marks: dict[str, Bookmark] = {}
        for e in self.entries():
            if e.get("kind") == "bookmark":
                bid = f"b{e['seq']}"
                marks[bid] = Bookmark(
                    bid, e["time"], e.get("target_kind", "event"), e.get("target", ""), e.get("note", ""),
                    tuple(e.get("tags", ())), e.get("author", ""),
                )
            elif e.get("kind") == "retract":
                marks.pop(e.get("target", ""), None)
        return list(marks.values())

    def notes(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e.get("kind") == "note"]
