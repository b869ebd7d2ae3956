"""Tampering with a case: evidence (altered byte, missing, extra) and the manifest or the log.

``Case.verify()`` and ``kubeforensics verify`` must catch each, name the file, and exit
non-zero.  The case log is hash-chained (each entry's ``prev`` is the sha256 of the
previous line): an edited, removed or re-ordered log line must be detected too.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from kubeforensics.case import Case
from kubeforensics.cli import main
from tests.hardening.corpus import FORMATS, RECORDS, lines, write

PY = sys.executable


@pytest.fixture
def case(tmp_path: Path) -> Case:
    src = tmp_path / "in"
    for fmt in FORMATS:
        write(src / f"{fmt}.json", lines([RECORDS[fmt](n) for n in range(3)]))
    c = Case.create(tmp_path / "case")
    c.ingest(src)
    c.bookmark(f"{c.manifest['evidence'][0]['sha256'][:12]}:1", "first event")
    assert c.verify().ok
    return c


def _evidence(case: Case, n: int = 0) -> tuple[str, Path]:
    rel = case.manifest["evidence"][n]["stored_as"]
    return rel, case.path / rel


def _writable(p: Path) -> None:
    p.chmod(p.stat().st_mode | stat.S_IWUSR)


def cli_verify(case: Case, *, subprocess_run: bool = False) -> subprocess.CompletedProcess[str]:
    """``kubeforensics verify --case DIR``: in this process (fast), or as a real subprocess."""
    args = ["verify", "--case", str(case.path)]
    if subprocess_run:
        return subprocess.run([PY, "-m", "kubeforensics", *args], check=False, capture_output=True, text=True,
                              timeout=60)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def test_intact_case_verifies(case: Case) -> None:
    rep = case.verify()
    assert rep.ok and rep.checked == len(FORMATS)
    proc = cli_verify(case, subprocess_run=True)
    assert proc.returncode == 0 and proc.stdout.startswith(f"OK: {len(FORMATS)} evidence files intact")


def test_one_altered_byte(case: Case) -> None:
    rel, p = _evidence(case, 2)
    _writable(p)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    rep = case.verify()
    assert (rep.altered, rep.missing, rep.extra, rep.manifest_problem) == ([rel], [], [], None)
    proc = cli_verify(case, subprocess_run=True)
    assert proc.returncode == 1 and f"ALTERED  {rel}" in proc.stdout
    assert "evidence is NOT intact (1 problems)" in proc.stderr


def test_same_size_same_mtime_alteration(case: Case) -> None:
    """A change that keeps size and modification time is still found (content is re-hashed)."""
    rel, p = _evidence(case, 0)
    st = p.stat()
    _writable(p)
    data = p.read_bytes()
    p.write_bytes(data.replace(b"shop", b"sh0p", 1))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size
    assert case.verify().altered == [rel]


def test_missing_evidence(case: Case) -> None:
    rel, p = _evidence(case, 1)
    p.unlink()
    rep = case.verify()
    assert (rep.missing, rep.altered, rep.extra) == ([rel], [], [])
    proc = cli_verify(case)
    assert proc.returncode == 1 and f"MISSING  {rel}" in proc.stdout


def test_extra_evidence(case: Case) -> None:
    _, p = _evidence(case, 0)
    planted = p.parent / "planted.json"
    planted.write_bytes(lines([RECORDS["falco"](9)]))
    other = case.path / "evidence" / "ffffffffffff" / "audit.log"
    write(other, b"{}\n")
    rep = case.verify()
    expected = sorted([planted.relative_to(case.path).as_posix(), other.relative_to(case.path).as_posix()])
    assert (sorted(rep.extra), rep.altered, rep.missing) == (expected, [], [])
    proc = cli_verify(case)
    assert proc.returncode == 1 and all(f"EXTRA    {e}" in proc.stdout for e in expected)


def _edit_manifest(case: Case, edit: Callable[[dict], None]) -> None:
    m = json.loads((case.path / "manifest.json").read_text())
    edit(m)
    (case.path / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


def test_edited_manifest(case: Case) -> None:
    def hide(m: dict) -> None:
        m["evidence"][0]["quarantined"] = 0
        m["evidence"][0]["collected_by"] = "someone else"

    _edit_manifest(case, hide)
    rep = case.verify()
    assert rep.manifest_problem and rep.manifest_problem.startswith("manifest.json was changed outside kubeforensics")
    assert (rep.altered, rep.missing, rep.extra) == ([], [], [])
    proc = cli_verify(case)
    assert proc.returncode == 1 and "MANIFEST manifest.json was changed" in proc.stdout


def test_manifest_rehashed_to_cover_a_swapped_file(case: Case) -> None:
    """Evidence replaced and its manifest sha256 updated to match: the manifest no longer matches the log."""
    _, p = _evidence(case, 0)
    _writable(p)
    p.write_bytes(lines([RECORDS["falco"](42)]))
    new_sha = hashlib.sha256(p.read_bytes()).hexdigest()
    _edit_manifest(case, lambda m: m["evidence"][0].__setitem__("sha256", new_sha))
    rep = case.verify()
    assert rep.altered == [] and rep.manifest_problem is not None


def test_deleted_manifest(case: Case) -> None:
    (case.path / "manifest.json").unlink()
    proc = cli_verify(case)
    assert proc.returncode != 0 and "manifest is missing" in proc.stderr and "Traceback" not in proc.stderr


def _log_lines(case: Case) -> list[bytes]:
    return (case.path / "log.jsonl").read_bytes().splitlines()


def _write_log(case: Case, entries: list[bytes]) -> None:
    (case.path / "log.jsonl").write_bytes(b"".join(e + b"\n" for e in entries))


def test_manifest_edit_covered_by_editing_the_log_entry(case: Case) -> None:
    """Edit the manifest and rewrite the last manifest hash in the log: the chain (prev) breaks."""
    _edit_manifest(case, lambda m: m["evidence"][0].__setitem__("collected_by", "forged"))
    sha = hashlib.sha256((case.path / "manifest.json").read_bytes()).hexdigest()
    entries = _log_lines(case)
    last = max(n for n, e in enumerate(entries) if orjson.loads(e)["kind"] == "manifest")
    forged = orjson.loads(entries[last])
    forged["sha256"] = sha
    entries[last] = orjson.dumps(forged, option=orjson.OPT_SORT_KEYS)
    _write_log(case, entries)
    assert case.log.last_manifest_sha() == sha
    _expect_chain_break(case)


def test_removed_log_line(case: Case) -> None:
    entries = _log_lines(case)
    bookmark = next(n for n, e in enumerate(entries) if orjson.loads(e)["kind"] == "bookmark")
    _write_log(case, entries[:bookmark] + entries[bookmark + 1:])
    assert case.log.bookmarks() == []
    _expect_chain_break(case)


def test_edited_bookmark_note(case: Case) -> None:
    entries = _log_lines(case)
    n = next(n for n, e in enumerate(entries) if orjson.loads(e)["kind"] == "bookmark")
    entries[n] = entries[n].replace(b"first event", b"nothing here")
    _write_log(case, entries)  # still well-formed JSON lines: only the chain tells
    _expect_chain_break(case)


def test_log_chain_is_consistent_as_written(case: Case) -> None:
    """The chain the tool writes: each prev is the sha256 of the previous line (so verifying it is possible)."""
    entries = _log_lines(case)
    prev = ""
    for n, raw in enumerate(entries, start=1):
        e = orjson.loads(raw)
        assert (e["seq"], e["prev"]) == (n, prev)
        prev = hashlib.sha256(raw).hexdigest()


def _expect_chain_break(case: Case) -> None:
    rep = case.verify()
    assert not rep.ok
    assert rep.manifest_problem and "log" in rep.manifest_problem
    proc = cli_verify(case)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
