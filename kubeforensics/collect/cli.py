"""``kubeforensics collect k8s|es``: live collection into a case.

Exit codes: 0 the collection is complete, 1 it is partial (forbidden resources, a server
that went away, a count that does not reconcile: see the record), 2 it could not run.
Credentials are never taken from the command line: the Kubernetes collector uses the
kubeconfig or in-cluster config, the Elasticsearch collector the environment
(``KUBEFORENSICS_ES_API_KEY``, ``KUBEFORENSICS_ES_USER``/``KUBEFORENSICS_ES_PASSWORD``,
``KUBEFORENSICS_ES_CA``) or ``--es-config FILE``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from kubeforensics.errors import CollectorError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``k8s`` and ``es`` sub-commands to the ``collect`` parser."""
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    k = sub.add_parser("k8s", help="snapshot (and watch) a cluster through the Kubernetes API",
                       description="Paged, read-only snapshot of pods, nodes, RBAC, workloads, webhooks, CSRs "
                       "and Events; optionally watch for a while. Secrets are never collected by default.")
    k.add_argument("--case", required=True, metavar="DIR", help="case directory (created when missing)")
    k.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    k.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
                   "else in-cluster config)")
    k.add_argument("--namespace", action="append", default=[], metavar="NS",
                   help="restrict namespaced resources to NS (repeatable)")
    k.add_argument("--watch", metavar="DURATION", help="watch for this long after the snapshot (90s, 10m, 1h)")
    k.add_argument("--resource", action="append", default=[], metavar="NAME",
                   help="collect only these resources (repeatable; 'secrets' is opt-in and keeps key names only)")
    k.add_argument("--selector", metavar="LABELS", help="label selector for every list (app=web,tier!=db)")
    k.add_argument("--pod-log", action="append", default=[], metavar="NS/POD[/CONTAINER]",
                   help="also keep the log of this pod (repeatable)")
    k.add_argument("--page-size", type=int, default=500, metavar="N", help="objects per list page")
    k.add_argument("--json", action="store_true", help="print the collection record as JSON")

    e = sub.add_parser("es", help="collect documents from Elasticsearch with push-down filters",
                       description="Point-in-time paged collection of the documents in a time window, filtered "
                       "in Elasticsearch, reconciled with the server's count.")
    e.add_argument("--case", required=True, metavar="DIR", help="case directory (created when missing)")
    e.add_argument("--url", required=True, help="Elasticsearch URL (no credentials in it)")
    e.add_argument("--since", required=True, metavar="ISO", help="window start (inclusive), ISO 8601")
    e.add_argument("--until", required=True, metavar="ISO", help="window end (exclusive), ISO 8601")
    e.add_argument("--index", action="append", default=[], metavar="PATTERN[:raw|ecs[:FIELD]]",
                   help="index pattern, document shape (raw: original records, ecs: Elastic Agent integrations) "
                   "and for raw the field holding the original JSON (repeatable)")
    e.add_argument("--query-filter", action="append", default=[], metavar="KEY=VALUE|JSON",
                   help="namespace=NS, pod=NAME, user=NAME, ip=ADDR (entity filters over the shape's fields), "
                   "FIELD=VALUE (a term), or a JSON query clause; repeatable, values of one key are OR-ed")
    e.add_argument("--es-config", metavar="FILE", help="YAML/JSON with api_key or username/password, ca_certs")
    e.add_argument("--page-size", type=int, default=5000, metavar="N", help="documents per page")
    e.add_argument("--overview", action="store_true",
                   help="only print counts per index per hour and top entities (aggregations, no documents)")
    e.add_argument("--restart", action="store_true", help="do not resume a previous partial collection")
    e.add_argument("--json", action="store_true", help="print the collection record as JSON")


def parse_filters(items: list[str]) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """``KEY=VALUE`` items into filters, JSON objects into extra query clauses."""
    filters: dict[str, list[str]] = {}
    extra: list[dict[str, Any]] = []
    for item in items:
        text = item.strip()
        if text.startswith("{"):
            try:
                clause = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise CollectorError(f"--query-filter {item!r} is not valid JSON ({exc})") from exc
            if not isinstance(clause, dict):
                raise CollectorError(f"--query-filter {item!r} must be a JSON object")
            extra.append(clause)
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CollectorError(f"--query-filter {item!r}: use KEY=VALUE or a JSON query clause")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters, extra


def _print_record(rec: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(rec).decode() + "\n")
        return
    lines = [f"collection {rec['id']} ({rec['collector']}): {'complete' if rec.get('complete') else 'PARTIAL'}"]
    if rec["collector"] == "k8s-api":
        lines += [f"  {name:34} {info['status']:9} {info['collected']:>8}" for name, info in rec["resources"].items()]
        if rec.get("watch"):
            w = rec["watch"]
            lines.append(f"  watch {w['seconds']:.0f}s: {w['events']} (410 Gone: {w['gone']}, re-lists: {w['relists']})")
    else:
        for i in rec["indices"]:
            lines.append(f"  {i['pattern']:34} {i['status']:9} {i['collected_total']:>9} of "
                         f"{i.get('server_total')} (this run {i['collected']})")
    lines += [f"  ! {r}" for r in rec.get("partial_reasons", [])]
    t = rec.get("ingest", {}).get("totals", {})
    lines.append(f"  ingested {t.get('ingested', 0):,} records, quarantined {t.get('quarantined', 0):,}")
    sys.stdout.write("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run ``collect k8s`` or ``collect es``; 0 complete, 1 partial."""
    from kubeforensics.collect.common import check_case_dir

    if args.source == "k8s":
        from kubeforensics.collect.k8s import K8sCollector, collect

        k8s_col = K8sCollector.from_config(kubeconfig=args.kubeconfig, context=args.context,
                                           page_size=args.page_size)
        case = check_case_dir(args.case)
        rec = collect(k8s_col, case, namespaces=args.namespace, resources=args.resource or None, watch=args.watch,
                      pod_logs=args.pod_log, label_selector=args.selector, progress=None if not args.json else False)
    else:
        from kubeforensics.collect.es import EsCollector, IndexSpec
        from kubeforensics.collect.es import collect as collect_es

        if not args.index:
            raise CollectorError("give at least one --index PATTERN[:raw|ecs[:FIELD]]")
        filters, extra = parse_filters(args.query_filter)
        es_col = EsCollector.from_env(args.url, config=args.es_config, page_size=args.page_size)
        specs = [IndexSpec.parse(i) for i in args.index]
        if args.overview:
            ov = es_col.overview(specs, args.since, args.until, filters)
            sys.stdout.write(orjson.dumps(ov, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        case = check_case_dir(args.case)
        rec = collect_es(es_col, case, specs, since=args.since, until=args.until, filters=filters, extra=extra,
                         resume=not args.restart, progress=None if not args.json else False)
    _print_record(rec, args.json)
    return 0 if rec.get("complete") else 1
