"""Push-down of detections into Elasticsearch: ``kubeforensics findings --es URL --since … --until …``.

>>> col = EsCollector.from_env("https://es.example.net:9200")                          # doctest: +SKIP
>>> f = es_findings(col, [IndexSpec("logs-kubernetes.audit_logs-*", "ecs")],           # doctest: +SKIP
...                 since="2026-03-01T00:00:00Z", until="2026-03-29T00:00:00Z", sigma="rules/sigma")

Each Sigma rule (``product: kubernetes, service: audit``) and each declarative built-in rule
over the ``audit`` table is translated into an Elasticsearch ``bool`` query over the audit
documents of either shape (raw: the audit event's own JSON paths, under ``raw_field.`` when
the original record was decoded into such a field; ECS: ``kubernetes.audit.*``).  The query
runs with the time window, PIT + ``search_after`` and ``track_total_hits``; only its hits
travel.  They are mapped back to audit records by the collector's own mapping
(:func:`~kubeforensics.collect.es_mapping.to_record`), read by the audit reader, and the rule
itself is then run over them by :func:`~kubeforensics.detect.engine.run_rules` (which
aggregates with :func:`~kubeforensics.detect.engine.aggregate`): the findings are those
``run_rules`` finds in a case holding the same documents, with event ids ``<index>/<_id>``.

Why the rule runs again on the hits: the query is a *pre-filter* that may be wider than the
rule, never narrower.  Parts that Elasticsearch cannot express faithfully are left out
(``regex`` ops — ES ``regexp`` is anchored and has another syntax; ``in_config`` tuning lists;
columns the reader derives, such as ``exec_command`` or ``pod_host_paths``; Sigma keywords,
CIDR and regular expressions; ``text`` fields without a ``keyword`` sub-field), which widens
an ``AND``, turns an ``OR`` into "anything" and a ``NOT`` of an inexact part into "anything".
A rule whose whole query collapses to "anything" is not pushed down (listed, with the
statistical, correlation and non-audit rules, in ``attrs["not_pushed_down"]``).

The Sigma translation is our own (~40 lines over pySigma's parsed tree): pySigma's
Elasticsearch backend (pysigma-backend-elasticsearch 2.1.1) requires ``pysigma<2.0.0`` and
would downgrade the pySigma 2 the evaluator uses; it would also need a processing pipeline
for our two shapes and produce Lucene/ES|QL strings rather than the query DSL noida-db speaks.

Field types come from ``_field_caps`` (a ``text`` field is queried through its ``.keyword``
sub-field, as dynamic mappings create it).  Sigma matching is case-insensitive, so its terms
use ``case_insensitive: true``; the declarative ops are case-sensitive, so theirs do not.
Values longer than a keyword's ``ignore_above`` (256 in dynamic mappings) are not indexed and
cannot be found by a ``wildcard``/``contains`` query; that is a limit of the index, noted here.

noida-db shaped some choices (they hold on real Elasticsearch too): per-rule searches rather
than one ``composite``/``filters`` aggregation over all rules (no composite aggregations),
plain query DSL rather than ES|QL (absent), and windows bound on a ``date`` time field with
millisecond ISO strings (no ``strict_date_optional_time_nanos`` format).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import yaml

from kubeforensics.collect.es import EsCollector
from kubeforensics.collect.es_mapping import IndexSpec, to_record
from kubeforensics.detect.sigma import FIELD_MAP

log = logging.getLogger(__name__)

#: ``(query, exact)``: ``query`` None means "no constraint"; ``exact`` that it matches the local predicate.
Q = tuple[dict[str, Any] | None, bool]
ANY: Q = (None, False)

#: Audit columns -> the audit event's JSON path (from the Sigma field map; derived columns have none).
COLUMN_PATHS: dict[str, str] = {}
for _path, _col in FIELD_MAP.items():
    if _col != "pod_host_paths" and _path != "apiGroup":
        COLUMN_PATHS.setdefault(_col, _path)

#: What the audit reader reads from an event: the ``_source`` includes of raw audit documents.
AUDIT_SOURCE = ("kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser",
                "sourceIPs", "userAgent", "objectRef", "responseStatus", "requestObject", "responseObject",
                "requestReceivedTimestamp", "stageTimestamp", "annotations")


@dataclass(frozen=True)
class AuditIndexSpec(IndexSpec):
    """An :class:`IndexSpec` whose ``_source`` filter keeps only the audit event's fields."""

    def source_filter(self) -> list[str] | bool:
        if self.shape == "raw" and not self.raw_field:
            return [*AUDIT_SOURCE, self.time_field]
        if self.shape == "ecs":
            return ["@timestamp", "kubernetes.audit"]
        return super().source_filter()

    @classmethod
    def of(cls, spec: IndexSpec) -> AuditIndexSpec:
        return cls(spec.pattern, spec.shape, spec.raw_field, spec.time_field, spec.entity_fields)


