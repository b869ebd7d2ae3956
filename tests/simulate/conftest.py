"""Datasets generated once per test session (default seed, compressed like sample_data)."""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeforensics.simulate import list_scenarios, simulate

SCENARIOS = list(list_scenarios())


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every scenario with the default seed, written as ``refresh`` writes sample_data."""
    root = tmp_path_factory.mktemp("sim")
    return {name: simulate(name, root / name, compress=True) for name in SCENARIOS}


def lines(path: Path) -> Iterator[dict[str, Any]]:
    """JSON objects of a JSON-lines file (plain or gzip)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for line in f:
            yield json.loads(line)


@functools.lru_cache(maxsize=64)
def audit_records(folder: Path) -> list[dict[str, Any]]:
    return [*lines(folder / "audit" / "audit.log.1.gz"), *lines(folder / "audit" / "audit.log.gz")]


@functools.lru_cache(maxsize=64)
def tetragon_records(folder: Path) -> list[dict[str, Any]]:
    return list(lines(folder / "tetragon" / "tetragon.log.gz"))


@functools.lru_cache(maxsize=64)
def hubble_records(folder: Path) -> list[dict[str, Any]]:
    return list(lines(folder / "hubble" / "flows.json.gz"))


@functools.lru_cache(maxsize=64)
def falco_records(folder: Path) -> list[dict[str, Any]]:
    return list(lines(folder / "falco" / "falco.json"))


@functools.lru_cache(maxsize=64)
def load(folder: Path, rel: str) -> Any:
    return json.loads((folder / rel).read_text(encoding="utf-8"))
