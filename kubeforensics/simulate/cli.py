"""``kubeforensics simulate``: argument wiring for the top-level CLI (see :func:`configure`, :func:`run`)."""

from __future__ import annotations

import argparse
import logging
import sys

from kubeforensics.errors import KubeforensicsError
from kubeforensics.simulate import DEFAULT_SEED, list_scenarios, simulate
from kubeforensics.simulate.clock import parse_duration

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` arguments: ``SCENARIO --out DIR [--seed N] [--scale N [--span D]]`` and ``--list``."""
    parser.add_argument("scenario", nargs="?", metavar="SCENARIO", help="scenario name (see --list)")
    parser.add_argument("--out", metavar="DIR", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                        help=f"random seed; the same seed gives byte-identical files (default {DEFAULT_SEED})")
    parser.add_argument("--scale", type=int, default=None, metavar="N",
                        help="write about N records in total, streaming (benchmarks)")
    parser.add_argument("--span", type=_duration, default=None, metavar="DURATION",
                        help="with --scale: spread the routine background over this long, ending with the "
                             "scenario's window (e.g. 7d, 36h, 90m; units s, m, h, d, w); the attack keeps its "
                             "times. Default: the whole scale fits the scenario's window (about an hour)")
    parser.add_argument("--gzip", action="store_true",
                        help="gzip the large files (audit.log, tetragon.log, flows.json), as in sample_data/")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")


def run(args: argparse.Namespace) -> int:
    """Execute ``kubeforensics simulate``; returns the exit status (0 ok, 2 usage error)."""
    out = sys.stdout
    if args.list:
        scenarios = list_scenarios()
        width = max(len(n) for n in scenarios)
        for name, desc in scenarios.items():
            out.write(f"{name:<{width}}  {desc}\n")
        return 0
    if not args.scenario or not args.out:
        sys.stderr.write("kubeforensics simulate: SCENARIO and --out DIR are required (or use --list)\n")
        return 2
    if args.scale is not None and args.scale <= 0:
        sys.stderr.write("kubeforensics simulate: --scale must be a positive number of records\n")
        return 2
    if args.span is not None and args.scale is None:
        sys.stderr.write("kubeforensics simulate: --span needs --scale N (the default dataset covers only the "
                         "scenario's window)\n")
        return 2
    try:
        path = simulate(args.scenario, args.out, seed=args.seed, scale=args.scale, compress=args.gzip,
                        span=args.span)
    except KubeforensicsError as exc:
        sys.stderr.write(f"kubeforensics simulate: {exc}\n")
        return 2
    out.write(f"wrote {args.scenario} (seed {args.seed}) to {path}\n")
    return 0


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m kubeforensics.simulate.cli``) until the top-level CLI wires it."""
    parser = argparse.ArgumentParser(prog="kubeforensics simulate", description=__doc__)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
