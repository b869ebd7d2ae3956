"""Regenerate ``sample_data/``: ``python -m kubeforensics.simulate.refresh [DIR]``.

Every scenario is written with the default seed and ``compress=True`` into
``DIR/<scenario>/`` (default: the repository's ``sample_data``).  The scenario
READMEs are hand-written and left alone.  ``tests/simulate`` regenerates the
same files and checks they are byte-identical, so committed data never drifts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kubeforensics.simulate import DEFAULT_SEED, list_scenarios, simulate

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


def refresh(root: str | Path = SAMPLE_DATA, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write every scenario's sample dataset under ``root``; returns the folders."""
    return [simulate(name, Path(root) / name, seed=seed, compress=True) for name in list_scenarios()]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for folder in refresh(args[0] if args else SAMPLE_DATA):
        sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
