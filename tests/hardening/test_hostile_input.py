"""Broken and hostile evidence of every format, through ``Case.ingest`` and the command line.

Builds on tests/sources/test_records.py (the engine with the Falco reader) by running
the same damage through every reader and through the case store: truncated lines,
invalid UTF-8, BOM + CRLF, JSON arrays, deep nesting, duplicate keys, control
characters, gzip (whole and truncated), empty and binary files, wrong types in every
key field, absurd timestamps, several formats in one file, and 50 MB lines.

Each check: records = ingested + quarantined (per file and in total), every
quarantined record has a reason naming what was wrong, the quarantine file matches
the manifest, no traceback reaches stderr, and memory stays bounded.

``KUBEFORENSICS_HOSTILE_ALL=1`` runs the 50 MB-line test for every format (default: three).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kubeforensics.case import Case
from tests.conftest import run_measured
from tests.hardening.corpus import (
    FORMATS,
    KEY_FIELDS,
    RECORDS,
    TABLE,
    TEXT_FIELD,
    TIME_FIELDS,
    WRONG_VALUES,
    hostile_files,
    line,
    lines,
    setpath,
    write,
)

VARIANTS = sorted(hostile_files("falco"))
PY = sys.executable


def check_case(case: Case) -> dict[str, dict[str, Any]]:
    """Accounting of every evidence file of a case; returns the manifest entries by file name."""
    entries: dict[str, dict[str, Any]] = {}
    for e in case.manifest["evidence"]:
        assert e["records"] == e["ingested"] + e["quarantined"], e
        sha12 = e["sha256"][:12]
        qfile = case.path / "quarantine" / f"{sha12}.jsonl"
        qlines = [orjson.loads(x) for x in qfile.read_bytes().splitlines()] if qfile.exists() else []
        assert len(qlines) == e["quarantined"], e
        for q in qlines:
            assert isinstance(q["reason"], str) and len(q["reason"]) > 10, q
            assert q["evidence"] == e["stored_as"] and isinstance(q["line"], int) and q["line"] >= 1, q
            assert len(q["raw"]) <= 4 * 1024 * 1024  # raw kept, but bounded (the evidence copy has all of it)
        rows = e.get("rows", {})
        assert sum(rows.values()) == e["ingested"], e  # one row per record for these records
        for table, n in rows.items():
            part = case.path / "tables" / table / f"{sha12}.parquet"
            assert pq.ParquetFile(part).metadata.num_rows == n
            t = pq.read_table(part, columns=["time", "event_id"])
            assert t.column("time").null_count == 0 and t.column("event_id").null_count == 0
        entries[Path(e["path"]).name] = {**e, "quarantine": qlines}
    return entries


@pytest.fixture(scope="module")
def hostile_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/<format>/<variant>.json for every format and variant."""
    root = tmp_path_factory.mktemp("hostile")
    for fmt in FORMATS:
        for name, (data, _, _) in hostile_files(fmt).items():
            write(root / fmt / f"{name}.json", data)
    return root


