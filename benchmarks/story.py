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
import time

from common import add_data_options, scenario_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from kubeforensics.correlate import Context, blind_spots, build_story

    with scenario_frames(args) as (frames, _total):
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


if __name__ == "__main__":
    main()
