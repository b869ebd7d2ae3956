"""The state a playbook works on: the case, its tables in the window, findings, story and answers.

>>> inv = start("cases/incident-42", playbook="triage")       # doctest: +SKIP
>>> inv.ask("pod_creation", escape.pod_creation(inv))        # doctest: +SKIP
>>> inv.conclude()                                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kubeforensics.report.answers import Answer, record_answers

log = logging.getLogger(__name__)


class Investigation:
    """One playbook run over a case (window, seed and thresholds); tables, findings and story are
    computed once and shared by every question."""

    def __init__(self, case: Any, *, playbook: str = "adhoc", run_id: str | None = None, since: Any = None,
                 until: Any = None, seed: Any = None, **thresholds: Any) -> None:
        from kubeforensics.case import Case, open_case

        self.case: Case = case if isinstance(case, Case) else open_case(case)
        self.playbook = playbook
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.since, self.until = since or None, until or None
        self.seed = seed or None
        self.thresholds = thresholds
        self.answers: dict[str, Answer] = {}
        self._tables: dict[str, pd.DataFrame] | None = None
        self._findings: pd.DataFrame | None = None
        self._story: Any = None

    def __repr__(self) -> str:
        return (f"<Investigation {self.playbook} on {self.case.path} window={self.since}..{self.until} "
                f"seed={self.seed!r}: {len(self.answers)} answers>")

    # ------------------------------------------------------------------ data
    @property
    def windowed(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The source tables in the window (loaded once)."""
        if self._tables is None:
            filters = {k: v for k, v in (("since", self.since), ("until", self.until)) if v is not None}
            self._tables = self.case.frames(**filters)
        return self._tables

    @property
    def lean(self) -> bool:
        """True when questions read slices from storage (:meth:`slice`): the investigation covers the
        whole case and its tables are not loaded."""
        return not self.windowed and self._tables is None and hasattr(self.case, "query")

    def slice(self, table: str, where: str = "TRUE", params: Sequence[Any] = (), *,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows of ``table`` a question may use: ``where`` (DuckDB SQL over the table as
        :meth:`Case.table` gives it, audit stages merged; values as ``?`` with ``params``, never
        formatted into the text) read from storage when :attr:`lean`, in time order, with the
        dtypes of :meth:`Case.table`; otherwise the loaded table itself, whole.

        The SQL need only let through a superset of the rows the question's pandas logic uses: the
        question applies that logic to the slice, so both paths answer alike.  ``columns`` (with the
        whole-case read only) limits the columns read."""
        if not self.lean:
            return self.tables[table]
        from kubeforensics.schema import TABLES

        spec = TABLES[table]
        known = set(spec.names) | ({"stages"} if table == "audit" else set())
        unknown = [c for c in (columns or ()) if c not in known]
        if unknown:
            raise ValueError(f"table {table!r} has no column(s) {', '.join(unknown)}")
        q = self.case.query
        sql_params: list[Any] = []
        src = q.whole_sql(table, sql_params)
        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        sql = f"SELECT {cols} FROM {src} WHERE {where} ORDER BY time, event_id"
        return q.to_frame(sql, [*sql_params, *params], spec)

    def time_ends(self) -> list[pd.Timestamp]:
        """The time of the last event of each non-empty source table (audit: of its merged
        requests), by an aggregate in storage when :attr:`lean`."""
        if not self.lean:
            return [t["time"].max() for t in self.tables.values() if not t.empty]
        from kubeforensics.case.store import SOURCE_TABLES

        q = self.case.query
        ends = []
        for t in SOURCE_TABLES:
            if not q.has(t):
                continue
            params: list[Any] = []
            sql = f"SELECT count(*) AS n, max(time) AS end FROM {q.whole_sql(t, params)}"
            row = q.arrow(sql, params).to_pandas().iloc[0]  # through Arrow: nanoseconds kept
            if row["n"]:
                ends.append(pd.Timestamp(row["end"]).tz_convert("UTC").as_unit("ns") if pd.notna(row["end"]) else pd.NaT)
        return ends

    @property
    def context(self) -> Any:
        """The correlation context (normalised tables, entity resolver, process nodes): on the whole
        case the story's (repetitive baseline trimmed, see :mod:`kubeforensics.case.slim`), else
        built from :attr:`tables`."""
        if self.lean and hasattr(self.case, "story_context"):
            return self.case.story_context(self.findings)
        from kubeforensics.correlate import Context

        return Context(self.tables)

    def evidence_tables(self, event_ids: Any) -> dict[str, pd.DataFrame]:
        """The source tables restricted to these event ids: read by id from storage for the whole
        case, taken from :attr:`tables` in a window (or when they are loaded already)."""
        from kubeforensics.case.store import SOURCE_TABLES

        ids = {str(e) for e in event_ids}
        if self.windowed or self._tables is not None or not hasattr(self.case, "query"):
            return {t: df[df["event_id"].isin(ids)] for t, df in self.tables.items()}
        return {t: self.case.query.rows(t, sorted(ids)) for t in SOURCE_TABLES}

    def pod_tables(self, pods: Any, names: Any = ("flows", "processes")) -> dict[str, pd.DataFrame]:
        """Tables ``names`` restricted to the events of these pods (``ns/name``; the pod filter of
        :meth:`Case.table`, pushed down), in the window."""
        if self._tables is not None or not hasattr(self.case, "table"):
            return {t: self.tables[t] for t in names}
        window = {k: v for k, v in (("since", self.since), ("until", self.until)) if v is not None}
        out = {}
        for t in names:
            parts = []
            for pod in dict.fromkeys(pods):
                ns, _, name = str(pod).rpartition("/")
                parts.append(self.case.table(t, pod=name, namespace=ns or None, **window))
            out[t] = (pd.concat(parts, ignore_index=True).drop_duplicates("event_id").sort_values(["time", "event_id"])
                      .reset_index(drop=True) if parts else self.case.table(t, limit=0))
        return out

    @property
    def findings(self) -> pd.DataFrame:
        """Findings of the built-in rules (the case's cache when the whole case is in the window)."""
        if self._findings is None:
            if not self.windowed and hasattr(self.case, "findings"):
                self._findings = self.case.findings()
            else:
                from kubeforensics.detect import run_rules

                self._findings = run_rules(self.tables)
        return self._findings

    @property
    def story(self) -> Any:
        """The attack story (from the seed when one is set)."""
        if self._story is None:
            if not self.windowed and hasattr(self.case, "story"):
                self._story = self.case.story(self.seed, findings=self.findings)  # reads the baseline trimmed
            else:
                from kubeforensics.correlate import build_story

                self._story = build_story(self.tables, self.findings, seed=self.seed)
        return self._story

    # ------------------------------------------------------------------ answers
    def show_story(self) -> Any:
        """The story as a table (escaped HTML in a notebook)."""
        from kubeforensics.report.answers import FrameView

        cols = ["time", "tactic", "techniques", "namespace", "pod", "actor", "process", "dst_ip", "summary"]
        return FrameView(self.story.to_frame()[cols], f"Attack story: {len(self.story)} steps")

    def ask(self, key: str, answer: Answer) -> Answer:
        """Keep ``answer`` under ``key`` (recorded by :meth:`conclude`) and return it for display."""
        self.answers[key] = answer
        return answer

    def conclude(self) -> pd.DataFrame:
        """Record every answer in the case log (and bookmark its evidence); return the answer table."""
        params = {"since": self.since, "until": self.until, "seed": self.seed, **self.thresholds}
        df = record_answers(self.case, self.answers, playbook=self.playbook, run_id=self.run_id,
                            parameters=params)
        from kubeforensics.report.indicators import indicators
        from kubeforensics.report.sections import save_run

        ids = [e for lst in self.findings["event_ids"] for e in lst]
        save_run(self.case, self.run_id, self.story, indicators(self.evidence_tables(ids), self.findings))
        self.case.note(f"playbook {self.playbook} concluded with {len(self.answers)} answers", run_id=self.run_id,
                       playbook=self.playbook)
        return df


def start(case: str | Path | Any, *, playbook: str = "adhoc", run_id: str | None = None, since: Any = None,
          until: Any = None, seed: Any = None, **thresholds: Any) -> Investigation:
    """Open the case of a playbook run (see :class:`Investigation`)."""
    return Investigation(case, playbook=playbook, run_id=run_id, since=since, until=until, seed=seed, **thresholds)
