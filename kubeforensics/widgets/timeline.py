"""Timeline swimlanes: one lane per source or entity, coloured by severity or source.

At any zoom level the view asks DuckDB for a per-lane histogram of the window
first.  When the window holds at most ``budget`` events they are drawn one by
one (click one for its details); otherwise the lanes become a density heat map
(click a cell to zoom into it) with the notable events (medium severity and
above) still drawn as points.  Findings and story steps are overlaid on lanes
of their own.  Zooming or panning in the live figure updates the shared
:class:`~kubeforensics.widgets.filters.FilterState`, which re-queries every view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from kubeforensics.widgets import html as h
from kubeforensics.widgets.data import (
    SEV_RANK,
    SEVERITIES,
    ensure_severity_view,
    events_sql,
    register_severity,
)
from kubeforensics.widgets.filters import FilterState
from kubeforensics.widgets.static import View

if TYPE_CHECKING:
    from kubeforensics.case import Case

log = logging.getLogger(__name__)

LANE_SQL = {
    "source": "source",
    "pod": "coalesce(namespace || '/' || pod, 'node ' || node, '(cluster)')",
    "namespace": "coalesce(namespace, '(cluster)')",
    "node": "coalesce(node, '(no node)')",
    "actor": "coalesce(nullif(actor, ''), '(none)')",
}
SEV_COLOURS = {"": "#9e9e9e", "info": "#78909c", "low": "#fbc02d", "medium": "#fb8c00", "high": "#e53935",
               "critical": "#7f0000"}
SOURCE_COLOURS = {"audit": "#1f77b4", "tetragon": "#2ca02c", "hubble": "#17becf", "falco": "#d62728",
                  "k8s-events": "#9467bd"}
FINDINGS_LANE, STORY_LANE, OTHER_LANE = "▲ findings", "★ story", "(other lanes)"


def lane_label(lane: str) -> str:
    """A lane name as a y-axis category: escaped (plotly renders tags in tick labels and hover)."""
    return h.esc(lane, 80)


@dataclass
class TimelineData:
    """What one refresh computed: the window, the mode and the frames drawn."""

    since: pd.Timestamp | None
    until: pd.Timestamp | None
    mode: str  # "events", "density" or "empty"
    total: int
    events: pd.DataFrame  # time, lane, source, sev, summary, event_id (points drawn)
    density: pd.DataFrame  # lane, start, end, n, top (heat map cells)
    lanes: list[str]


class TimelineView(View):
    """Swimlane timeline over a case.

    Parameters
    ----------
    case : Case
    state : FilterState, optional
        Shared filters (a new one when omitted).
    findings, story : DataFrame, optional
        Overlaid on lanes of their own (see :mod:`kubeforensics.widgets.data`).
    lane_by : {"source", "pod", "namespace", "node", "actor"}
    color_by : {"severity", "source"}
    budget : int
        Most individual points drawn; above it lanes show density.
    bins : int
        Histogram bins across the window in density mode.
    max_lanes : int
        Lanes beyond the busiest ``max_lanes`` are merged into one.
    """

    def __init__(self, case: Case, state: FilterState | None = None, *, findings: pd.DataFrame | None = None,
                 story: pd.DataFrame | None = None, lane_by: str = "source", color_by: str = "severity",
                 budget: int = 5000, bins: int = 240, max_lanes: int = 25) -> None:
        if lane_by not in LANE_SQL:
            raise ValueError(f"lane_by must be one of {sorted(LANE_SQL)}, not {lane_by!r}")
        if color_by not in ("severity", "source"):
            raise ValueError(f"color_by must be 'severity' or 'source', not {color_by!r}")
        self.case, self.state = case, state or FilterState()
        self.findings, self.story = findings, story
        self.lane_by, self.color_by = lane_by, color_by
        self.budget, self.bins, self.max_lanes = budget, bins, max_lanes
        self._select_cbs: list[Callable[[str], object]] = []  # return values are ignored
        self._syncing = False
        self.extent = case.extent()
        if findings is not None:
            register_severity(case, findings)
        else:
            ensure_severity_view(case)
        self.data = self.query()
        self.state.on_change(self._on_state)

    def __repr__(self) -> str:
        d = self.data
        return f"<TimelineView {d.mode}: {d.total:,} events, {len(d.events):,} points, {len(d.lanes)} lanes>"

    # ------------------------------------------------------------------ querying
    def window(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        lo, hi = self.extent
        s, u = self.state.since, self.state.until
        return (s if s is not None else lo, u if u is not None else (hi + pd.Timedelta(1, "us") if hi is not None else None))

    def query(self) -> TimelineData:
        """Re-query the case for the current filters (histogram first, then points if they fit)."""
        lo, hi = self.window()
        if lo is None or hi is None or hi <= lo:
            return TimelineData(lo, hi, "empty", 0, _empty_events(), _empty_density(), [])
        con = self.case.query.con
        lane = LANE_SQL[self.lane_by]
        params: list[Any] = []
        rel = events_sql(self.case, self.state, params, since=lo, until=hi)
        lo_ns, width = int(lo.value), max(1, (int(hi.value) - int(lo.value)) // self.bins + 1)
        sql = (
            f"WITH d AS (SELECT {lane} AS lane, ((epoch_ns(time) - {lo_ns}) // {width})::BIGINT AS bin, "
            f"count(*) AS n, max(sev_rank) AS top FROM ({rel}) GROUP BY 1, 2), "
            f"t AS (SELECT lane FROM d GROUP BY lane ORDER BY sum(n) DESC, lane LIMIT {int(self.max_lanes)}) "
            f"SELECT CASE WHEN lane IN (SELECT lane FROM t) THEN lane ELSE '{OTHER_LANE}' END AS lane, bin, "
            f"sum(n)::BIGINT AS n, max(top) AS top FROM d GROUP BY 1, 2 ORDER BY 1, 2")
        dens = con.execute(sql, params).df()
        total = int(dens["n"].sum()) if len(dens) else 0
        order = dens.groupby("lane")["n"].sum().sort_values(ascending=True).index.tolist() if len(dens) else []
        top_lanes = set(order)
        dens["start"] = pd.to_datetime(lo_ns + dens["bin"].astype("int64") * width, utc=True)
        dens["end"] = dens["start"] + pd.Timedelta(width, "ns")
        if total == 0:
            return TimelineData(lo, hi, "empty", 0, _empty_events(), _empty_density(), [])
        extra = "" if total <= self.budget else "sev_rank >= 2"
        params = []
        rel = events_sql(self.case, self.state, params, since=lo, until=hi, extra=extra)
        ev = con.execute(
            f"SELECT time, {lane} AS lane, source, sev, summary, event_id FROM ({rel}) "
            f"ORDER BY time, event_id LIMIT {int(self.budget)}", params).df()
        ev["time"] = pd.to_datetime(ev["time"], utc=True)
        ev["lane"] = ev["lane"].where(ev["lane"].isin(top_lanes), OTHER_LANE)
        ev["sev"] = ev["sev"].fillna("")
        mode = "events" if total <= self.budget else "density"
        return TimelineData(lo, hi, mode, total, ev.reset_index(drop=True),
                            dens[["lane", "start", "end", "n", "top"]] if mode == "density" else _empty_density(),
                            order)

    # ------------------------------------------------------------------ drawing
    def static(self) -> go.Figure:
        """The current view as a plain plotly figure (no widget state, same content)."""
        return self.figure()

    def figure(self) -> go.Figure:
        d = self.data
        traces: list[Any] = []
        lanes = list(d.lanes)
        if d.mode == "density":
            # heat maps need 2-D z and hover text (1-D hover text breaks plotly.js)
            dens = d.density
            grid = dens.pivot_table(index="lane", columns="start", values="n", aggfunc="sum", fill_value=0)
            grid = grid.reindex([lane for lane in lanes if lane in grid.index])
            width = (dens["end"] - dens["start"]).iloc[0]
            mids = pd.DatetimeIndex(grid.columns) + width / 2
            counts = grid.to_numpy()
            import numpy as np

            z = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 0.3, np.nan)
            # counts go in customdata: 2-D hovertext breaks plotly.js when the axis has more categories
            traces.append(go.Heatmap(
                x=h.plot_times(mids), y=[lane_label(lane) for lane in grid.index], z=z.tolist(),
                customdata=counts.tolist(), colorscale="Blues", showscale=False, name="density",
                hovertemplate="%{y}: %{customdata:,} events<br>%{x}<extra></extra>", xgap=0, ygap=2, zmin=0))
        ev = d.events
        key = "sev" if self.color_by == "severity" else "source"
        groups = SEVERITIES[::-1] + ("",) if key == "sev" else tuple(SOURCE_COLOURS)
        for g in groups:
            part = ev[ev[key] == g]
            if part.empty:
                continue
            colour = SEV_COLOURS.get(g) if key == "sev" else SOURCE_COLOURS.get(g)
            traces.append(go.Scatter(
                x=h.plot_times(part["time"]), y=[lane_label(lane) for lane in part["lane"]], mode="markers", name=g or "no severity",
                marker={"color": colour, "size": 8 if g else 6, "line": {"width": 0}},
                customdata=part["event_id"].to_numpy(),
                hovertext=[h.hover(s) for s in part["summary"]], hoverinfo="text+x"))
        extra_lanes = self._overlays(traces)
        if d.mode == "density" and extra_lanes:
            # a heat map must cover every category of its axis, or plotly.js fails on hover data
            hm = traces[0]
            cols = len(hm.x)
            hm.y = [*hm.y, *(lane_label(lane) for lane in extra_lanes)]
            hm.z = [*hm.z, *([[None] * cols] * len(extra_lanes))]
            hm.customdata = [*hm.customdata, *([[0] * cols] * len(extra_lanes))]
        fig = go.Figure(traces)
        title = f"{d.total:,} events · " + ("individual events" if d.mode == "events" else
                                            f"density per lane ({len(ev):,} notable events drawn)"
                                            if d.mode == "density" else "nothing in this window")
        fig.update_layout(
            title={"text": h.esc(title), "font": {"size": 13}}, height=max(260, 40 + 26 * (len(lanes) + len(extra_lanes))),
            margin={"l": 10, "r": 10, "t": 36, "b": 30}, hovermode="closest", dragmode="zoom",
            legend={"orientation": "h", "y": -0.15}, uirevision="kf-timeline",
            xaxis={"type": "date", "range": h.plot_times([d.since, d.until]) if d.since is not None else None},
            yaxis={"type": "category", "categoryorder": "array", "categoryarray": [lane_label(lane) for lane in lanes + extra_lanes],
                   "fixedrange": True, "automargin": True})
        return fig

    def _overlays(self, traces: list[Any]) -> list[str]:
        lanes: list[str] = []
        d = self.data
        f = self.findings
        if f is not None and len(f) and d.since is not None:
            fs = pd.to_datetime(f["first_seen"], utc=True)
            ff = f[(fs >= d.since) & (fs < d.until)]
            if len(ff):
                lanes.append(FINDINGS_LANE)
                sev = ff["severity"].astype(str)
                traces.append(go.Scatter(
                    x=h.plot_times(ff["first_seen"]), y=[FINDINGS_LANE] * len(ff), mode="markers",
                    name="findings", marker={"symbol": "triangle-up", "size": 12,
                                             "color": [SEV_COLOURS.get(s, "#000") for s in sev]},
                    customdata=[f"finding:{r}" for r in ff["rule_id"].astype(str)],
                    hovertext=[f"{h.hover(s)} · {h.hover(t)}<br>{h.hover(m)}" for s, t, m in
                               zip(sev, ff["title"], ff["summary"])], hoverinfo="text+x"))
        s = self.story
        if s is not None and len(s) and d.since is not None:
            st = pd.to_datetime(s["time"], utc=True)
            ss = s[(st >= d.since) & (st < d.until)]
            if len(ss):
                lanes.append(STORY_LANE)
                traces.append(go.Scatter(
                    x=h.plot_times(ss["time"]), y=[STORY_LANE] * len(ss), mode="markers+text",
                    name="story", text=[str(i + 1) for i in ss.index], textposition="top center",
                    marker={"symbol": "star", "size": 13, "color": "#37474f"},
                    customdata=[f"story:{i + 1}" for i in ss.index],
                    hovertext=[f"{i + 1}. {h.hover(t)}<br>{h.hover(x)}" for i, t, x in
                               zip(ss.index, ss["title"], ss["detail"])], hoverinfo="text+x"))
        return lanes

    # ------------------------------------------------------------------ live widget
    def _build_widget(self) -> Any:
        fw = go.FigureWidget(self.figure())
        self._bind(fw)
        return fw

    def _bind(self, fw: Any) -> None:
        fw.layout.on_change(self._on_relayout, "xaxis.range")
        for tr in fw.data:
            tr.on_click(self._on_click)

    def _on_relayout(self, _layout: Any, xrange: Any) -> None:
        if self._syncing or not xrange or xrange[0] is None:
            return
        self.zoom(xrange[0], xrange[1])

    def zoom(self, start: Any, end: Any) -> None:
        """Show ``[start, end)`` (what a zoom or pan in the figure does): every view re-queries."""
        lo, hi = self.extent
        s, e = pd.Timestamp(start), pd.Timestamp(end)
        s = s.tz_localize("UTC") if s.tzinfo is None else s
        e = e.tz_localize("UTC") if e.tzinfo is None else e
        full = lo is not None and hi is not None and s <= lo and e > hi
        cur_s, cur_e = self.window()
        tol = pd.Timedelta(1, "ms")  # plotly echoes ranges rounded to the millisecond
        if cur_s is not None and cur_e is not None and abs(s - cur_s) < tol and abs(e - cur_e) < tol:
            return
        self.state.update(since=None if full else s, until=None if full else e)

    def on_select(self, callback: Callable[[str], object]) -> None:
        """Call ``callback(event_id)`` when a point is clicked (``finding:<rule>``/``story:<n>`` for overlays)."""
        self._select_cbs.append(callback)

    def select(self, key: str) -> None:
        for cb in self._select_cbs:
            cb(key)

    def _on_click(self, trace: Any, points: Any, _state: Any) -> None:
        if not points.point_inds:
            return
        i = points.point_inds[0]
        if getattr(trace, "type", "") == "heatmap":
            row = self.data.density
            x = pd.Timestamp(points.xs[0])
            x = x.tz_localize("UTC") if x.tzinfo is None else x
            cell = row[(row["start"] <= x) & (row["end"] > x)]
            if len(cell):
                self.state.update(since=cell["start"].iloc[0], until=cell["end"].iloc[0])
            return
        cd = trace.customdata
        if cd is not None and i < len(cd):
            self.select(str(cd[i]))

    def _on_state(self, _changed: set[str]) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-query and redraw (the live figure is updated in place)."""
        self.data = self.query()
        if self._widget is None:
            return
        new = self.figure()
        fw = self._widget
        self._syncing = True
        try:
            with fw.batch_update():
                fw.data = ()
                fw.add_traces(list(new.data))
                fw.layout = new.layout
            for tr in fw.data:
                tr.on_click(self._on_click)
        finally:
            self._syncing = False


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "lane": [], "source": [], "sev": [],
                         "summary": [], "event_id": []})


def _empty_density() -> pd.DataFrame:
    return pd.DataFrame({"lane": [], "start": pd.Series([], dtype="datetime64[ns, UTC]"),
                         "end": pd.Series([], dtype="datetime64[ns, UTC]"), "n": [], "top": []})


__all__ = ["SEV_RANK", "TimelineData", "TimelineView"]