# --------------------------------------------------------------------------- fields
class Fields:
    """Resolves audit JSON paths to searchable fields of one index pattern (from ``_field_caps``)."""

    def __init__(self, collector: EsCollector, spec: IndexSpec) -> None:
        self.prefix = "kubernetes.audit." if spec.shape == "ecs" else (f"{spec.raw_field}." if spec.raw_field else "")
        try:
            caps = collector.es.field_caps(index=spec.pattern, fields="*")["fields"]
        except Exception as exc:  # noqa: BLE001 - no caps: nothing can be pushed down safely
            log.warning("field capabilities of %s unavailable (%s); nothing pushed down there", spec.pattern, exc)
            caps = {}
        self.types = {name: {t for t, c in kinds.items() if c.get("searchable")} for name, kinds in caps.items()}

    def resolve(self, path: str) -> tuple[str, str] | None:
        """``(field, kind)`` with kind ``keyword``/``number``/``boolean``/``ip``; None when unsearchable."""
        name = self.prefix + path
        kinds = self.types.get(name, set())
        if kinds & {"keyword", "constant_keyword", "wildcard"}:
            return name, "keyword"
        if "text" in kinds or "match_only_text" in kinds:
            sub = self.types.get(f"{name}.keyword", set())
            return (f"{name}.keyword", "keyword") if "keyword" in sub else None
        if kinds and kinds <= {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}:
            return name, "number"
        if kinds == {"boolean"}:
            return name, "boolean"
        if kinds == {"ip"}:
            return name, "ip"
        return None


def _wild_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def _and(parts: Sequence[Q]) -> Q:
    qs = [q for q, _ in parts if q is not None]
    exact = all(e for _, e in parts)
    if not qs:
        return (None, exact and not parts)
    return ({"bool": {"filter": qs}} if len(qs) > 1 else qs[0]), exact


def _or(parts: Sequence[Q]) -> Q:
    if not parts or any(q is None for q, _ in parts):
        return ANY
    qs = [q for q, _ in parts]
    return ({"bool": {"should": qs, "minimum_should_match": 1}} if len(qs) > 1 else qs[0]), all(e for _, e in parts)


def _not(part: Q) -> Q:
    q, exact = part
    return ({"bool": {"must_not": [q]}}, True) if q is not None and exact else ANY


def _exists(field: str, present: bool) -> Q:
    q = {"exists": {"field": field}}
    return (q, True) if present else ({"bool": {"must_not": [q]}}, True)


def _term(field: str, kind: str, value: Any, ci: bool) -> Q:
    if kind == "number":
        try:
            num = float(value)
        except (TypeError, ValueError):
            return ANY
        return {"term": {field: int(num) if num.is_integer() else num}}, True
    if kind == "boolean":
        return ({"term": {field: value}}, True) if isinstance(value, bool) else ANY
    if kind != "keyword" or isinstance(value, bool):
        return ANY
    body: dict[str, Any] = {"value": str(value)}
    if ci:
        body["case_insensitive"] = True
    return {"term": {field: body}}, True


