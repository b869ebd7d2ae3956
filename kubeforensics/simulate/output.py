"""Write a dataset to disk in the layout a responder is handed (byte-for-byte reproducible)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from kubeforensics.simulate.dataset import Dataset, Rec
from kubeforensics.simulate.formats import k8s as fk

#: files of a dataset, relative to its folder (``.gz`` is appended to the big ones with ``compress=True``)
LAYOUT = {
    "audit": "audit/audit.log",
    "audit-rotated": "audit/audit.log.1.gz",
    "tetragon": "tetragon/tetragon.log",
    "hubble": "hubble/flows.json",
    "falco": "falco/falco.json",
    "k8s-events": "k8s/events.json",
    "k8s-objects": "k8s/objects.json",
    "truth": "GROUND_TRUTH.json",
}
COMPRESSED = ("audit", "tetragon", "hubble")
ROTATED_FRACTION = 0.4


def open_out(path: Path, gz: bool, level: int = 6) -> IO[bytes]:
    """A writable binary stream; gzip without file name and with mtime 0 (reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = open(path, "wb")  # noqa: SIM115 - the caller closes it (see _close)
    if not gz:
        return raw
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level)  # type: ignore[return-value]


def _close(f: IO[bytes]) -> None:
    f.close()
    inner = getattr(f, "fileobj", None)
    if inner is not None:
        inner.close()


def write_lines(path: Path, recs: Iterable[Rec], gz: bool) -> int:
    n = 0
    f = open_out(path, gz)
    try:
        chunk: list[bytes] = []
        for _, _, rec in recs:
            chunk.append(orjson.dumps(rec))
            n += 1
            if len(chunk) >= 20_000:
                f.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
    finally:
        _close(f)
    return n


def dump_json(path: Path, obj: Any, indent: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def path_of(out: Path, key: str, compress: bool) -> Path:
    rel = LAYOUT[key]
    return out / (rel + ".gz" if compress and key in COMPRESSED else rel)


def event_list(ds: Dataset, recs: list[Rec]) -> dict[str, Any]:
    """The EventList dumped at the end: sorted like the API server lists them, minus deleted Events."""
    kept = [e for t, _, e in recs if not any(e["metadata"]["namespace"] == ns and t < tp for ns, tp in ds.event_purges)]
    items = sorted(kept, key=lambda e: (e["metadata"]["namespace"], e["metadata"]["name"]))
    return {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": str(ds.rv + 7)}, "items": items}


def write(ds: Dataset, out: Path, *, compress: bool = False) -> dict[str, int]:
    """Write every file of ``ds`` under ``out``; returns records per file."""
    counts: dict[str, int] = {}
    recs = {k: sorted(v, key=lambda r: (r[0], r[1])) for k, v in ds.buf.items()}
    audit = recs["audit"]
    cut = int(len(audit) * ROTATED_FRACTION)
    counts["audit-rotated"] = write_lines(path_of(out, "audit-rotated", False), audit[:cut], True)
    counts["audit"] = write_lines(path_of(out, "audit", compress), audit[cut:], compress)
    for key in ("tetragon", "hubble", "falco"):
        counts[key] = write_lines(path_of(out, key, compress), recs[key], compress and key in COMPRESSED)
    events = event_list(ds, recs["k8s-events"])
    dump_json(path_of(out, "k8s-events", compress), events)
    items = events["items"]
    counts["k8s-events"] = len(items)
    objects = fk.object_list(ds.cl, ds.cl.t1, ds.extra_objects)
    dump_json(path_of(out, "k8s-objects", compress), objects)
    counts["k8s-objects"] = len(objects["items"])
    dump_json(path_of(out, "truth", compress), ds.truth.to_json(), indent=2)
    return counts
