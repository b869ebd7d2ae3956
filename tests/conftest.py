"""Shared fixtures: the conformance corpus beside the project, temporary cases."""

from __future__ import annotations

import os
import subprocess
import sys
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


#: Runs the command as its own child and reports that child's peak RSS.  A process forked from a
#: large one (pytest, after many tests) starts with the parent's high-water mark in ``ru_maxrss``,
#: which the kernel carries through exec; forked from this small launcher, the command's
#: ``ru_maxrss`` is its own.
_LAUNCHER = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(p.pid, 0)
sys.stderr.write(f"\\n__peak_rss_kb__ {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args: list[str], *, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run a command; return its result and its own peak RSS in bytes (``os.wait4`` in a small launcher)."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, timeout=900, cwd=cwd)
    err, _, tail = proc.stderr.rpartition("__peak_rss_kb__ ")
    rss = int(tail.split()[0]) * 1024  # kilobytes on Linux
    return subprocess.CompletedProcess(args, proc.returncode, proc.stdout, err.rstrip("\n")), rss
