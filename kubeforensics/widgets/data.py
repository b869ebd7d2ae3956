"""Case-side data the views share: findings, story steps and the filtered event relation.

Everything heavy runs in DuckDB over the case's Parquet tables; only what a
view shows (a page of rows, a histogram, a few thousand points) reaches Python.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

if TYPE_CHECKING:
    from kubeforensics.case import Case
    from kubeforensics.widgets.filters import FilterState

log = logging.getLogger(__name__)

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEV_RANK = {s: n for n, s in enumerate(SEVERITIES)}
#: Above this many source rows, findings are not computed on the fly (pass them in or cache them).
MAX_ROWS_FOR_LIVE_DETECTION = 2_000_000
_SEV_VIEW = "kf_widget_severity"


def findings_for(case: Case, findings: pd.DataFrame | None = None) -> pd.DataFrame:
    """The case's findings: given, from ``case.findings()``, the derived cache, or run now when small."""
    if findings is not None:
        return findings
    cached = case.path / "derived" / "findings.parquet"
    if cached.is_file():
        return pd.read_parquet(cached)
    if sum(case.counts().values()) > MAX_ROWS_FOR_LIVE_DETECTION:
        log.info("case too large to run detections on the fly; pass findings= to the views")
        return _empty_findings()
    getter = getattr(case, "findings", None)
    if callable(getter):
        try:
            return getter()
        except Exception as exc:  # noqa: BLE001 - a view must open even when detection fails
            log.warning("case.findings() failed: %s", exc)
            return _empty_findings()
    try:
        from kubeforensics.detect import run_rules
    except ImportError:
        return _empty_findings()
    try:
        return run_rules(case.frames())
    except Exception as exc:  # noqa: BLE001
        log.warning("detections failed: %s", exc)
        return _empty_findings()


def _empty_findings() -> pd.DataFrame:
    cols = ["rule_id", "title", "severity", "techniques", "tactic", "first_seen", "last_seen", "namespace",
            "pod", "actor", "event_ids", "count", "summary"]
    df = pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    df["first_seen"] = pd.Series([], dtype="datetime64[ns, UTC]")
    df["last_seen"] = pd.Series([], dtype="datetime64[ns, UTC]")
    return df


class StorySource(Protocol):
    """What :func:`story_for` needs: a :class:`~kubeforensics.case.Case`, or a stand-in with only ``frames()``."""

    def frames(self) -> Mapping[str, pd.DataFrame]: ...


def story_for(case: StorySource, findings: pd.DataFrame) -> pd.DataFrame:
    """Story steps (``time``, ``title``, ``detail``, ``techniques``, ``event_ids``), in time order.

    Uses :func:`kubeforensics.correlate.build_story` when it exists; otherwise
    one step per finding, ordered by first sighting.
    """
    steps: pd.DataFrame | None = None
    getter = getattr(case, "story", None)
    try:
        if callable(getter):
            steps = _story_frame(getter())
        else:
            from kubeforensics.correlate import build_story  # type: ignore[attr-defined]

            steps = _story_frame(build_story(case.frames(), findings))
    except (ImportError, AttributeError):
        steps = None
    except Exception as exc:  # noqa: BLE001
        log.warning("story failed: %s", exc)
        steps = None
    if steps is not None:
        return steps
    if findings is None or findings.empty:
        return pd.DataFrame(columns=["time", "title", "detail", "techniques", "event_ids"])
    f = findings.sort_values("first_seen", kind="stable")
    return pd.DataFrame({
        "time": pd.to_datetime(f["first_seen"], utc=True).to_numpy(),
        "title": f["title"].astype(str).to_numpy(),
        "detail": f["summary"].astype(str).to_numpy(),
        "techniques": f["techniques"].to_numpy(),
        "event_ids": f["event_ids"].to_numpy(),
        "severity": f["severity"].astype(str).to_numpy(),
    }).reset_index(drop=True)