def _wildcard(field: str, kind: str, pattern: str, ci: bool) -> Q:
    if kind != "keyword":
        return ANY
    body: dict[str, Any] = {"value": pattern}
    if ci:
        body["case_insensitive"] = True
    return {"wildcard": {field: body}}, True


# --------------------------------------------------------------------------- Sigma
def sigma_query(node: Any, fields: Fields) -> Q:
    """The query of a parsed pySigma condition tree (see the module docstring for what is left out)."""
    from sigma import conditions as sc
    from sigma import types as st

    if isinstance(node, sc.ConditionAND):
        return _and([sigma_query(a, fields) for a in node.args])
    if isinstance(node, sc.ConditionOR):
        return _or([sigma_query(a, fields) for a in node.args])
    if isinstance(node, sc.ConditionNOT):
        return _not(sigma_query(node.args[0], fields))
    if not isinstance(node, sc.ConditionFieldEqualsValueExpression) or node.field not in FIELD_MAP and not any(
            node.field.startswith(p) for p in ("requestObject.", "responseObject.", "annotations.", "user.extra.")):
        return ANY  # keywords, Aurora-style shorthands (hostPath, capabilities), unmapped fields
    if FIELD_MAP.get(node.field) == "pod_host_paths":
        return ANY
    got = fields.resolve("objectRef.apiGroup" if node.field == "apiGroup" else node.field)
    value = node.value
    if isinstance(value, st.SigmaNull):
        return _exists(got[0], False) if got else ANY
    if isinstance(value, st.SigmaExists):
        return _exists(got[0], value.exists) if got else ANY
    if got is None:
        return ANY
    field, kind = got
    if isinstance(value, st.SigmaString):
        if not value.contains_special():
            return _term(field, kind, "".join(str(p) for p in value.s), True)
        pattern = "".join("*" if p is st.SpecialChars.WILDCARD_MULTI else "?" if p is st.SpecialChars.WILDCARD_SINGLE
                          else _wild_escape(str(p)) for p in value.s)
        return _wildcard(field, kind, pattern, True)
    if isinstance(value, st.SigmaNumber):
        return _term(field, kind, value.number, True)
    if isinstance(value, st.SigmaBool):
        return _term(field, kind, value.boolean, True)
    return ANY  # regular expressions, CIDR: evaluated locally only


def sigma_rule_query(rule: Any, fields: Fields) -> Q:
    """A Sigma rule's query: the ``OR`` of its conditions."""
    return _or([sigma_query(t, fields) for t in rule.trees])


# --------------------------------------------------------------------------- declarative
def condition_query(cond: Any, fields: Fields) -> Q:
    """The query of a declarative condition (:mod:`kubeforensics.detect.conditions`) on the audit table."""
    if not isinstance(cond, Mapping):
        return ANY
    if "all" in cond:
        return _and([condition_query(c, fields) for c in cond["all"] or []])
    if "any" in cond:
        return _or([condition_query(c, fields) for c in cond["any"] or []])
    if "not" in cond:
        return _not(condition_query(cond["not"], fields))
    path = COLUMN_PATHS.get(str(cond.get("field")))
    got = fields.resolve(path) if path else None
    if got is None:
        return ANY
    field, kind = got
    return _and([_op(field, kind, op, v) for op, v in cond.items() if op != "field"])


def _op(field: str, kind: str, op: str, value: Any) -> Q:
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if op == "isnull":
        return _exists(field, not bool(value))
    if op in ("gte", "gt", "lte", "lt"):
        return ({"range": {field: {op: value}}}, True) if kind == "number" else ANY
    if op in ("equals", "in"):
        return _or([_term(field, kind, v, False) for v in vals])
    if op in ("startswith", "endswith", "contains"):
        if kind != "keyword":
            return ANY
        fmt = {"startswith": "{}*", "endswith": "*{}", "contains": "*{}*"}[op]
        return _or([_wildcard(field, kind, fmt.format(_wild_escape(str(v))), False) for v in vals])
    return ANY  # regex, in_config


