"""The case store writes Parquet in a background thread: every batch, in order; a failed write is raised."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import kubeforensics as kf
from kubeforensics.case import store

ROOT = Path(__file__).resolve().parents[2]


def test_batches_are_written_in_order_and_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.ingest import generate
    from kubeforensics.sources import audit_fast

    monkeypatch.setattr(audit_fast, "BATCH_ROWS", 997)  # many batches, several waiting for the writer
    monkeypatch.setattr(store._TableWriter, "DEPTH", 1)
    log = tmp_path / "audit.log"
    n = generate(log, 12_000, seed=3)
    assert n > audit_fast.MIN_BULK_BYTES
    case = kf.Case.create(tmp_path / "case")
    rep = case.ingest([log], progress=False)
    assert rep.totals == {"records": 12_000, "ingested": 12_000, "quarantined": 0}
    (f,) = (case.path / "tables" / "audit").glob("*.parquet")
    t = pq.read_table(f)
    assert t.num_rows == 12_000 and len(set(t.column("event_id").to_pylist())) == 12_000
    assert pq.ParquetFile(f).metadata.num_row_groups >= 12  # one per batch at least: all written
    assert sorted(t.column("line").to_pylist()) == list(range(1, 12_001))
    # the bulk batches follow each other in file order: each row group starts past the previous one's lines
    pf = pq.ParquetFile(f)
    firsts = [min(pf.read_row_group(i, columns=["line"]).column("line").to_pylist()) for i in range(10)]
    assert firsts == sorted(firsts) and len(set(firsts)) == 10


def test_a_failed_write_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: pq.ParquetWriter, *a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    case = kf.Case.create(tmp_path / "case")
    with pytest.raises(OSError, match="No space left"):
        case.ingest([ROOT / "sample_data" / "miner"], progress=False)
