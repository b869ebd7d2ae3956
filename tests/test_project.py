"""Project-level promises: dependency lists agree, every reader is registered, CLI entry points exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"python-duckdb": "duckdb", "python-kubernetes": "kubernetes"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = {_name(d): d.replace(" ", "") for d in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for d in env["dependencies"]:
        if isinstance(d, str) and not d.startswith(("python>", "python=", "pip")) and d != "python":
            name = _name(d)
            conda[CONDA_TO_PYPI.get(name, name)] = d.replace(" ", "")
    assert set(conda) == set(pypi), f"only in pyproject: {set(pypi) - set(conda)}; only in environment.yml: {set(conda) - set(pypi)}"
    for name, spec in pypi.items():
        version = spec[len(name):]
        assert conda[name].endswith(version), f"{name}: pyproject says {spec!r}, environment.yml {conda[name]!r}"


def test_every_reader_module_is_registered() -> None:
    from kubeforensics.sources import READERS
    from kubeforensics.sources.base import Reader

    registered = {type(r) for r in READERS.values()}
    import importlib
    import inspect
    import pkgutil

    import kubeforensics.sources as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"kubeforensics.sources.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if (cls.__module__ == mod.__name__ and cls.__name__.endswith("Reader") and cls is not Reader
                    and hasattr(cls, "extract") and hasattr(cls, "sniff")):
                assert cls in registered, f"{cls.__module__}.{cls.__name__} is not registered in READERS"
    for name, reader in READERS.items():
        assert isinstance(reader, Reader)
        assert reader.name == name
        assert reader.tables, f"{name} declares no tables"


def test_console_script_and_module_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "kubeforensics", "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("kubeforensics "), out.stderr
    helptext = subprocess.run([sys.executable, "-m", "kubeforensics", "--help"], capture_output=True, text=True,
                              check=True).stdout
    for cmd in ("ingest", "timeline", "verify"):
        assert cmd in helptext


def test_import_has_no_side_effects() -> None:
    code = (
        "import logging, warnings, pandas as pd; before = (pd.get_option('display.max_rows'), len(warnings.filters));"
        "import kubeforensics, kubeforensics.sources, kubeforensics.case, kubeforensics.timeline;"
        "assert (pd.get_option('display.max_rows'), len(warnings.filters)) == before;"
        "assert not logging.getLogger().handlers"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


#: The folders the lint test checks.
LINTED = ("kubeforensics", "tests", "benchmarks")


def test_ruff_is_clean() -> None:
    """``ruff check kubeforensics tests benchmarks`` finds nothing (configuration: pyproject.toml ``[tool.ruff]``)."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the dev extras: pip install -e '.[dev]')")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *LINTED],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"ruff check {' '.join(LINTED)} found:\n{out.stdout}{out.stderr}"
