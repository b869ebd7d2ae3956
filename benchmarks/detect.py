"""Time the built-in rules on a ~1M-event case.

    .venv/bin/python benchmarks/detect.py                 # simulate 1M records into a temp folder
    .venv/bin/python benchmarks/detect.py --data DIR      # reuse a simulated folder
    .venv/bin/python benchmarks/detect.py --scale 200000

Prints rows per table, read time, total rule time (what ``run_rules`` costs, frame
preparation included) and the slowest rules.  Target: all built-in rules < 20 s.
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--scale", type=int, default=1_000_000, help="records to simulate when --data is not given")
    ap.add_argument("--scenario", default="container-escape")
    args = ap.parse_args()

    from kubeforensics.detect import RULES, TuningConfig, run_rules
    from kubeforensics.detect.conditions import EAGER, derive
    from kubeforensics.detect.frames import prepare

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
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, pandas {pd.__version__}")
    print(f"read {total:,} rows in {read_s:.1f} s: " + ", ".join(f"{k} {len(v):,}" for k, v in frames.items()))

    t = time.perf_counter()
    findings = run_rules(frames)
    run_s = time.perf_counter() - t
    print(f"run_rules: {len(RULES)} built-in rules, {len(findings)} findings in {run_s:.1f} s "
          f"({total / run_s / 1e3:,.0f} k rows/s); errors: {findings.attrs['errors'] or 'none'}")

    cfg = TuningConfig.defaults()
    t = time.perf_counter()
    prepared = prepare(frames)
    for name, cols in EAGER.items():
        prepared[name] = derive(name, prepared[name], cols)
    prep_s = time.perf_counter() - t
    per: list[tuple[float, str]] = []
    for rid, rule in RULES.items():
        t = time.perf_counter()
        rule.evaluate(prepared, cfg)
        per.append((time.perf_counter() - t, rid))
    per.sort(reverse=True)
    print(f"preparation (audit de-duplication, derived columns): {prep_s:.1f} s; rules alone: {sum(s for s, _ in per):.1f} s")
    print("slowest rules: " + ", ".join(f"{rid} {s:.2f} s" for s, rid in per[:8]))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
