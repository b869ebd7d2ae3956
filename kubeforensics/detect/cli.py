"""``kubeforensics findings``: run the rules over a case and print the findings."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

import pandas as pd

from kubeforensics.detect.frames import iso
from kubeforensics.detect.model import Severity

#: The fixed JSONL contract (plus ``count``).
JSONL_KEYS = ("rule_id", "title", "severity", "techniques", "first_seen", "last_seen", "namespace", "pod", "actor", "event_ids", "summary", "count")


#: Audit index patterns used with ``--es`` when no ``--index`` is given.
ES_DEFAULT_INDEX = {"ecs": "logs-kubernetes.audit_logs-*", "raw": "*audit*"}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``findings`` options to ``parser``."""
    parser.add_argument("--case", metavar="DIR", help="case directory (required unless --es is given)")
    parser.add_argument("--format", choices=("table", "jsonl"), default="table", help="output format (default: table)")
    parser.add_argument("--sigma", metavar="PATH", help="folder (or file) of Sigma rules to run on the audit log too")
    parser.add_argument("--config", metavar="PATH", help="tuning YAML overriding the shipped allow-lists and thresholds")
    parser.add_argument(
        "--min-severity", choices=[s.label for s in Severity], default="info", help="hide findings below this severity"
    )
    es = parser.add_argument_group("push-down into Elasticsearch (instead of a case)")
    es.add_argument("--es", metavar="URL", help="run the pushable audit rules inside this Elasticsearch "
                    "(credentials from KUBEFORENSICS_ES_* or their config file, never the command line)")
    es.add_argument("--since", metavar="ISO", help="window start (inclusive), with --es")
    es.add_argument("--until", metavar="ISO", help="window end (exclusive), with --es")
    es.add_argument("--index", action="append", default=[], metavar="PATTERN",
                    help="audit index pattern PATTERN[:raw|ecs[:FIELD]] (repeatable; default by --shape: "
                    f"{ES_DEFAULT_INDEX['ecs']} or {ES_DEFAULT_INDEX['raw']})")
    es.add_argument("--shape", choices=("raw", "ecs"), default="raw",
                    help="document shape of patterns that do not name one (default: raw)")


def _value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if hasattr(v, "tolist") and not isinstance(v, str):
        return v.tolist()
    return v


def to_jsonl(findings: pd.DataFrame, out: TextIO) -> None:
    """One JSON object per finding with :data:`JSONL_KEYS` (times ISO 8601 UTC)."""
    for rec in findings.to_dict("records"):
        row = {k: _value(rec.get(k)) for k in JSONL_KEYS}
        row["first_seen"], row["last_seen"] = iso(rec["first_seen"]), iso(rec["last_seen"])
        row["severity"] = str(rec["severity"])
        row["techniques"] = [str(t) for t in (row["techniques"] or [])]
        row["event_ids"] = [str(e) for e in (row["event_ids"] or [])]
        row["count"] = int(rec["count"])
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def to_table(findings: pd.DataFrame, out: TextIO) -> None:
    """A plain-text table, most severe first, one finding per line."""
    if findings.empty:
        out.write("no findings\n")
        return
    out.write(f"{'SEVERITY':<9} {'FIRST SEEN (UTC)':<20} {'RULE':<12} {'TECHNIQUES':<20} {'COUNT':>5}  SUMMARY\n")
    for rec in findings.to_dict("records"):
        first = pd.Timestamp(rec["first_seen"]).strftime("%Y-%m-%d %H:%M:%S") if pd.notna(rec["first_seen"]) else "?"
        techs = ",".join(rec["techniques"] or [])
        summary = " ".join(str(rec["summary"]).split())  # one line, whatever the evidence contained
        out.write(f"{rec['severity']!s:<9} {first:<20} {rec['rule_id'][:12]:<12} {techs[:20]:<20} {rec['count']:>5}  {summary}\n")
    counts = findings["severity"].astype(str).value_counts()
    out.write("\n" + ", ".join(f"{counts.get(s.label, 0)} {s.label}" for s in reversed(Severity)) + f" ({len(findings)} findings)\n")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``findings``; returns the exit status (0 ok, 2 bad input)."""
    from kubeforensics.case import open_case
    from kubeforensics.detect.tuning import TuningConfig
    from kubeforensics.errors import KubeforensicsError

    out = out or sys.stdout
    if getattr(args, "es", None):
        return _run_es(args, out)
    if not args.case:
        sys.stderr.write("kubeforensics findings: give --case DIR (or --es URL --since ISO --until ISO)\n")
        return 2
    try:
        case = open_case(args.case)
        # The default run is cached in the case (feeds timeline and story).  Sigma rules and a tuning
        # file run the same way, one storage slice at a time: never the whole case in memory.
        if args.sigma is None and args.config is None:
            findings = case.findings()
        else:
            findings = case.findings(sigma=args.sigma, config=TuningConfig.load(args.config))
    except KubeforensicsError as exc:
        sys.stderr.write(f"kubeforensics findings: {exc}\n")
        return 2
    errors = dict(findings.attrs.get("errors", {}))
    findings = findings[findings["severity"] >= Severity.parse(args.min_severity).label]
    for rid, reason in errors.items():
        sys.stderr.write(f"kubeforensics findings: rule {rid} failed: {reason}\n")
    (to_jsonl if args.format == "jsonl" else to_table)(findings, out)
    return 0


def _run_es(args: argparse.Namespace, out: TextIO) -> int:
    """``findings --es``: the pushable rules run inside Elasticsearch (:mod:`kubeforensics.collect.es_detect`)."""
    from kubeforensics.collect.es import EsCollector
    from kubeforensics.collect.es_detect import es_findings
    from kubeforensics.collect.es_mapping import IndexSpec
    from kubeforensics.detect.tuning import TuningConfig
    from kubeforensics.errors import KubeforensicsError

    if not args.since or not args.until:
        sys.stderr.write("kubeforensics findings: --es needs --since ISO and --until ISO\n")
        return 2
    try:
        specs = [IndexSpec.parse(p if ":" in p else f"{p}:{args.shape}") for p in args.index] or [
            IndexSpec(ES_DEFAULT_INDEX[args.shape], args.shape)]
        findings = es_findings(EsCollector.from_env(args.es), specs, since=args.since, until=args.until,
                               sigma=args.sigma, config=TuningConfig.load(args.config))
    except KubeforensicsError as exc:
        sys.stderr.write(f"kubeforensics findings: {exc}\n")
        return 2
    except Exception as exc:  # noqa: BLE001 - the server's or the network's failure, said plainly
        sys.stderr.write(f"kubeforensics findings: Elasticsearch at {args.es}: {type(exc).__name__}: {exc}\n")
        return 2
    for rid, reason in sorted(findings.attrs.get("not_pushed_down", {}).items()):
        sys.stderr.write(f"kubeforensics findings: rule {rid} not pushed down: {reason}\n")
    for rid, st in sorted(findings.attrs.get("pushdown", {}).items()):
        sys.stderr.write(f"kubeforensics findings: rule {rid}: {st['hits']} hits of {st['server_total']}\n")
    for rid, reason in findings.attrs.get("errors", {}).items():
        sys.stderr.write(f"kubeforensics findings: rule {rid} failed: {reason}\n")
    findings = findings[findings["severity"] >= Severity.parse(args.min_severity).label]
    (to_jsonl if args.format == "jsonl" else to_table)(findings, out)
    return 0
