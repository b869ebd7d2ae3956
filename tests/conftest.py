"""Shared fixtures: the conformance corpus beside the project, temporary cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = Path(os.environ.get("KUBEFORENSICS_CONFORMANCE", ROOT.parent / "shared" / "conformance"))


def conformance_files(sub: str, pattern: str = "*.json") -> list[Path]:
    """Files of one conformance folder (empty when the corpus is absent: tests then skip)."""
    folder = CONFORMANCE / sub
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


@pytest.fixture
def conformance() -> Path:
    """The folder of real upstream records (../shared/conformance); skips when absent."""
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance corpus not found at {CONFORMANCE} (set KUBEFORENSICS_CONFORMANCE)")
    return CONFORMANCE
