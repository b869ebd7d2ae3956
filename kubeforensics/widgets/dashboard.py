"""``investigate(case)``: the story on the left, the timeline on top, the views and details below.

Every view shares one :class:`~kubeforensics.widgets.filters.FilterState`:
zooming the timeline, clicking a story step or finding, or pivoting on an
entity narrows all of them.  Whatever is selected can be bookmarked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.widgets import html as h
from kubeforensics.widgets.bookmarks import BookmarkPanel
from kubeforensics.widgets.data import MAX_ROWS_FOR_LIVE_DETECTION, findings_for, register_severity, story_for
from kubeforensics.widgets.filters import FilterBar, FilterState
from kubeforensics.widgets.flow_map import FlowMapView
from kubeforensics.widgets.pivot import PivotView
from kubeforensics.widgets.process_tree import ProcessTreeView
from kubeforensics.widgets.static import View
from kubeforensics.widgets.table import EventTable, event_details_html
from kubeforensics.widgets.timeline import TimelineView

if TYPE_CHECKING:
    from kubeforensics.case import Case

log = logging.getLogger(__name__)
STEP_MARGIN = pd.Timedelta(minutes=2)


class Investigation(View):
    """The composed dashboard; its parts are attributes (``timeline``, ``table``, ``tree``, ``flows``,
    ``pivot``, ``bookmarks``) sharing ``state``."""

    def __init__(self, case: Case, *, findings: pd.DataFrame | None = None, story: pd.DataFrame | None = None,
                 lane_by: str = "source", color_by: str = "severity", budget: int = 5000) -> None:
        self.case = case
        self.findings = findings_for(case, findings)
        if story is None:
            big = sum(case.counts().values()) > MAX_ROWS_FOR_LIVE_DETECTION
            story = story_for(case, self.findings) if not big else story_for(_NoStory(case), self.findings)
        self.story = story
        register_severity(case, self.findings)
        self.state = FilterState()
        self.timeline = TimelineView(case, self.state, findings=self.findings, story=self.story, lane_by=lane_by,
                                     color_by=color_by, budget=budget)
        self.table = EventTable(case, self.state)
        self.tree = ProcessTreeView(case, self.state)
        self.flows = FlowMapView(case, self.state)
        self.pivot = PivotView(case, self.state)
        self.bookmarks = BookmarkPanel(case)
        self.details = ""
        self.timeline.on_select(self.show)
        self.table.on_select(lambda e: self.bookmarks.set_target(e, "event") if e else None)
        self.tree.on_select(lambda e: self.bookmarks.set_target(e, "process") if e else None)

    def __repr__(self) -> str:
        return (f"<Investigation {self.case.path}: {len(self.findings)} findings, {len(self.story)} story steps, "
                f"{self.timeline.data.total:,} events in view>")

    # ------------------------------------------------------------------ interactions
    def show(self, key: str) -> str:
        """Show details of an event id, ``finding:<rule_id>`` or ``story:<n>`` in the details pane."""
        if key.startswith("story:"):
            self.details = self.step(int(key.split(":", 1)[1]) - 1)
        elif key.startswith("finding:"):
            self.details = self.finding(key.split(":", 1)[1])
        else:
            self.details = event_details_html(self.case, key)
            self.bookmarks.set_target(key, "event")
        if self._widget is not None:
            self._details.value = self.details
        return self.details

    def step(self, n: int) -> str:
        """Focus story step ``n`` (0-based): the window around it; returns its details HTML."""
        s = self.story.iloc[n]
        t = pd.Timestamp(s["time"])
        self.state.update(since=t - STEP_MARGIN, until=t + STEP_MARGIN)
        self.bookmarks.set_target(f"story:{n + 1}", "story-step")
        ids = list(s.get("event_ids") if s.get("event_ids") is not None else [])
        items = [("time", t), ("step", s.get("title")), ("what", s.get("detail")), ("techniques", s.get("techniques")),
                 ("severity", s.get("severity")), ("why", s.get("why")), ("evidence", ids[:20])]
        return f"<div class='kf-details'><b>story step {n + 1}</b>{h.definition_list(items)}</div>"

    def finding(self, rule_id: str) -> str:
        """Focus a finding: filter on its pod and window; returns its details HTML."""
        rows = self.findings[self.findings["rule_id"].astype(str) == rule_id]
        if rows.empty:
            return f"<div class='kf-details'>no finding {h.esc(rule_id)}</div>"
        f = rows.iloc[0]
        lo, hi = pd.Timestamp(f["first_seen"]), pd.Timestamp(f["last_seen"])
        self.state.update(since=lo - STEP_MARGIN, until=hi + STEP_MARGIN,
                          namespace=f.get("namespace") or "", pod=f.get("pod") or "")
        self.bookmarks.set_target(rule_id, "finding")
        items = [(k, f.get(k)) for k in ("rule_id", "title", "severity", "techniques", "tactic", "first_seen",
                                         "last_seen", "namespace", "pod", "actor", "count", "summary")]
        return f"<div class='kf-details'><b>finding</b>{h.definition_list(items)}</div>"

    # ------------------------------------------------------------------ display
    def story_rows(self) -> list[list[str]]:
        return [[str(i + 1), h.text(r.get("time"))[11:19], h.text(r.get("severity")), h.text(r.get("title"), 60),
                 h.text(r.get("detail"), 160)] for i, r in enumerate(self.story.to_dict("records"))]

    def finding_rows(self) -> list[list[str]]:
        return [[h.text(r.get("severity")), h.text(r.get("title"), 80), h.text(r.get("pod")), h.text(r.get("count"))]
                for r in self.findings.to_dict("records")]

    def static(self) -> list[Any]:
        story = self.story.assign(step=range(1, len(self.story) + 1))
        cols = [c for c in ("step", "time", "severity", "title", "detail") if c in story.columns]
        fcols = [c for c in ("severity", "title", "namespace", "pod", "actor", "count", "first_seen", "summary")
                 if c in self.findings.columns]
        return [self.case._repr_html_() if hasattr(self.case, "_repr_html_") else h.esc(self.case),
                "<h3>Story</h3>" + h.table(story, cols), "<h3>Findings</h3>" + h.table(self.findings, fcols),
                self.timeline.static(), "<h3>Events</h3>" + self.table.static(),
                "<h3>Process tree</h3>" + self.tree.static(), *self.flows.static(),
                "<h3>Bookmarks</h3>" + self.bookmarks.static()]

    def _build_widget(self) -> Any:
        import ipywidgets as w

        from kubeforensics.widgets.rows import RowsWidget

        bar = FilterBar(self.case, self.state)
        story = RowsWidget(columns=["#", "time", "severity", "step", "what happened"], rows=self.story_rows(),
                           row_keys=[f"story:{i + 1}" for i in range(len(self.story))],
                           status=f"attack story: {len(self.story)} steps (click one to focus it)")
        findings = RowsWidget(columns=["severity", "finding", "pod", "events"], rows=self.finding_rows(),
                              row_keys=[f"finding:{r}" for r in self.findings["rule_id"].astype(str)],
                              status=f"{len(self.findings)} findings")
        story.add_class("kf-story")
        story.observe(lambda ch: self.show(ch["new"]) if ch["new"] else None, names="selected")
        findings.observe(lambda ch: self.show(ch["new"]) if ch["new"] else None, names="selected")
        self._details = w.HTML(layout=w.Layout(max_height="28em", overflow="auto"))
        self._details.add_class("kf-details-pane")
        tabs = w.Tab(children=[self.table.widget, self.tree.widget, self.flows.widget, self.pivot.widget,
                               self.bookmarks.widget])
        for i, title in enumerate(("Events", "Process tree", "Flow map", "Pivot", "Bookmarks")):
            tabs.set_title(i, title)
        left = w.VBox([story, findings], layout=w.Layout(width="32%", max_height="60em", overflow="auto"))
        right = w.VBox([self.timeline.widget, tabs, w.HTML("<b>details</b>"), self._details],
                       layout=w.Layout(width="68%"))
        head = w.HTML(f"<b>kubeforensics</b> · case <code>{h.esc(self.case.path)}</code>")
        self._widget = w.VBox([head, bar.widget, w.HBox([left, right])])
        self._bar = bar
        return self._widget


class _NoStory:
    """A stand-in case without story support (large cases: story from findings only)."""

    def __init__(self, case: Case) -> None:
        self.path = case.path

    def frames(self) -> dict[str, pd.DataFrame]:
        raise ImportError("story skipped on a large case")


def investigate(case: Case | str | Path, **kwargs: Any) -> Investigation:
    """Open the investigation dashboard on a case (a :class:`~kubeforensics.case.Case` or its directory).

    Parameters
    ----------
    case : Case or path
    **kwargs
        ``findings``, ``story``, ``lane_by``, ``color_by``, ``budget``: see :class:`Investigation`.

    Returns
    -------
    Investigation
        Displays as the live dashboard in JupyterLab, as static figures and tables elsewhere.
    """
    if isinstance(case, (str, Path)):
        from kubeforensics.case import open_case

        case = open_case(case)
    return Investigation(case, **kwargs)