def _story_frame(story: Any) -> pd.DataFrame | None:
    """Accept a DataFrame or an object with ``steps``/``to_frame()`` and map it to step columns."""
    if story is None:
        return None
    if hasattr(story, "to_frame"):
        story = story.to_frame()
    elif hasattr(story, "steps"):
        story = pd.DataFrame([s if isinstance(s, dict) else getattr(s, "__dict__", {}) for s in story.steps])
    if not isinstance(story, pd.DataFrame):
        return None
    df = story.copy()
    for want, alts in (("time", ("time", "start", "first_seen")), ("title", ("title", "tactic", "step", "name")),
                       ("detail", ("detail", "summary", "description", "text")), ("techniques", ("techniques",)),
                       ("event_ids", ("event_ids", "evidence"))):
        if want not in df.columns:
            src = next((a for a in alts if a in df.columns), None)
            df[want] = df[src] if src else None
    df["time"] = pd.to_datetime(df["time"], utc=True, errors="coerce")
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def register_severity(case: Case, findings: pd.DataFrame) -> None:
    """Expose ``event_id -> highest finding severity`` to DuckDB as a view the event SQL joins."""
    rows = pd.DataFrame({"event_id": pd.Series([], dtype=object), "f_rank": pd.Series([], dtype="int64")})
    if findings is not None and len(findings) and "event_ids" in findings.columns:
        ex = findings[["event_ids", "severity"]].explode("event_ids").dropna(subset=["event_ids"])
        if len(ex):
            ex = ex.assign(f_rank=ex["severity"].astype(str).map(SEV_RANK).fillna(0).astype("int64"))
            rows = ex.groupby("event_ids", as_index=False)["f_rank"].max().rename(columns={"event_ids": "event_id"})
    con = case.query.con
    # DuckDB refuses register() while a result fetched with fetchone() is still open on the connection
    con.execute("SELECT 1").fetchall()
    con.register(_SEV_VIEW, rows)


def events_sql(case: Case, state: FilterState, params: list[Any], *, sources: tuple[str, ...] | None = None,
               since: Any = None, until: Any = None, extra: str = "") -> str:
    """SQL for the filtered unified timeline plus ``sev`` / ``sev_rank`` columns (findings applied).

    Time window and namespace/pod/node/ip/user filters are pushed into each
    source's scan; actor, source and minimum severity apply on the union.
    """
    from kubeforensics.case.query import Filters
    from kubeforensics.timeline.unified import timeline_sql

    f = Filters(since=since if since is not None else state.since, until=until if until is not None else state.until,
                namespace=state.namespace or None, pod=state.pod or None, node=state.node or None,
                ip=state.ip or None, user=state.user or None)
    srcs = sources if sources is not None else (tuple(state.sources) or None)
    union = timeline_sql(case, f, params, srcs)
    if not union:
        union = ("SELECT NULL::TIMESTAMPTZ AS time, NULL::VARCHAR AS source, NULL::VARCHAR AS action, NULL::VARCHAR AS actor, "
                 "NULL::VARCHAR AS namespace, NULL::VARCHAR AS pod, NULL::VARCHAR AS container_id, NULL::VARCHAR AS node, "
                 "NULL::VARCHAR AS process, NULL::VARCHAR AS args, NULL::VARCHAR AS src_ip, NULL::VARCHAR AS dst_ip, "
                 "NULL::INTEGER AS dst_port, NULL::VARCHAR AS verdict, NULL::VARCHAR AS severity, "
                 "NULL::VARCHAR[] AS techniques, NULL::VARCHAR AS summary, NULL::VARCHAR AS event_id WHERE FALSE")
    own = "CASE t.severity " + " ".join(f"WHEN '{s}' THEN {n}" for s, n in SEV_RANK.items()) + " ELSE -1 END"
    rank = f"greatest(coalesce(s.f_rank, -1), {own})"
    where = ["TRUE"]
    if state.actor:
        where.append("t.actor = ?")
        params.append(state.actor)
    if state.min_severity:
        where.append(f"{rank} >= ?")
        params.append(SEV_RANK[state.min_severity])
    if extra:
        where.append(extra)
    sev = "CASE " + " ".join(f"WHEN {rank} = {n} THEN '{s}'" for s, n in SEV_RANK.items()) + " END"
    return (f"SELECT t.*, {sev} AS sev, {rank} AS sev_rank FROM ({union}) t "
            f"LEFT JOIN {_SEV_VIEW} s ON s.event_id = t.event_id WHERE {' AND '.join(where)}")


def ensure_severity_view(case: Case) -> None:
    """Register an empty severity view when none exists yet (views may query before findings load)."""
    try:
        case.query.con.execute(f"SELECT 1 FROM {_SEV_VIEW} LIMIT 0")
    except Exception:  # noqa: BLE001 - duckdb raises CatalogException
        register_severity(case, _empty_findings())
