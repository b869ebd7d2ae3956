"""Time the built-in rules on a ~1M-event case.

    .venv/bin/python benchmarks/detect.py                 # simulate 1M records into a temp folder
    .venv/bin/python benchmarks/detect.py --data DIR      # reuse a simulated folder
    .venv/bin/python benchmarks/detect.py --scale 200000

Prints rows per table, read time, total rule time (what ``run_rules`` costs, frame
preparation included) and the slowest rules.  Target: all built-in rules < 20 s.
"""

from __future__ import annotations

import argparse
import time

from common import add_data_options, scenario_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(ap)
    args = ap.parse_args()

    from kubeforensics.detect import RULES, TuningConfig, run_rules
    from kubeforensics.detect.conditions import EAGER, derive
    from kubeforensics.detect.frames import prepare

    with scenario_frames(args) as (frames, total):
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


if __name__ == "__main__":
    main()