def builtin_conditions() -> dict[str, Any]:
    """Rule id -> the YAML condition of every built-in declarative rule over ``audit``."""
    from kubeforensics.detect.engine import builtin_rule_files

    out: dict[str, Any] = {}
    for _name, text in builtin_rule_files():
        for d in (yaml.safe_load(text) or {}).get("rules") or []:
            if d.get("source") == "audit":
                out[str(d["id"])] = d["condition"]
    return out


# --------------------------------------------------------------------------- running
def _audit_frame(hits: list[dict[str, Any]], spec: IndexSpec) -> tuple[pd.DataFrame, int]:
    """Hits -> the audit table the reader makes of them (event id ``<index>/<_id>``), quarantined count."""
    from kubeforensics.sources import read_file

    with tempfile.TemporaryDirectory(prefix="kf-es-detect-") as tmp:
        path = Path(tmp) / "hits.jsonl"
        ids: list[str] = []
        with open(path, "wb") as f:
            for h in hits:
                fmt, rec = to_record(h.get("_source") or {}, spec)
                if fmt not in ("audit", "raw"):
                    continue
                f.write(orjson.dumps(rec) + b"\n")
                ids.append(f"{h['_index']}/{h['_id']}")
        if not ids:
            return pd.DataFrame(), 0
        res = read_file(path, "audit")
        df = res.frame("audit")
    df["event_id"] = [ids[int(n) - 1] for n in df["line"]]
    return df, len(res.quarantine)


def _other_stages(collector: EsCollector, spec: IndexSpec, fields: Fields, hits: list[dict[str, Any]],
                  since: str, until: str, chunk: int = 1000) -> list[dict[str, Any]]:
    """The other stages (same ``auditID``) of the requests among ``hits``.

    The rules see one row per request, its most complete stage
    (:func:`~kubeforensics.detect.frames.dedup_audit`); a query may match an early stage only
    (``RequestReceived`` has no response code), so the request's other stages are fetched too
    and the same de-duplication then decides, as it does in a case.
    """
    got = fields.resolve("auditID")
    if got is None or not hits:
        return []
    ids: list[str] = []
    for h in hits:
        _fmt, rec = to_record(h.get("_source") or {}, spec)
        if isinstance(rec.get("auditID"), str):
            ids.append(rec["auditID"])
    ids = sorted(set(ids))
    seen = {(h["_index"], h["_id"]) for h in hits}
    out: list[dict[str, Any]] = []
    for n in range(0, len(ids), chunk):
        q = collector.build_query(spec, since, until, extra=[{"terms": {got[0]: ids[n:n + chunk]}}])
        out.extend(h for h in collector.hits(spec, q, {}) if (h["_index"], h["_id"]) not in seen)
    return out


