"""Helpers for correlation tests: hand-built frames with schema columns, and scenario folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeforensics.schema import TABLES, to_arrow

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
T0 = pd.Timestamp("2026-03-01T10:00:00Z")


def ts(seconds: float) -> int:
    """Nanoseconds since the epoch, ``seconds`` after T0 (the type readers give to row values)."""
    return int(T0.value + seconds * 1e9)


def frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame of canonical table ``table`` built exactly as a reader would (through Arrow)."""
    for n, r in enumerate(rows):
        r.setdefault("event_id", f"{table}:{n + 1}")
        r.setdefault("evidence", f"{table}.jsonl")
        r.setdefault("line", n + 1)
    return to_arrow(TABLES[table], rows).to_pandas()


def scenario_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Read every evidence file of a scenario folder and concatenate the tables by name."""
    sources = pytest.importorskip("kubeforensics.sources", reason="readers not available yet")
    return sources.read_frames(folder)
