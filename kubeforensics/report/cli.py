"""``kubeforensics report --case DIR [--playbook NAME] --out FILE.html [--format html|markdown]``.

Runs the playbook headless on the case (papermill), then writes one
self-contained HTML file (or Markdown for a ticket) and prints where it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: Keyword arguments of run_playbook itself: a --param of that name would silently change the run.
RESERVED = frozenset(("output", "kernel_name", "timeout", "name", "case"))


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of ``kubeforensics report`` (fixed contract)."""
    p.add_argument("--case", required=True, metavar="DIR", help="case directory")
    p.add_argument("--playbook", default="triage", metavar="NAME",
                   help="playbook to run (default triage): triage, pod-deep-dive, container-escape, miner, "
                        "stolen-credentials, rbac-persistence, ssrf-dns-exfil, or a path to a notebook")
    p.add_argument("--out", required=True, metavar="FILE", help="report file to write (.html or .md)")
    p.add_argument("--format", choices=("html", "markdown"), default="html")
    p.add_argument("--since", metavar="ISO", help="start of the window")
    p.add_argument("--until", metavar="ISO", help="end of the window")
    p.add_argument("--seed", metavar="ENTITY", help="pod (ns/name), user or IP to start from")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="other playbook parameter (repeatable)")
    p.add_argument("--timeout", type=int, default=600, metavar="SECONDS", help="time allowed per cell")


def run(args: argparse.Namespace) -> int:
    """Run the playbook and write the report; exit 0, or 2 with a one-line reason (via PlaybookError)."""
    from kubeforensics.case import open_case
    from kubeforensics.errors import InputError
    from kubeforensics.report.render import render_html, render_markdown
    from kubeforensics.report.runner import run_playbook

    case = open_case(args.case)
    params: dict[str, Any] = {k: v for k, v in (("since", args.since), ("until", args.until),
                                                   ("seed", args.seed)) if v}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise InputError(f"--param {item!r}: expected NAME=VALUE")
        if name in RESERVED:
            raise InputError(f"--param {name}=...: {name!r} is an option of the runner, not a playbook parameter",
                             hint="use --timeout, --out or the matching option instead")
        params[name] = value
    res = run_playbook(args.playbook, case, timeout=args.timeout, **params)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "markdown":
        out.write_text(render_markdown(case, playbook=res.playbook, run_id=res.run_id), encoding="utf-8")
    else:
        out.write_text(render_html(res.notebook, case, playbook=res.playbook, run_id=res.run_id), encoding="utf-8")
    sys.stdout.write(f"{len(res.answers)} answers recorded (run {res.run_id}) in {res.seconds:.1f} s\n"
                     f"executed notebook: {res.notebook}\nreport: {out.resolve()}\n")
    return 0
