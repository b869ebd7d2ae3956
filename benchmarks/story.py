"""Time story building (correlation + story) on a ~1M-event case.

    .venv/bin/python benchmarks/story.py                  # simulate 1M records into a temp folder
    .venv/bin/python benchmarks/story.py --data DIR       # reuse a simulated folder
    .venv/bin/python benchmarks/story.py --scale 200000

Prints rows per table, read time, then the time of each correlation piece
(normalisation, entity resolver, process tree nodes, links, blind spots), of
the detection engine (``run_rules``, what ``build_story`` calls when no
findings are given), of ``build_story`` given the findings, and the total
story-building time (everything after the read).  Target: under 30 s.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd


def frames_of(folder: Path) -> dict[str, pd.DataFrame]:
    from kubeforensics.sources import read_frames

    return read_frames(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a folder written by kubeforensics.simulate")
    ap.add_argument(
        "--scale", type=int, default=1_000_000, help="records to simulate when --data is not given"
    )
    ap.add_argument("--scenario", default="container-escape")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from kubeforensics.correlate import Context, blind_spots, build_story

    tmp = None
    folder = args.data
    if folder is None:
        from kubeforensics.simulate import simulate

        tmp = tempfile.TemporaryDirectory(prefix="kf-bench-")
        t = time.perf_counter()
        folder = simulate(args.scenario, Path(tmp.name) / args.scenario, scale=args.scale)
        print(f"simulated {args.scale:,} records in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    frames = frames_of(folder)
    read_s = time.perf_counter() - t
    total = sum(len(df) for df in frames.values())
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"pandas {pd.__version__}"
    )
    print(
        f"read {total:,} rows in {read_s:.1f} s: " + ", ".join(f"{k} {len(v):,}" for k, v in frames.items())
    )

    timings: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t0
        return out

    ctx = timed("normalise tables (+ audit de-dup)", lambda: Context(frames))
    resolver = timed("entity resolver", lambda: ctx.resolver)
    nodes = timed("process tree nodes", lambda: ctx.nodes)
    lk = timed("links", lambda: ctx.links)
    bs = timed("blind spots", lambda: blind_spots(ctx))
    try:
        from kubeforensics.detect import run_rules

        findings = timed("detection engine (run_rules)", lambda: run_rules(frames))
    except ImportError:
        findings = None
    story = timed("build_story (given findings)", lambda: build_story(ctx, findings))
    for name, s in timings.items():
        print(f"  {name:<36} {s:7.2f} s")
    print(f"story-building total (after read)      {sum(timings.values()):7.2f} s")
    print(
        f"pods {len(resolver.pods):,}, containers {len(resolver.containers):,}, processes {len(nodes):,}, "
        f"links {len(lk):,}, blind spots {len(bs):,}, findings {0 if findings is None else len(findings):,}, "
        f"steps {len(story.steps):,}"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
