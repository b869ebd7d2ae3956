"""Evidence is copied and hashed side by side (manifest.copy_and_hash): the digest is always that of the copy."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from kubeforensics.case import manifest


def _data(n: int) -> bytes:
    # not a repeating pattern: a hash of misplaced or missing chunks would differ
    return b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(n // 32 + 1))[:n]


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 10_000, 65_537])
def test_digest_size_and_bytes_of_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(manifest, "COPY_CHUNK", 4096)  # many chunks, so the hash chases the copy
    src = tmp_path / "audit.log"
    data = _data(size)
    src.write_bytes(data)
    sha, n, dest = manifest.copy_and_hash(src, tmp_path / "evidence")
    assert sha == hashlib.sha256(data).hexdigest()
    assert n == size
    assert dest == tmp_path / "evidence" / sha[:12] / "audit.log"
    assert dest.read_bytes() == data
    assert not stat.S_IMODE(dest.stat().st_mode) & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert [p.name for p in (tmp_path / "evidence").iterdir()] == [sha[:12]]  # no .incoming- file left


def test_same_content_twice_keeps_one_copy(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "flows.json").write_bytes(_data(5000))
    (b / "flows.json").write_bytes(_data(5000))
    first = manifest.copy_and_hash(a / "flows.json", tmp_path / "evidence")
    second = manifest.copy_and_hash(b / "flows.json", tmp_path / "evidence")
    assert first == second
    assert sorted(p.name for p in (tmp_path / "evidence" / first[0][:12]).iterdir()) == ["flows.json"]
    assert len(list((tmp_path / "evidence").iterdir())) == 1


def test_without_sendfile_the_buffered_copy_takes_over_where_it_stopped(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that copies the first chunk and then refuses sendfile (some file systems): the rest is copied
    through a buffer from the same offset, and the digest is still exactly the copy's."""
    monkeypatch.setattr(manifest, "COPY_CHUNK", 1000)
    real = os.sendfile
    calls = []

    def flaky(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(22, "Invalid argument")
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", flaky)
    data = _data(5500)
    (tmp_path / "tetragon.log").write_bytes(data)
    sha, n, dest = manifest.copy_and_hash(tmp_path / "tetragon.log", tmp_path / "evidence")
    assert calls == [0, 1000]
    assert (sha, n) == (hashlib.sha256(data).hexdigest(), 5500)
    assert dest.read_bytes() == data


def test_a_failed_copy_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up part-way: the error is raised, the hashing thread ends, the partial copy is removed."""
    monkeypatch.setattr(manifest, "_copy_into", _failing_copy)
    (tmp_path / "events.json").write_bytes(_data(3000))
    with pytest.raises(OSError, match="No space left"):
        manifest.copy_and_hash(tmp_path / "events.json", tmp_path / "evidence")
    assert list((tmp_path / "evidence").iterdir()) == []


def _failing_copy(fi, fo, cond, state) -> None:  # type: ignore[no-untyped-def]
    fo.write(fi.read(100))
    fo.flush()
    with cond:
        state["written"] = 100
        cond.notify()
    raise OSError(28, "No space left on device")
