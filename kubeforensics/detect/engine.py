"""Running rules over case tables and aggregating hits into findings."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kubeforensics.detect.conditions import EAGER, ConditionError, derive
from kubeforensics.detect.declarative import YamlRule
from kubeforensics.detect.frames import prepare
from kubeforensics.detect.model import FINDING_COLUMNS, Rule, Severity
from kubeforensics.detect.tuning import TuningConfig

log = logging.getLogger(__name__)

SEVERITY_DTYPE = pd.CategoricalDtype([s.label for s in Severity], ordered=True)


def load_rule_file(path: str | Path, text: str | None = None) -> list[YamlRule]:
    """The rules of one YAML rule file.

    Raises
    ------
    ConditionError
        When the file is not YAML, has no ``rules`` list, or a rule is malformed
        (the message names the file and the rule id).
    """
    where = str(path)
    try:
        data = yaml.safe_load(text if text is not None else Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConditionError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise ConditionError(f"{where}: expected a mapping with a 'rules' list")
    return [YamlRule.from_mapping(d, where) for d in data["rules"]]


def builtin_rule_files() -> list[tuple[str, str]]:
    """``(name, text)`` of the shipped rule files, sorted by name."""
    folder = files("kubeforensics.detect").joinpath("rules")
    return sorted(
        (f"rules/{p.name}", p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_rules(extra: Iterable[str | Path] = ()) -> dict[str, Rule]:
    """The built-in rule pack (YAML files and Python rules), plus YAML rule files in ``extra``.

    Raises
    ------
    ConditionError
        On a malformed rule or a duplicate rule id.
    """
    from kubeforensics.detect.correlation import CORRELATION_RULES
    from kubeforensics.detect.stats import STATISTICAL_RULES

    out: dict[str, Rule] = {}
    loaded: list[Rule] = []
    for name, text in builtin_rule_files():
        loaded.extend(load_rule_file(name, text))
    for p in extra:
        loaded.extend(load_rule_file(p))
    loaded.extend(cls() for cls in (*STATISTICAL_RULES, *CORRELATION_RULES))
    for rule in loaded:
        rid = rule.meta.id
        if rid in out:
            raise ConditionError(f"duplicate rule id {rid!r} ({rule.meta.origin} and {out[rid].meta.origin})")
        out[rid] = rule
    return out


def empty_findings() -> pd.DataFrame:
    """A findings frame with no rows and the contract's columns and dtypes."""
    df = pd.DataFrame({c: pd.Series([], dtype=object) for c in FINDING_COLUMNS})
    df["severity"] = pd.Series([], dtype=SEVERITY_DTYPE)
    df["first_seen"] = pd.Series([], dtype="datetime64[ns, UTC]")
    df["last_seen"] = pd.Series([], dtype="datetime64[ns, UTC]")
    df["count"] = pd.Series([], dtype="int64")
    return df


def _summary(detail: Any, count: int, first: pd.Timestamp, last: pd.Timestamp) -> str:
    s = str(detail) if isinstance(detail, str) and detail else "matched"
    if count > 1:
        s += f" ({count} events, {first:%Y-%m-%d %H:%M:%S}–{last:%H:%M:%S} UTC)"
    return s


def aggregate(rule: Rule, hits: pd.DataFrame) -> pd.DataFrame:
    """One finding per ``key`` of ``hits`` (count, first/last seen, all event ids)."""
    if hits.empty:
        return empty_findings()
    hits = hits.sort_values("time", kind="stable")
    g = hits.groupby("key", sort=False)
    agg = g.agg(
        first_seen=("time", "min"),
        last_seen=("time", "max"),
        count=("event_id", "size"),
        namespace=("namespace", "first"),
        pod=("pod", "first"),
        actor=("actor", "first"),
        detail=("detail", "first"),
    )
    agg["event_ids"] = g["event_id"].agg(lambda s: [str(x) for x in s])
    m = rule.meta
    out = pd.DataFrame(
        {
            "rule_id": m.id,
            "title": m.title,
            "severity": m.severity.label,
            "techniques": [list(m.techniques) for _ in range(len(agg))],
            "tactic": m.tactic,
            "first_seen": agg["first_seen"].to_numpy(),
            "last_seen": agg["last_seen"].to_numpy(),
            "namespace": agg["namespace"].to_numpy(),
            "pod": agg["pod"].to_numpy(),
            "actor": agg["actor"].to_numpy(),
            "event_ids": agg["event_ids"].to_numpy(),
            "count": agg["count"].astype("int64").to_numpy(),
            "summary": [
                _summary(d, c, f, last)
                for d, c, f, last in zip(agg["detail"], agg["count"], agg["first_seen"], agg["last_seen"])
            ],
            "description": m.description,
            "source": m.origin,
        }
    )
    return out


