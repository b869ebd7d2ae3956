"""What the analysis benchmarks share: the command-line options and the frames of a scenario folder."""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def add_data_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", type=Path, help="a folder written by kubeforensics.simulate")
    ap.add_argument("--scale", type=int, default=1_000_000, help="records to simulate when --data is not given")
    ap.add_argument("--scenario", default="container-escape")


@contextmanager
def scenario_frames(args: argparse.Namespace) -> Iterator[tuple[dict[str, pd.DataFrame], int]]:
    """The canonical tables of ``--data`` (or of a scenario simulated at ``--scale`` into a temporary
    folder, removed afterwards), with the machine and read time printed; yields (frames, total rows)."""
    from kubeforensics.sources import read_frames

    with tempfile.TemporaryDirectory(prefix="kf-bench-") as tmp:
        folder = args.data
        if folder is None:
            from kubeforensics.simulate import simulate

            t = time.perf_counter()
            folder = simulate(args.scenario, Path(tmp) / args.scenario, scale=args.scale)
            print(f"simulated {args.scale:,} records in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        frames = read_frames(folder)
        read_s = time.perf_counter() - t
        total = sum(len(df) for df in frames.values())
        print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
              f"pandas {pd.__version__}")
        print(f"read {total:,} rows in {read_s:.1f} s: " + ", ".join(f"{k} {len(v):,}" for k, v in frames.items()))
        yield frames, total
