"""The ``kubeforensics`` command line.

The sub-command contracts (arguments, ``--json`` shapes, exit codes) are fixed:
other tools and checks depend on them.  Each sub-command is a ``configure``
/ ``run`` pair; analysis sub-commands live beside their layer
(``kubeforensics.simulate.cli``, ``kubeforensics.detect.cli``, ...) and are
imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from kubeforensics import __version__
from kubeforensics.errors import KubeforensicsError

FORMAT_NAMES = ("audit", "tetragon", "hubble", "falco", "k8s-events", "k8s-objects")

# name -> (module with configure/run, help); modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("kubeforensics.cli", "copy evidence into a case, hash it, and read it into tables"),
    "timeline": ("kubeforensics.cli", "print the unified timeline of a case"),
    "verify": ("kubeforensics.cli", "check that a case's evidence and manifest are intact"),
    "simulate": ("kubeforensics.simulate.cli", "write a realistic attack dataset in the real formats"),
    "findings": ("kubeforensics.detect.cli", "run the detection rules (and Sigma rules) over a case"),
    "story": ("kubeforensics.cli", "reconstruct the attack story of a case"),
    "report": ("kubeforensics.report.cli", "run a playbook headless and render an HTML/Markdown report"),
    "collect": ("kubeforensics.collect.cli", "collect evidence from a live cluster or Elasticsearch"),
}


# ---------------------------------------------------------------------------- ingest
def configure_ingest(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursed); .gz is read transparently")
    p.add_argument("--case", required=True, metavar="DIR", help="case directory (created when missing)")
    p.add_argument("--as", dest="fmt", choices=FORMAT_NAMES, help="force the format instead of detecting it")
    p.add_argument("--json", action="store_true", help="print the accounting as JSON")


def run_ingest(args: argparse.Namespace) -> int:
    from kubeforensics.case import Case

    case = Case.create(args.case)
    report = case.ingest(args.paths, args.fmt, progress=None if not args.json else False)
    out = report.to_json()
    if args.json:
        _write(orjson.dumps(out).decode() + "\n")
    else:
        _write(_ingest_table(out, case))
    if out["totals"]["ingested"] == 0:
        print(
            "error: no record was ingested "
            + ("(all files were already in the case)" if all(f.get("skipped") for f in out["files"]) else
               "(see the reasons above; --as FORMAT forces a format)"),
            file=sys.stderr,
        )
        return 1
    return 0


def _ingest_table(out: dict[str, Any], case: Any) -> str:
    rows = [("file", "format", "records", "ingested", "quarantined", "note")]
    for f in out["files"]:
        note = f.get("error") or f.get("skipped") or ""
        rows.append((f["path"], f["format"] or "-", str(f["records"]), str(f["ingested"]), str(f["quarantined"]), note))
    t = out["totals"]
    rows.append(("TOTAL", "", str(t["records"]), str(t["ingested"]), str(t["quarantined"]), ""))
    text = _table(rows)
    counts = case.counts()
    text += "\nrows per table: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v) + "\n"
    text += f"case: {case.path}\n"
    return text


# ---------------------------------------------------------------------------- timeline
def configure_timeline(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", required=True, metavar="DIR")
    p.add_argument("--format", choices=("jsonl", "csv", "table"), default="table")
    p.add_argument("--since", metavar="ISO", help="start of the window (inclusive)")
    p.add_argument("--until", metavar="ISO", help="end of the window (exclusive)")
    p.add_argument("--namespace", metavar="NS")
    p.add_argument("--pod", metavar="NAME")
    p.add_argument("--node", metavar="NAME")
    p.add_argument("--ip", metavar="IP")
    p.add_argument("--user", metavar="NAME")
    p.add_argument("--source", action="append", metavar="SOURCE",
                   help="only this source (audit, tetragon, hubble, falco, k8s-events); repeatable")
    p.add_argument("--limit", type=int, metavar="N")
    p.add_argument("--merge-sources", action="store_true",
                   help="one row where two sources saw the same thing (flow made by a process, alert about a process)")
    p.add_argument("--collapse", action="store_true", help="repetitive rows become one row with a count")
    p.add_argument("--hide-baseline", action="store_true", help="hide routine activity of system actors")


def run_timeline(args: argparse.Namespace) -> int:
    from kubeforensics.case import open_case

    case = open_case(args.case)
    df = case.timeline(since=args.since, until=args.until, namespace=args.namespace, pod=args.pod,
                       node=args.node, ip=args.ip, user=args.user, sources=args.source, limit=args.limit,
                       merge_sources=args.merge_sources, collapse=args.collapse, hide_baseline=args.hide_baseline)
    if args.format == "jsonl":
        for rec in df.to_dict("records"):
            _write(orjson.dumps({k: _jsonable(v) for k, v in rec.items()}).decode() + "\n")
    elif args.format == "csv":
        import pandas as pd

        out = df.copy()
        out["time"] = out["time"].map(lambda t: "" if pd.isna(t) else t.isoformat())
        out["techniques"] = out["techniques"].map(lambda v: ";".join(v) if isinstance(v, list) else "")
        _write(out.to_csv(index=False))
    else:
        rows = [("time", "source", "sev", "namespace/pod", "summary")]
        for r in df.itertuples(index=False):
            where = "/".join(x for x in (r.namespace, r.pod) if isinstance(x, str))
            sev = r.severity if isinstance(r.severity, str) else ""
            rows.append((r.time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], r.source, sev, where,
                         _one_line(r.summary or "", 120)))
        _write(_table(rows) + f"{len(df):,} events\n")
    return 0


# ---------------------------------------------------------------------------- verify
def configure_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true")


def run_verify(args: argparse.Namespace) -> int:
    from kubeforensics.case import open_case

    rep = open_case(args.case).verify()
    if args.json:
        _write(orjson.dumps(rep.to_json()).decode() + "\n")
    elif rep.ok:
        _write(f"OK: {rep.checked} evidence files intact; manifest matches the case log\n")
    else:
        _write("\n".join(rep.lines()) + "\n")
        print(f"error: evidence is NOT intact ({len(rep.lines())} problems)", file=sys.stderr)
    return 0 if rep.ok else 1


# ---------------------------------------------------------------------------- story
def configure_story(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", required=True, metavar="DIR")
    p.add_argument("--format", choices=("json", "markdown"), default="markdown")
    p.add_argument("--seed", metavar="ENTITY",
                   help="start from a finding id, a pod (ns/name), a user, an IP; default: everything suspicious")
    p.add_argument("--since", metavar="ISO")
    p.add_argument("--until", metavar="ISO")


def run_story(args: argparse.Namespace) -> int:
    from kubeforensics.case import open_case

    story = open_case(args.case).story(args.seed, since=args.since, until=args.until)
    if args.format == "json":
        _write(orjson.dumps(story.to_json(), default=_jsonable).decode() + "\n")
    else:
        _write(story.to_markdown().rstrip("\n") + "\n")
    return 0


# ---------------------------------------------------------------------------- plumbing
def _jsonable(v: Any) -> Any:
    import pandas as pd

    if v is None:
        return None
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.isoformat().replace("+00:00", "Z")
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NA:
        return None
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _one_line(s: str, width: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    widths = [min(w, 120) for w in widths]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(str(c)[:widths[i]].ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:  # e.g. `kubeforensics timeline ... | head`
        sys.stdout = None  # type: ignore[assignment]


def _resolve(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]] | None:
    module_name, _ = COMMANDS[name]
    if module_name == "kubeforensics.cli":
        return globals()[f"configure_{name}"], globals()[f"run_{name}"]
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("kubeforensics"):
            return None  # that part of the toolkit is not built yet
        raise
    return mod.configure, mod.run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeforensics",
        description="Incident forensics for Kubernetes: audit logs, Tetragon, Hubble, Falco and Kubernetes "
        "objects in one case, one timeline, one story.",
    )
    parser.add_argument("--version", action="version", version=f"kubeforensics {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        pair = _resolve(name)
        if pair is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        pair[0](p)
        p.set_defaults(_run=pair[1])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KubeforensicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