def _select(rules: Iterable[Rule | str] | Mapping[str, Rule] | None) -> list[Rule]:
    from kubeforensics.detect import RULES

    if rules is None:
        return list(RULES.values())
    if isinstance(rules, Mapping):
        return list(rules.values())
    out: list[Rule] = []
    for r in rules:
        if isinstance(r, str):
            if r not in RULES:
                raise KeyError(f"no rule {r!r} (see kubeforensics.detect.RULES)")
            out.append(RULES[r])
        else:
            out.append(r)
    return out


def run_rules(
    tables: Mapping[str, pd.DataFrame],
    *,
    rules: Iterable[Rule | str] | Mapping[str, Rule] | None = None,
    sigma: str | Path | None = None,
    config: TuningConfig | None = None,
) -> pd.DataFrame:
    """Run detection rules over case tables and return the findings.

    Parameters
    ----------
    tables
        Canonical table name -> DataFrame (``audit``, ``processes``, ``flows``,
        ``flow_aux``, ``alerts``, ``k8s_events``, ``objects``); missing = empty.
    rules
        Rules (or rule ids) to run; default every built-in rule (:data:`RULES`).
    sigma
        A folder (or one file) of Sigma rules to evaluate on the audit table too.
    config
        Tuning (allow-lists, thresholds); default the shipped configuration.

    Returns
    -------
    pandas.DataFrame
        One row per (rule, entity) with :data:`~kubeforensics.detect.model.FINDING_COLUMNS`,
        most severe first, then by ``first_seen``.  ``severity`` is an ordered
        categorical (``info < low < medium < high < critical``).  Rules that
        failed are listed in ``result.attrs["errors"]`` (rule id -> reason).
    """
    cfg = config or TuningConfig.defaults()
    frames = prepare(tables)
    for name, cols in EAGER.items():
        frames[name] = derive(name, frames[name], cols)
    errors: dict[str, str] = {}
    parts = [evaluate_rule(rule, frames, cfg, errors) for rule in selected_rules(rules, sigma, cfg)]
    return finish(parts, errors)


def selected_rules(rules: Iterable[Rule | str] | Mapping[str, Rule] | None, sigma: str | Path | None,
                   cfg: TuningConfig) -> list[Rule]:
    """The rules to run: ``rules`` (default all built-in), plus Sigma rules, minus disabled ones."""
    selected = _select(rules)
    if sigma is not None:
        from kubeforensics.detect.sigma import load_sigma

        selected += list(load_sigma(sigma).values())
    return [r for r in selected if r.meta.id not in cfg.disabled_rules]


def evaluate_rule(rule: Rule, frames: Mapping[str, pd.DataFrame], cfg: TuningConfig,
                  errors: dict[str, str]) -> pd.DataFrame:
    """One rule's findings (suppressions applied); a failing rule is logged into ``errors``."""
    rid = rule.meta.id
    try:
        hits = rule.evaluate(frames, cfg)
    except Exception as exc:  # one broken rule must not hide the others' findings (logged with its traceback)
        log.exception("rule %s failed", rid)
        errors[rid] = f"{type(exc).__name__}: {exc}"
        return empty_findings()
    f = aggregate(rule, hits)
    if not f.empty and cfg.suppress:
        keep = [not cfg.suppressed(rid, r) for r in f[["namespace", "pod", "actor"]].to_dict("records")]
        f = f[keep]
    return f


def finish(parts: Iterable[pd.DataFrame], errors: dict[str, str]) -> pd.DataFrame:
    """Concatenate per-rule findings into the contract's frame, most severe first."""
    parts = [p for p in parts if not p.empty]
    out = pd.concat(parts, ignore_index=True) if parts else empty_findings()
    out["severity"] = out["severity"].astype(SEVERITY_DTYPE)
    out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True).astype("datetime64[ns, UTC]")
    out["last_seen"] = pd.to_datetime(out["last_seen"], utc=True).astype("datetime64[ns, UTC]")
    out["count"] = out["count"].astype("int64")
    out = out.sort_values(["severity", "first_seen", "rule_id"], ascending=[False, True, True], kind="stable")
    out = out[list(FINDING_COLUMNS)].reset_index(drop=True)
    out.attrs["errors"] = errors
    return out
