"""The fixed sections of every report: answers, bookmarks, story, findings, indicators, evidence manifest.

The story and the indicators of a run are read from what the playbook's
conclusion saved (``CASE/derived/runs/<run_id>/``); when absent they are
computed from the case.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from kubeforensics.report.answers import answer_entries, html_table

log = logging.getLogger(__name__)


def run_dir(case: Any, run_id: str) -> Path:
    """Where a playbook run keeps its story and indicators (a cache, dropped when evidence is added)."""
    return Path(case.path) / "derived" / "runs" / run_id


def save_run(case: Any, run_id: str, story: Any, indicators: pd.DataFrame) -> Path:
    d = run_dir(case, run_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "story.json").write_bytes(orjson.dumps(story.to_json()))
    indicators.to_json(d / "indicators.json", orient="records", date_format="iso")
    return d


def md(text: Any) -> str:
    """Escape text for a Markdown table cell or line (and the HTML it may become)."""
    s = " ".join(str(text if text is not None else "").split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([`*_\[\]|\\])", r"\\\1", s)


def md_table(df: pd.DataFrame, max_rows: int = 200) -> str:
    if df.empty:
        return "_none_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(md(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in df.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(md(_cell(v)) for v in r) + " |")
    if len(df) > max_rows:
        lines.append(f"\n{len(df) - max_rows} more rows")
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return str(v)


class Sections:
    """Collects the fixed report sections of one case and run."""

    def __init__(self, case: Any, *, playbook: str, run_id: str | None = None) -> None:
        self.case = case
        self.entries = answer_entries(case.path, run_id=run_id, playbook=playbook)
        self.run_id = run_id or (self.entries[0]["run_id"] if self.entries else None)
        self.manifest_sha = case.log.last_manifest_sha()
        self._findings: pd.DataFrame | None = None

    # ------------------------------------------------------------------ data
    def answers(self) -> pd.DataFrame:
        return pd.DataFrame([{"question": e.get("question", ""), "answer": e.get("text", ""),
                              "evidence": ", ".join((e.get("evidence") or [])[:3])} for e in self.entries],
                            columns=["question", "answer", "evidence"])

    def findings(self) -> pd.DataFrame:
        if self._findings is None:
            f = self.case.findings()
            sev = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
            f = f.assign(_s=f["severity"].astype(str).map(sev)).sort_values(["_s", "first_seen"])
            self._findings = f.drop(columns="_s")
        return self._findings

    def story(self) -> list[dict[str, Any]]:
        p = run_dir(self.case, self.run_id) / "story.json" if self.run_id else None
        if p is not None and p.is_file():
            return orjson.loads(p.read_bytes())["steps"]
        return self.case.story(findings=self.findings()).to_json()["steps"]

    def indicators(self) -> pd.DataFrame:
        p = run_dir(self.case, self.run_id) / "indicators.json" if self.run_id else None
        if p is not None and p.is_file():
            return pd.read_json(p, orient="records")
        from kubeforensics.case.store import SOURCE_TABLES
        from kubeforensics.report.indicators import indicators

        f = self.findings()
        ids = sorted({str(e) for lst in f["event_ids"] for e in lst})
        return indicators({t: self.case.query.rows(t, ids) for t in SOURCE_TABLES}, f)

    def bookmarks(self) -> pd.DataFrame:
        b = self.case.bookmarks()
        return b[["time", "target_kind", "target", "note", "tags"]]

    def manifest(self) -> pd.DataFrame:
        ev = self.case.manifest.get("evidence", [])
        return pd.DataFrame([{"file": e.get("path", ""), "stored_as": e.get("stored_as", ""),
                              "sha256": e.get("sha256", ""), "size": e.get("size", 0),
                              "format": e.get("format") or "", "records": e.get("records", 0),
                              "quarantined": e.get("quarantined", 0), "collected": e.get("collected", "")}
                             for e in ev], columns=["file", "stored_as", "sha256", "size", "format", "records",
                                                    "quarantined", "collected"])

    # ------------------------------------------------------------------ views
    def _findings_view(self) -> pd.DataFrame:
        f = self.findings()
        return pd.DataFrame({"severity": f["severity"].astype(str), "rule": f["rule_id"],
                             "ATT&CK": f["techniques"].map(lambda v: ", ".join(v) if v is not None else ""),
                             "tactic": f["tactic"], "first seen": f["first_seen"],
                             "where": (f["namespace"].fillna("") + "/" + f["pod"].fillna("")).str.strip("/"),
                             "actor": f["actor"], "count": f["count"], "summary": f["summary"]})

    def _story_view(self) -> pd.DataFrame:
        steps = self.story()
        return pd.DataFrame([{"time": s["time"].replace("T", " ")[:19], "tactic": s["tactic"],
                              "ATT&CK": ", ".join(s["techniques"]),
                              "where": "/".join(x for x in (s["namespace"], s["pod"]) if x),
                              "actor": s["actor"], "process": s["process"], "destination": s["dst_ip"],
                              "summary": s["summary"]} for s in steps],
                            columns=["time", "tactic", "ATT&CK", "where", "actor", "process", "destination",
                                     "summary"])

    def parts(self) -> list[tuple[str, str, pd.DataFrame]]:
        return [
            ("answers", "Answers of this run", self.answers()),
            ("bookmarks", "Bookmarks", self.bookmarks()),
            ("story", "Attack story", self._story_view()),
            ("findings", "Findings (MITRE ATT&CK)", self._findings_view()),
            ("indicators", "Indicators", self.indicators()),
            ("manifest", "Evidence manifest", self.manifest()),
        ]

    def html(self) -> str:
        esc = html.escape
        out = []
        for key, title, df in self.parts():
            out.append(f"<section id='kf-{key}'><h2>{esc(title)}</h2>")
            if key == "manifest":
                out.append(f"<p>manifest.json sha256 <code>{esc(self.manifest_sha or 'unknown')}</code> "
                           f"(recorded in the case log; <code>kubeforensics verify</code> re-checks it)</p>")
            out.append(html_table(df, max_rows=500) if not df.empty else "<p><i>none</i></p>")
            out.append("</section>")
        return "\n".join(out)

    def markdown(self) -> str:
        out = []
        for key, title, df in self.parts():
            out += [f"## {title}", ""]
            if key == "manifest":
                out += [f"manifest.json sha256 `{self.manifest_sha or 'unknown'}`", ""]
            out += [md_table(df), ""]
        return "\n".join(out)
