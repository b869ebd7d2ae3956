"""The state a playbook works on: the case, its tables in the window, findings, story and answers.

>>> inv = start("cases/incident-42", playbook="triage")       # doctest: +SKIP
>>> inv.ask("pod_creation", escape.pod_creation(inv))        # doctest: +SKIP
>>> inv.conclude()                                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import uuid
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