@pytest.fixture(scope="module")
def hostile_cases(hostile_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One case per format with all its hostile files ingested (formats detected, not forced)."""
    out = {}
    for fmt in FORMATS:
        case = Case.create(tmp_path_factory.mktemp("case") / fmt)
        case.ingest(hostile_tree / fmt)
        out[fmt] = check_case(case)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_variant_in_a_case(hostile_cases: dict[str, dict[str, Any]], fmt: str, variant: str) -> None:
    _, (records, ingested, quarantined), reason = hostile_files(fmt)[variant]
    e = hostile_cases[fmt][f"{variant}.json"]
    assert e["format"] == fmt
    assert (e["records"], e["ingested"], e["quarantined"]) == (records, ingested, quarantined)
    for q in e["quarantine"]:
        assert q["reason"].startswith(reason), q["reason"]
    if variant.startswith("deep"):
        assert [q["reason"] for q in e["quarantine"]] == ["JSON nested too deeply"]
        assert e["quarantine"][0]["line"] == 5


#: A top-level key repeated in the JSON text: (key, second value, column, stored value).
DUPLICATE = {
    "audit": ("verb", '"delete"', "verb", "delete"),
    "tetragon": ("node_name", '"worker-9"', "node", "worker-9"),
    "hubble": ("flow", json.dumps(RECORDS["hubble"](7)["flow"]), "src_port", 40007),
    "falco": ("rule", '"Second rule"', "rule", "Second rule"),
    "k8s-events": ("reason", '"Killing"', "reason", "Killing"),
    "k8s-objects": ("metadata", '{"name": "web-dup", "creationTimestamp": "2026-03-02T12:00:00Z"}', "name", "web-dup"),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_keys_last_one_wins(tmp_path: Path, fmt: str) -> None:
    """Duplicate keys are legal JSON text; the last value is the one read (as in the JSON RFC's common practice)."""
    key, value, column, stored = DUPLICATE[fmt]
    data = line(RECORDS[fmt](3))[:-1] + f', "{key}": {value}}}'.encode() + b"\n"
    case = Case.create(tmp_path / "case")
    case.ingest(write(tmp_path / "dup.json", data), fmt)
    e = check_case(case)["dup.json"]
    assert (e["records"], e["ingested"]) == (1, 1)
    assert case.table(TABLE[fmt])[column].tolist() == [stored]


@pytest.mark.parametrize("fmt", FORMATS)
def test_control_characters_stored_as_data(tmp_path: Path, fmt: str) -> None:
    value = "a\u0000b\u001b[31mred\u2028x"
    src = write(tmp_path / "in.json", line(setpath(RECORDS[fmt](6), TEXT_FIELD[fmt], value)) + b"\n")
    case = Case.create(tmp_path / "case")
    case.ingest(src)
    check_case(case)
    tl = pq.read_table(next((case.path / "tables" / TABLE[fmt]).glob("*.parquet"))).to_pandas()
    assert len(tl) == 1
    assert any(isinstance(v, str) and value in v for v in tl.iloc[0].tolist()), tl.iloc[0]


# ---------------------------------------------------------------------------- wrong types in key fields
WRONG = [(fmt, path) for fmt in FORMATS for path in KEY_FIELDS[fmt]]


@pytest.mark.parametrize(("fmt", "path"), WRONG, ids=[f"{f}:{'.'.join(p)}" for f, p in WRONG])
def test_wrong_type_in_key_field(tmp_path: Path, fmt: str, path: tuple[str, ...]) -> None:
    """Every wrong-typed value: stored when the reader can use it, else quarantined naming the field."""
    recs = [setpath(RECORDS[fmt](n), path, v) for n, v in enumerate(WRONG_VALUES)]
    src = write(tmp_path / f"{fmt}.json", lines([RECORDS[fmt](90), *recs]))
    case = Case.create(tmp_path / "case")
    rep = case.ingest(src, fmt)
    e = check_case(case)[f"{fmt}.json"]
    assert rep.totals == {"records": 7, "ingested": e["ingested"], "quarantined": e["quarantined"]}
    assert e["ingested"] >= 1  # the untouched first record
    for q in e["quarantine"]:
        assert path[-1] in q["reason"], (path, q["reason"])
        assert "Traceback" not in q["reason"]
        assert len(q["reason"]) < 600, q["reason"]


# ---------------------------------------------------------------------------- absurd timestamps
ABSURD = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", -62135596800, -1, -1e20,
          "1969-12-31T23:59:59Z", "2026-02-30T00:00:00Z", "2026-03-02T25:00:00Z", 1e300, "NaN", 1.5e18]


@pytest.mark.parametrize("fmt", FORMATS)
def test_absurd_timestamps(tmp_path: Path, fmt: str) -> None:
    recs = []
    for n, value in enumerate(ABSURD):
        rec = RECORDS[fmt](n)
        for p in TIME_FIELDS[fmt]:
            rec = setpath(rec, p, value)
        recs.append(rec)
    case = Case.create(tmp_path / "case")
    case.ingest(write(tmp_path / "t.json", lines(recs)), fmt)
    e = check_case(case)["t.json"]
    assert (e["records"], e["ingested"], e["quarantined"]) == (11, 3, 8)
    df = case.table(TABLE[fmt]).sort_values("line")
    assert df["line"].tolist() == [4, 6, 11]
    assert [t.isoformat() for t in df["time"]] == [
        "1969-12-31T23:59:59+00:00", "1969-12-31T23:59:59+00:00", "2017-07-14T02:40:00+00:00"]
    names = {".".join(p) for p in TIME_FIELDS[fmt]} | {"process.start_time"}
    by_line = {q["line"]: q["reason"] for q in e["quarantine"]}
    assert sorted(by_line) == [1, 2, 3, 5, 7, 8, 9, 10]
    for reason in by_line.values():
        assert any(f"'{n}'" in reason for n in names), reason
    assert "out of the representable time range (1677-2262): '0001-01-01" in by_line[1]
    assert "out of the representable time range (1677-2262): '9999-12-31" in by_line[2]
    assert "out of the representable time range: -62135596800" in by_line[3]
    assert "not a valid date: '2026-02-30T00:00:00Z' (day is out of range for month)" in by_line[7]
    assert "not a timestamp: 'NaN'" in by_line[10]


# ---------------------------------------------------------------------------- mixed, empty, binary
def test_every_format_in_one_file_is_routed(tmp_path: Path) -> None:
    recs = [RECORDS[fmt](n) for n, fmt in enumerate(FORMATS)]
    data = lines(recs) + b"this is not JSON\n"
    src = write(tmp_path / "mixed.json", data)
    case = Case.create(tmp_path / "case")
    case.ingest(src)
    e = check_case(case)["mixed.json"]
    assert (e["records"], e["ingested"], e["quarantined"]) == (7, 6, 1)
    assert e["format"] == "audit"  # ties broken by registry order
    assert e["rows"] == {TABLE[f]: 1 for f in FORMATS}
    assert sum(n for k, n in e["notes"].items() if k.startswith("routed to")) == 5
    assert e["quarantine"][0]["line"] == 7 and e["quarantine"][0]["reason"].startswith("invalid JSON")


def test_forced_format_quarantines_the_other_formats_with_reasons(tmp_path: Path) -> None:
    recs = [RECORDS[fmt](n) for n, fmt in enumerate(FORMATS)]
    case = Case.create(tmp_path / "case")
    case.ingest(write(tmp_path / "mixed.json", lines(recs)), "falco")
    e = check_case(case)["mixed.json"]
    assert (e["records"], e["ingested"]) == (6, 1)
    reasons = {q["line"]: q["reason"] for q in e["quarantine"]}
    assert sorted(reasons) == [1, 2, 3, 5, 6]
    assert all(r.startswith("'priority' is missing") or "rule" in r or "time" in r for r in reasons.values()), reasons


def test_empty_and_binary_files_are_kept_reported_and_accounted(tmp_path: Path) -> None:
    import random

    rnd = random.Random(7)
    folder = tmp_path / "in"
    write(folder / "empty.json", b"")
    write(folder / "core.bin", b"\x7fELF\x02\x01\x01\x00" + rnd.randbytes(50_000))
    write(folder / "zeros.bin", b"\x00" * 10_000)
    write(folder / "not-gzip.gz", b"\x1f\x8b" + rnd.randbytes(2000))
    write(folder / "good.json", lines([RECORDS["falco"](n) for n in range(3)]))
    case = Case.create(tmp_path / "case")
    rep = case.ingest(folder)
    entries = check_case(case)
    assert rep.totals["ingested"] == 3
    for name in ("empty.json", "core.bin", "zeros.bin", "not-gzip.gz"):
        e = entries[name]
        assert e["format"] is None and e["ingested"] == 0
        assert "unknown format" in e["error"], e
        assert (case.path / e["stored_as"]).is_file()  # kept as evidence, hashed
    assert entries["empty.json"]["records"] == 0
    assert entries["core.bin"]["quarantined"] >= 1
    assert all(q["reason"].startswith("file format not recognised") or "UTF-8" in q["reason"]
               or "invalid JSON" in q["reason"] or "compressed stream" in q["reason"]
               for q in entries["core.bin"]["quarantine"] + entries["not-gzip.gz"]["quarantine"])
    assert case.verify().ok


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_gzip(tmp_path: Path, fmt: str) -> None:
    import random

    rnd = random.Random(1)
    recs = []
    for n in range(1500):
        r = setpath(RECORDS[fmt](n), ("zz_noise",), rnd.randbytes(40).hex())
        recs.append(r)
    gz = gzip.compress(lines(recs))
    case = Case.create(tmp_path / "case")
    case.ingest(write(tmp_path / "x.log.1.gz", gz[: len(gz) // 2]), fmt)
    e = check_case(case)["x.log.1.gz"]
    assert 100 < e["ingested"] < 1500 and e["quarantined"] == 1
    assert e["quarantine"][0]["reason"].startswith(f"compressed stream is damaged after line {e['ingested']}")


# ---------------------------------------------------------------------------- the command line
def test_cli_ingest_of_the_whole_hostile_tree(hostile_tree: Path, hostile_cases: dict[str, Any], tmp_path: Path) -> None:
    """``kubeforensics ingest --json`` over every hostile file: same accounting as Case.ingest, no traceback."""
    proc = subprocess.run([PY, "-m", "kubeforensics", "ingest", str(hostile_tree), "--case", str(tmp_path / "c"),
                           "--json"], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    files = {(Path(f["path"]).parent.name, Path(f["path"]).name): f for f in out["files"]}
    assert len(files) == len(FORMATS) * len(VARIANTS)
    for (fmt, name), f in files.items():
        expected = hostile_cases[fmt][name]
        assert (f["format"], f["records"], f["ingested"], f["quarantined"]) == (
            expected["format"], expected["records"], expected["ingested"], expected["quarantined"]), (fmt, name)
    t = out["totals"]
    assert t["records"] == t["ingested"] + t["quarantined"] == sum(f["records"] for f in out["files"])
    verify = subprocess.run([PY, "-m", "kubeforensics", "verify", "--case", str(tmp_path / "c")],
                            check=False, capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stdout.startswith("OK:"), verify.stdout + verify.stderr


def test_cli_on_only_broken_files_exits_nonzero_with_a_message(tmp_path: Path) -> None:
    write(tmp_path / "in" / "empty.json", b"")
    write(tmp_path / "in" / "junk.bin", bytes(range(256)) * 40)
    proc = subprocess.run([PY, "-m", "kubeforensics", "ingest", str(tmp_path / "in"), "--case", str(tmp_path / "c"),
                           "--json"], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: no record was ingested" in proc.stderr
    out = json.loads(proc.stdout)
    assert all(f["records"] == f["ingested"] + f["quarantined"] for f in out["files"])
    assert all("unknown format" in f["error"] for f in out["files"])


# ---------------------------------------------------------------------------- 50 MB lines, bounded memory
MB = 1024 * 1024


def _huge_record(fmt: str, size: int) -> bytes:
    """One record of ``fmt`` whose free-text field is ``size`` bytes long."""
    return line(setpath(RECORDS[fmt](1), TEXT_FIELD[fmt], "A" * size))


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS via wait4 is measured on Linux")
def test_fifty_megabyte_lines_bounded_memory(tmp_path: Path) -> None:
    """50 MB lines (valid records, junk) and a 70 MB line, through the CLI; peak RSS stays under 1 GB.

    Falco (plain file, per-record path), audit (gzip, vectorised path) and Tetragon by default;
    every format with ``KUBEFORENSICS_HOSTILE_ALL=1`` (about 10 s more per format).
    """
    folder = tmp_path / "in"
    formats = FORMATS if os.environ.get("KUBEFORENSICS_HOSTILE_ALL") else ("falco", "audit", "tetragon")
    for fmt in formats:
        good = lines([RECORDS[fmt](n) for n in range(3)])
        data = good + _huge_record(fmt, 50 * MB) + b"\n" + lines([RECORDS[fmt](5)])
        # one format plain (the real size on disk), the others gzip (same 50 MB line once decompressed)
        write(folder / (f"{fmt}.json" if fmt == "falco" else f"{fmt}.json.gz"),
              data if fmt == "falco" else gzip.compress(data, 1))
    write(folder / "junk-line.json.gz", gzip.compress(lines([RECORDS["falco"](0)]) + b"x" * (50 * MB) + b"\n"
                                                      + lines([RECORDS["falco"](2)]), 1))
    write(folder / "overlong-line.json.gz", gzip.compress(lines([RECORDS["falco"](0)]) + b'{"a":"' + b"y" * (70 * MB)
                                                          + b'"}\n' + lines([RECORDS["falco"](2)]), 1))
    proc, rss = run_measured([PY, "-m", "kubeforensics", "ingest", str(folder), "--case", str(tmp_path / "c"),
                               "--json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert rss < 1024 * MB, f"peak RSS {rss / MB:.0f} MB"
    files = {Path(f["path"]).name: f for f in json.loads(proc.stdout)["files"]}
    for fmt in formats:
        f = files[f"{fmt}.json" if fmt == "falco" else f"{fmt}.json.gz"]
        assert (f["format"], f["records"], f["ingested"] + f["quarantined"]) == (fmt, 5, 5), f
    # a huge line that is not JSON, and one longer than the engine's line limit: quarantined, neighbours read
    assert (files["junk-line.json.gz"]["ingested"], files["junk-line.json.gz"]["quarantined"]) == (2, 1)
    assert (files["overlong-line.json.gz"]["ingested"], files["overlong-line.json.gz"]["quarantined"]) == (2, 1)
    case = Case(tmp_path / "c")
    entries = check_case(case)
    reasons = [q["reason"] for q in entries["overlong-line.json.gz"]["quarantine"]]
    assert reasons == ["line longer than 67108864 bytes"]
    assert all(len(q["raw"]) <= MB for e in entries.values() for q in e["quarantine"])
    stored = pd.concat([case.table(TABLE[f], columns=["event_id", "line"]) for f in formats])
    assert stored["event_id"].notna().all() and len(stored) >= 17  # audit merges the stages of one auditID
