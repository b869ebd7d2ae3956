"""Sigma rules for Kubernetes audit logs, evaluated on the ``audit`` table.

pySigma parses the rules (YAML, modifiers, condition expressions into a tree);
the tree is evaluated here directly over pandas columns.  Why not a pySigma
backend: there is no maintained pandas backend for pySigma 2, and a SQL/DuckDB
backend would need a processing pipeline to map Sigma fields onto our columns
and could not reach into the list columns (``sourceIPs``, ``user.groups``) and
JSON columns (``requestObject.*``) the way the mapping below does.  The
evaluator is ~150 lines, vectorised, and short-circuits ``AND`` on the rows
still matching.

Field mapping (``product: kubernetes, service: audit``) -> audit columns: see
:data:`FIELD_MAP`; ``requestObject.*``, ``responseObject.*``, ``annotations.*``
and ``user.extra.*`` are looked up inside the JSON columns.  Two fields of the
SigmaHQ rules are not audit fields but Aurora-style shorthands: ``hostPath``
(any hostPath volume: ``pod_host_paths``) and ``capabilities`` (added
capabilities; a privileged container counts as having ``privileged``).
Matching follows Sigma: strings case-insensitive, ``*``/``?`` wildcards,
lists are "any element".  Unmapped fields never match (logged once per rule).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.detect.declarative import hits_frame, render
from kubeforensics.detect.model import RuleMeta, Severity, empty_hits
from kubeforensics.errors import MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig

log = logging.getLogger(__name__)

FIELD_MAP: dict[str, str] = {
    "verb": "verb",
    "objectRef.resource": "resource",
    "objectRef.subresource": "subresource",
    "objectRef.namespace": "namespace",
    "objectRef.name": "name",
    "objectRef.apiGroup": "api_group",
    "apiGroup": "api_group",
    "objectRef.apiVersion": "api_version",
    "objectRef.uid": "object_uid",
    "user.username": "user",
    "user.uid": "user_uid",
    "user.groups": "user_groups",
    "impersonatedUser.username": "impersonated_user",
    "responseStatus.code": "code",
    "responseStatus.reason": "status_reason",
    "responseStatus.message": "status_message",
    "sourceIPs": "source_ips",
    "userAgent": "user_agent",
    "requestURI": "request_uri",
    "stage": "stage",
    "level": "level",
    "auditID": "audit_id",
    "apiVersion": "audit_version",
    "hostPath": "pod_host_paths",
    "annotations.authorization.k8s.io/decision": "decision",
    "annotations.authorization.k8s.io/reason": "authz_reason",
}
JSON_PREFIXES: dict[str, str] = {
    "requestObject.": "request_object",
    "responseObject.": "response_object",
    "annotations.": "annotations",
    "user.extra.": "user_extra",
}
LIST_COLUMNS = {"user_groups", "source_ips", "pod_host_paths"}
KEYWORD_COLUMNS = ("request_uri", "user", "user_agent", "name", "namespace", "resource", "exec_command")
SUMMARY = "{user} {verb} {_target} from {source_ip} (code {code}) — Sigma: {_title}"


def _target(r: Mapping[str, Any]) -> str:
    def ok(v: Any) -> bool:
        return isinstance(v, str) and bool(v)

    what = r.get("resource") if ok(r.get("resource")) else (r.get("request_uri") or "?")
    if ok(r.get("subresource")):
        what = f"{what}/{r['subresource']}"
    where = "/".join(str(r[k]) for k in ("namespace", "name") if ok(r.get(k)))
    return f"{what} {where}".strip()


def _require_pysigma() -> Any:
    try:
        from sigma.collection import SigmaCollection
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "Sigma rules need pySigma", hint="pip install pysigma (or kubeforensics[sigma])"
        ) from exc
    return SigmaCollection


def _json_values(doc: Any, path: list[str]) -> list[Any]:
    if not path:
        return doc if isinstance(doc, list) else [doc]
    if isinstance(doc, list):
        return [v for d in doc for v in _json_values(d, path)]
    if not isinstance(doc, dict):
        return []
    # keys may themselves contain dots (annotations): try the longest key first
    for n in range(len(path), 0, -1):
        k = ".".join(path[:n])
        if k in doc:
            return _json_values(doc[k], path[n:])
    return []


def field_values(df: pd.DataFrame, name: str) -> tuple[pd.Series, bool] | None:
    """(values, is_list) of Sigma field ``name`` over ``df``; None when unmapped."""
    if name == "capabilities":
        caps = df["pod_capabilities"].map(lambda v: [] if v is None or isinstance(v, float) else list(v))
        priv = df["pod_privileged"].fillna(False).astype(bool)
        return pd.Series([c + ["privileged"] if p else c for c, p in zip(caps, priv)], index=df.index), True
    col = FIELD_MAP.get(name)
    if col is not None:
        return df[col], col in LIST_COLUMNS
    for prefix, col in JSON_PREFIXES.items():
        if name.startswith(prefix):
            return df[col].map(_json_getter(name[len(prefix):].split("."))), True
    return None


def _json_getter(path: list[str]) -> Callable[[Any], list[Any]]:
    """The values at ``path`` inside one JSON text ([] for a non-string or invalid JSON)."""

    def get(s: Any) -> list[Any]:
        if not isinstance(s, str):
            return []
        try:
            return _json_values(json.loads(s), path)
        except ValueError:
            return []

    return get


def _string_matcher(value: Any) -> Callable[[Any], bool]:
    from sigma.types import SpecialChars

    parts = value.s
    if not value.contains_special():
        target = "".join(str(p) for p in parts).lower()
        return lambda v: str(v).lower() == target
    rx = "".join(
        ".*" if p is SpecialChars.WILDCARD_MULTI else "." if p is SpecialChars.WILDCARD_SINGLE else re.escape(str(p))
        for p in parts
    )
    pat = re.compile(rx, re.IGNORECASE | re.DOTALL)
    return lambda v: pat.fullmatch(str(v)) is not None


def _matcher(value: Any) -> Callable[[Any], bool] | str:
    from sigma import types as st

    if isinstance(value, st.SigmaString):
        return _string_matcher(value)
    if isinstance(value, st.SigmaNumber):
        n = value.number
        return lambda v: (str(v) == str(n)) or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == n)
    if isinstance(value, st.SigmaBool):
        b = value.boolean
        return lambda v: v is b or str(v).lower() == str(b).lower()
    if isinstance(value, st.SigmaRegularExpression):
        pat = re.compile(str(value.regexp))
        return lambda v: pat.search(str(v)) is not None
    if isinstance(value, st.SigmaCIDRExpression):
        net = ipaddress.ip_network(value.cidr, strict=False)

        def in_net(v: Any) -> bool:
            try:
                return ipaddress.ip_address(str(v)) in net
            except ValueError:
                return False

        return in_net
    if isinstance(value, st.SigmaNull):
        return "null"
    if isinstance(value, st.SigmaExists):
        return "exists" if value.exists else "null"
    raise ValueError(f"unsupported Sigma value {type(value).__name__}")


def _present(v: Any) -> bool:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return False
    return not (isinstance(v, (list, tuple)) and len(v) == 0) and not (hasattr(v, "size") and v.size == 0)


def _leaf(df: pd.DataFrame, fname: str | None, value: Any, unmapped: set[str]) -> pd.Series:
    if fname is None:  # keyword: any text column contains it
        m = _matcher(value)
        if not callable(m):  # "null"/"exists" name a field state; a keyword has no field
            raise ValueError(f"unsupported Sigma keyword value {type(value).__name__}")
        needle = str(getattr(value, "original", value)).strip("*").lower()
        hit = pd.Series(False, index=df.index)
        for c in KEYWORD_COLUMNS:
            hit |= df[c].map(lambda v: _present(v) and (m(v) or needle in str(v).lower()))
        return hit
    got = field_values(df, fname)
    if got is None:
        unmapped.add(fname)
        return pd.Series(False, index=df.index)
    s, listy = got
    m = _matcher(value)
    if m == "null":
        return ~s.map(_present)
    if m == "exists":
        return s.map(_present)
    assert callable(m)
    if listy:
        return s.map(lambda v: _present(v) and any(m(x) for x in v if x is not None))
    return s.map(lambda v: _present(v) and m(v))


def evaluate_tree(node: Any, df: pd.DataFrame, unmapped: set[str]) -> pd.Series:
    """Boolean mask of the rows of ``df`` matching a parsed pySigma condition tree."""
    from sigma import conditions as sc

    if isinstance(node, sc.ConditionAND):
        m = pd.Series(True, index=df.index)
        for a in node.args:
            if not m.any():
                break
            sub = df if m.all() else df[m]
            m &= evaluate_tree(a, sub, unmapped).reindex(df.index, fill_value=False)
        return m
    if isinstance(node, sc.ConditionOR):
        m = pd.Series(False, index=df.index)
        for a in node.args:
            m |= evaluate_tree(a, df, unmapped)
        return m
    if isinstance(node, sc.ConditionNOT):
        return ~evaluate_tree(node.args[0], df, unmapped)
    if isinstance(node, sc.ConditionFieldEqualsValueExpression):
        return _leaf(df, node.field, node.value, unmapped).astype(bool)
    if isinstance(node, sc.ConditionValueExpression):
        return _leaf(df, None, node.value, unmapped).astype(bool)
    raise ValueError(f"unsupported Sigma condition node {type(node).__name__}")


@dataclass
class SigmaRule:
    """One Sigma rule, evaluated on the audit table."""

    meta: RuleMeta
    trees: list[Any]
    unmapped: set[str] = field(default_factory=set)

    def evaluate(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame:
        a = tables.get("audit")
        if a is None or a.empty:
            return empty_hits()
        m = pd.Series(False, index=a.index)
        for t in self.trees:
            m |= evaluate_tree(t, a, self.unmapped)
        if self.unmapped:
            log.warning("Sigma rule %s: fields %s have no audit mapping and never match", self.meta.id, sorted(self.unmapped))
        sub = a[m]
        if sub.empty:
            return empty_hits()
        key_cols = ["user", "namespace", "name", "resource"]
        key = sub[key_cols].astype(object).fillna("").astype(str).agg("\x1f".join, axis=1)
        first = sub.assign(_k=key).sort_values("time", kind="stable").drop_duplicates("_k")
        details = {i: render(SUMMARY, {**r, "_title": self.meta.title, "_target": _target(r)}) for i, r in zip(first.index, first.to_dict("records"))}
        pod = sub["name"].where(sub["resource"] == "pods")
        return hits_frame(sub, namespace=sub["namespace"], pod=pod, actor=sub["user"], key=key, details=details)

    def examples(self) -> dict[str, list[Any]]:
        return {"positive": [], "negative": []}


def _techniques(tags: list[str]) -> tuple[tuple[str, ...], str]:
    techs, tactics = [], []
    for t in tags:
        m = re.fullmatch(r"attack\.(t\d{4}(?:\.\d{3})?)", t, re.IGNORECASE)
        if m:
            techs.append(m.group(1).upper())
        elif t.lower().startswith("attack."):
            tactics.append(t.split(".", 1)[1])
    return tuple(dict.fromkeys(techs)), (tactics[0] if tactics else "")


def sigma_from_yaml(text: str, origin: str) -> list[SigmaRule]:
    """The Kubernetes-audit rules of one Sigma YAML document (other log sources are skipped)."""
    SigmaCollection = _require_pysigma()
    from sigma.rule import SigmaRule as PySigmaRule

    out: list[SigmaRule] = []
    for r in SigmaCollection.from_yaml(text).rules:
        if not isinstance(r, PySigmaRule):
            log.info("%s: %s is not a detection rule (correlation/filter); skipped", origin, getattr(r, "title", "?"))
            continue
        ls = r.logsource
        if (ls.product or "").lower() != "kubernetes" or (ls.service or "").lower() not in ("audit", ""):
            log.info("%s: %r is for %s/%s, not kubernetes/audit; skipped", origin, r.title, ls.product, ls.service)
            continue
        trees = [c.parsed for c in r.detection.parsed_condition]
        techs, tactic = _techniques([str(t) for t in r.tags])
        level = str(r.level.name if r.level is not None else "medium").lower()
        fps = "; ".join(str(f) for f in (r.falsepositives or []))
        desc = (r.description or r.title).strip()
        attribution = f"Sigma rule by {r.author or 'unknown author'}"
        if r.date:
            attribution += f" ({r.date})"
        desc = f"{desc} [{attribution}; {Path(origin).name}; SigmaHQ Detection Rule License 1.1]"
        meta = RuleMeta(
            id=f"SIGMA-{r.id or Path(origin).stem}",
            title=r.title,
            description=desc,
            severity=Severity.parse(level),
            techniques=techs,
            tactic=tactic,
            sources=("audit",),
            fields=tuple(sorted({f"audit.{FIELD_MAP.get(f, f)}" for f in _fields(trees)})),
            false_positives=fps,
            origin=f"sigma:{Path(origin).name}",
        )
        out.append(SigmaRule(meta, trees))
    return out


def _fields(trees: list[Any]) -> set[str]:
    out: set[str] = set()

    def walk(n: Any) -> None:
        f = getattr(n, "field", None)
        if isinstance(f, str):
            out.add(f)
        for a in getattr(n, "args", []) or []:
            walk(a)

    for t in trees:
        walk(t)
    return out


#: Columns every Sigma hit reads besides the rule's own fields: its identity, key, summary and target.
HIT_COLUMNS_READ = ("event_id", "time", "user", "verb", "resource", "subresource", "name", "namespace",
                    "source_ip", "code", "request_uri")


def columns_read(rules: Sequence[Any]) -> tuple[str, ...] | None:
    """The audit columns these Sigma rules read, or None when any of them may read others.

    A field with no mapping reads nothing (it never matches); a keyword search (no field) reads
    :data:`KEYWORD_COLUMNS`; ``capabilities`` reads the pod's capabilities and privileged flag."""
    cols = set(HIT_COLUMNS_READ) | set(KEYWORD_COLUMNS)
    for r in rules:
        if not isinstance(r, SigmaRule):
            return None
        for name in _fields(r.trees):
            if name == "capabilities":
                cols |= {"pod_capabilities", "pod_privileged"}
            elif name in FIELD_MAP:
                cols.add(FIELD_MAP[name])
            else:
                cols |= {c for prefix, c in JSON_PREFIXES.items() if name.startswith(prefix)}
    return tuple(sorted(cols))


def load_sigma(path: str | Path, *, strict: bool = False) -> dict[str, SigmaRule]:
    """Sigma rules from a folder (``*.yml``/``*.yaml``, recursively) or one file, id -> rule.

    A rule pySigma cannot parse is logged and skipped, or raises when ``strict``.

    Raises
    ------
    kubeforensics.errors.InputError
        When ``path`` does not exist, or (``strict``) a rule does not parse.
    """
    from kubeforensics.errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError(f"Sigma rules: {p} does not exist")
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml"))
    out: dict[str, SigmaRule] = {}
    _require_pysigma()
    from sigma.exceptions import SigmaError

    for f in files:
        try:
            rules = sigma_from_yaml(f.read_text(encoding="utf-8"), str(f))
        except (SigmaError, ValueError, OSError) as exc:
            if strict:
                raise InputError(f"Sigma rule {f}: {exc}") from exc
            log.warning("Sigma rule %s skipped: %s", f, exc)
            continue
        for r in rules:
            out[r.meta.id] = r
    return out
