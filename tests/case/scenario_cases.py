"""The sample scenarios ingested into temporary cases, shared by the case tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforensics import Case

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["container-escape", "miner", "stolen-credentials", "rbac-persistence", "ssrf-dns-exfil", "benign"]


def scenario_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """One case per scenario of ``sample_data/``, by name."""
    out = {}
    for name in SCENARIOS:
        case = Case.create(tmp_path_factory.mktemp(name) / "case")
        case.ingest([ROOT / "sample_data" / name])
        out[name] = case
    return out
