"""Every generated file ingests with zero quarantined records through kubeforensics.sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import SCENARIOS

FILES = {"audit/audit.log.gz": "audit", "audit/audit.log.1.gz": "audit", "tetragon/tetragon.log.gz": "tetragon",
         "hubble/flows.json.gz": "hubble", "falco/falco.json": "falco", "k8s/events.json": "k8s-events",
         "k8s/objects.json": "k8s-objects"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_generated_files_ingest_without_quarantine(scenario: str, generated: dict[str, Path]) -> None:
    try:
        from kubeforensics.sources import read_file
    except ImportError as exc:  # the readers are developed in parallel
        pytest.skip(f"kubeforensics.sources readers not importable yet: {exc}")
    for rel, fmt in FILES.items():
        result = read_file(generated[scenario] / rel)
        acc = result.account
        assert acc.format == fmt, f"{rel} detected as {acc.format}"
        reasons = sorted({q.reason for q in result.quarantine})[:3]
        assert acc.quarantined == 0, f"{scenario}/{rel}: {acc.quarantined} quarantined, e.g. {reasons}"
        assert acc.records == acc.ingested > 0
