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


def test_nearly_unique_columns_skip_dictionaries_and_read_back_the_same(tmp_path: Path) -> None:
    """The encodings are judged on the first batch: nearly unique columns get no dictionary (integers and times
    delta-packed, ``event_id`` prefix-shared), repeating ones keep theirs (list leaves too), and the file reads
    back equal in pyarrow and in DuckDB."""
    import duckdb
    import pyarrow as pa

    n = 5_000
    first = pa.table({
        "event_id": [f"0123456789ab:{i}" for i in range(n)],
        "line": pa.array(range(1, n + 1), pa.int64()),
        "time": pa.array([1_700_000_000_000_000_000 + 1_000 * i for i in range(n)], pa.timestamp("ns", "UTC")),
        "uuid": [f"{i * 7919:032x}" for i in range(n)],
        "verb": ["get", "list", "watch", "create"] * (n // 4),
        "groups": pa.array([["system:authenticated", f"g{i % 3}"] for i in range(n)], pa.list_(pa.string())),
        "allowed": [i % 2 == 0 for i in range(n)],
        "empty": pa.nulls(n, pa.string()),
    })
    opts = store._encodings(first)
    assert opts["column_encoding"] == {"event_id": "DELTA_BYTE_ARRAY", "line": "DELTA_BINARY_PACKED",
                                       "time": "DELTA_BINARY_PACKED"}
    assert sorted(opts["use_dictionary"]) == ["allowed", "empty", "groups.list.element", "verb"]
    path = tmp_path / "t.parquet"
    with pq.ParquetWriter(path, first.schema, compression="zstd", **opts) as w:
        w.write_table(first)
        w.write_table(first.slice(10, 100))
    md = pq.ParquetFile(path).metadata.row_group(0)
    used = {md.column(i).path_in_schema: md.column(i).encodings for i in range(md.num_columns)}
    assert "DELTA_BYTE_ARRAY" in used["event_id"] and "DELTA_BINARY_PACKED" in used["time"]
    assert not any("DICTIONARY" in e for e in used["uuid"])
    assert any("DICTIONARY" in e for e in used["verb"]) and any("DICTIONARY" in e for e in used["groups.list.element"])
    want = pa.concat_tables([first, first.slice(10, 100)])
    assert pq.read_table(path).equals(want)
    assert duckdb.sql(f"SELECT * FROM '{path}'").to_arrow_table().to_pylist() == want.to_pylist()
    assert store._encodings(first.slice(0, 10)) == {}  # too few rows to judge: the writer's defaults