def es_findings(collector: EsCollector, indices: Sequence[IndexSpec | str], *, since: str, until: str,
                sigma: str | Path | None = None, config: Any = None, builtin: bool = True,
                progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run the pushable rules inside Elasticsearch over ``[since, until)`` and return their findings.

    Parameters
    ----------
    collector
        The Elasticsearch connection (:meth:`EsCollector.from_env`).
    indices
        Audit index patterns (:class:`IndexSpec` or ``PATTERN[:raw|ecs[:FIELD]]``).
    since, until
        ISO 8601 window on each index's time field.
    sigma
        A folder (or file) of Sigma rules, as for :func:`~kubeforensics.detect.engine.run_rules`.
    config
        Tuning (``TuningConfig``); default the shipped one.
    builtin
        Also push down the built-in declarative audit rules.

    Returns
    -------
    pandas.DataFrame
        The findings, as :func:`~kubeforensics.detect.engine.run_rules` returns them.
        ``attrs``: ``errors`` (rule id -> reason), ``not_pushed_down`` (rule id -> reason),
        ``pushdown`` (rule id -> ``{"hits", "server_total", "other_stages", "queries"}``).
    """
    from kubeforensics.detect import RULES
    from kubeforensics.detect.declarative import YamlRule
    from kubeforensics.detect.engine import SEVERITY_DTYPE, empty_findings, run_rules
    from kubeforensics.detect.model import FINDING_COLUMNS
    from kubeforensics.detect.sigma import load_sigma
    from kubeforensics.detect.tuning import TuningConfig

    cfg = config or TuningConfig.defaults()
    specs = [AuditIndexSpec.of(IndexSpec.parse(s) if isinstance(s, str) else s) for s in indices]
    conditions = builtin_conditions() if builtin else {}
    candidates: list[tuple[Any, Callable[[Fields], Q]]] = []
    skipped: dict[str, str] = {}
    if builtin:
        for rid, rule in RULES.items():
            if isinstance(rule, YamlRule) and rid in conditions:
                candidates.append((rule, partial(condition_query, conditions[rid])))
            else:
                src = ",".join(rule.meta.sources)
                skipped[rid] = ("statistical/correlation rule" if not isinstance(rule, YamlRule)
                                else f"declarative rule over {src}, not the audit log")
    if sigma is not None:
        for rule in load_sigma(sigma).values():
            candidates.append((rule, partial(sigma_rule_query, rule)))
    fields = [Fields(collector, s) for s in specs]
    parts: list[pd.DataFrame] = []
    errors: dict[str, str] = {}
    stats: dict[str, dict[str, Any]] = {}
    for rule, make in candidates:
        rid = rule.meta.id
        if rid in cfg.disabled_rules:
            continue
        per = [(spec, fl, make(fl)[0]) for spec, fl in zip(specs, fields)]
        if all(q is None for _, _, q in per):
            skipped[rid] = "no part of the condition can be expressed as an Elasticsearch query"
            continue
        st: dict[str, Any] = {"hits": 0, "server_total": 0, "queries": {}}
        frames: list[pd.DataFrame] = []
        try:
            for spec, fl, q in per:
                query = collector.build_query(spec, since, until, extra=[q] if q is not None else [])
                st["queries"][spec.pattern] = query
                state: dict[str, Any] = {}
                hits = list(collector.hits(spec, query, state))
                st["hits"] += len(hits)
                st["server_total"] += int(state.get("total", 0))
                siblings = _other_stages(collector, spec, fl, hits, since, until)
                st["other_stages"] = st.get("other_stages", 0) + len(siblings)
                hits += siblings
                df, quarantined = _audit_frame(hits, spec)
                if quarantined:
                    st["quarantined"] = st.get("quarantined", 0) + quarantined
                if not df.empty:
                    frames.append(df)
        except Exception as exc:  # noqa: BLE001 - one failing rule must not hide the others' findings
            log.warning("push-down of %s failed: %s", rid, exc)
            errors[rid] = f"{type(exc).__name__}: {exc}"
            continue
        stats[rid] = st
        if progress:
            progress(f"{rid}: {st['hits']} hits")
        if frames:
            audit = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            f = run_rules({"audit": audit}, rules=[rule], config=cfg)
            errors.update(f.attrs.get("errors", {}))
            if not f.empty:
                parts.append(f)
    out = pd.concat(parts, ignore_index=True) if parts else empty_findings()[list(FINDING_COLUMNS)]
    out["severity"] = out["severity"].astype(SEVERITY_DTYPE)
    out = out.sort_values(["severity", "first_seen", "rule_id"], ascending=[False, True, True], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs.update(errors=errors, not_pushed_down=skipped, pushdown=stats)
    return out


__all__ = ["AuditIndexSpec", "Fields", "condition_query", "es_findings", "sigma_query", "sigma_rule_query"]
