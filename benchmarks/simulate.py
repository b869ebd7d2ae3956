"""Benchmark ``kubeforensics simulate --scale N``: records/s and peak memory.

Usage::

    python benchmarks/simulate.py [N] [--scenario NAME] [--out DIR] [--gzip] [--tracemalloc]

Prints the machine, the date, records written per file, wall and CPU time,
records/s and peak memory (max RSS from ``getrusage``; with ``--tracemalloc``
also the peak of Python allocations, which slows the run).  The output folder
is a temporary directory (deleted afterwards) unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="records to write (default 1,000,000)")
    parser.add_argument("--scenario", default="container-escape")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="keep the output in this folder")
    parser.add_argument("--gzip", action="store_true", help="compress the large files")
    parser.add_argument("--processes", type=int, default=None, help="writer processes (default: CPU count, max 3)")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure the Python allocation peak")
    args = parser.parse_args()

    from kubeforensics.simulate import build
    from kubeforensics.simulate.scale import write_scaled

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kf-sim-bench-"))
    if args.tracemalloc:
        tracemalloc.start()
    w0, c0 = time.perf_counter(), time.process_time()
    ds = build(args.scenario, args.seed)
    w1 = time.perf_counter()
    counts = write_scaled(ds, out, args.n, compress=args.gzip, processes=args.processes)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - w0
    cpu = time.process_time() - c0 + children.ru_utime + children.ru_stime
    traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = children.ru_maxrss / 1024
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    total = sum(counts.values())
    w = sys.stdout.write
    w(f"date        {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    w(f"machine     {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
      f"load average {os.getloadavg()[0]:.1f}\n")
    w(f"scenario    {args.scenario} (seed {args.seed}), gzip={args.gzip}, processes={args.processes or 'auto'}\n")
    w(f"records     {total:,} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})\n")
    w(f"output      {size / 1e9:.2f} GB\n")
    w(f"time        {wall:.1f} s wall ({w1 - w0:.1f} s building the scenario), {cpu:.1f} s CPU (all processes)\n")
    w(f"rate        {total / wall:,.0f} records/s wall, {total / cpu:,.0f} records/s per CPU second\n")
    w(f"peak memory {rss_mb:,.0f} MB max RSS (main process), {child_mb:,.0f} MB (largest writer process)"
      + (f", {traced / 1e6:,.0f} MB traced" if traced else "") + "\n")
    if not args.out:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
