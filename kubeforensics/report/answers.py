"""Answers: what a playbook concluded, as facts with evidence, recorded in the case log.

A playbook cell answers one analyst question with an :class:`Answer` (a short
sentence, a dict of JSON-able facts, the event ids that show them and an
optional table).  The conclusion records every answer as an ``answer`` entry in
the case log (with the playbook, the run id and the manifest hash it was built
from) and bookmarks its first evidence event, so the report and the next
analyst see them.

>>> a = Answer("Who created the pod?", "erin created default/diag", {"user": "erin"}, ["3f2a:17"])
>>> a.facts["user"]
'erin'
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MAX_EVIDENCE = 50


@dataclass
class Answer:
    """The answer to one question: ``text`` for people, ``facts`` for machines, ``evidence`` event ids."""

    question: str
    text: str
    facts: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None

    @property
    def found(self) -> bool:
        """False when the evidence holds nothing that answers the question."""
        return bool(self.facts)

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "text": self.text, "facts": _jsonable(self.facts),
                "evidence": list(self.evidence[:MAX_EVIDENCE])}

    def __repr__(self) -> str:
        return f"{self.question}\n  {self.text}"

    def _repr_html_(self) -> str:
        esc = html.escape
        out = [f"<div class='kf-answer'><b>{esc(self.question)}</b><br>{esc(self.text)}"]
        if self.evidence:
            ids = ", ".join(f"<code>{esc(e)}</code>" for e in self.evidence[:5])
            more = f" and {len(self.evidence) - 5} more" if len(self.evidence) > 5 else ""
            out.append(f"<br><small>evidence: {ids}{more}</small>")
        if self.table is not None and not self.table.empty:
            out.append(html_table(self.table))
        out.append("</div>")
        return "".join(out)


def html_table(df: pd.DataFrame, max_rows: int = 30) -> str:
    """An escaped HTML table (attacker-controlled cells are text, never markup)."""
    shown = df.head(max_rows)
    return shown.to_html(index=False, escape=True, border=0, classes="kf-table", na_rep="") + (
        f"<small>{len(df) - max_rows:,} more rows</small>" if len(df) > max_rows else "")


class FrameView:
    """A titled table that renders escaped (never as markup) in notebooks and reports."""

    def __init__(self, df: pd.DataFrame, title: str = "", max_rows: int = 30) -> None:
        self.df, self.title, self.max_rows = df, title, max_rows

    def __repr__(self) -> str:
        return f"{self.title}\n{self.df.head(self.max_rows).to_string()}"

    def _repr_html_(self) -> str:
        head = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        return head + html_table(self.df, self.max_rows)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.isoformat().replace("+00:00", "Z")
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return str(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def record_answers(case: Any, answers: dict[str, Answer], *, playbook: str, run_id: str,
                   parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    """Append every answer to the case log (kind ``answer``) and bookmark its first evidence event.

    Parameters
    ----------
    case : Case
        The open case.
    answers : dict
        Question key -> :class:`Answer`.
    playbook, run_id : str
        Which playbook run concluded them (the report and :func:`recorded_answers` select by run).
    parameters : dict, optional
        The playbook's parameters, recorded with each answer.

    Returns
    -------
    DataFrame
        One row per answer: key, question, answer text, evidence count.
    """
    manifest_sha = case.log.last_manifest_sha()
    rows = []
    for key, a in answers.items():
        case.log.append("answer", playbook=playbook, run_id=run_id, key=key, manifest_sha256=manifest_sha,
                        parameters=_jsonable(parameters or {}), **a.to_json())
        if a.found and a.evidence:
            case.bookmark(a.evidence[0], f"{a.question} {a.text}", kind="event",
                          tags=(f"playbook:{playbook}", f"answer:{key}"))
        rows.append({"key": key, "question": a.question, "answer": a.text, "evidence": len(a.evidence)})
    return pd.DataFrame(rows, columns=["key", "question", "answer", "evidence"])


def answer_entries(case_dir: str | Path, *, run_id: str | None = None, playbook: str | None = None
                   ) -> list[dict[str, Any]]:
    """The ``answer`` log entries of one run (default: the latest run, of ``playbook`` when given)."""
    from kubeforensics.case.log import CaseLog

    entries = [e for e in CaseLog(Path(case_dir) / "log.jsonl").entries() if e.get("kind") == "answer"]
    if playbook is not None:
        entries = [e for e in entries if e.get("playbook") == playbook]
    if run_id is None and entries:
        run_id = entries[-1].get("run_id")
    return [e for e in entries if e.get("run_id") == run_id]


def recorded_answers(case_dir: str | Path, *, run_id: str | None = None, playbook: str | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Question key -> ``{"question", "text", "facts", "evidence"}`` as recorded by one playbook run."""
    return {e["key"]: {k: e.get(k) for k in ("question", "text", "facts", "evidence")}
            for e in answer_entries(case_dir, run_id=run_id, playbook=playbook)}
