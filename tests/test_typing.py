"""The package type-checks: ``python -m mypy kubeforensics`` (config in pyproject.toml) exits 0."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (pip install -e '.[dev]' to type-check)")
def test_mypy_passes_on_the_package() -> None:
    # run from the repository root so the [tool.mypy] section of pyproject.toml applies
    # (its cache, .mypy_cache/, is git-ignored)
    proc = subprocess.run([sys.executable, "-m", "mypy", "kubeforensics"], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"mypy exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    assert "Success: no issues found" in proc.stdout, proc.stdout
