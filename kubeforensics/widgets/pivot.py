"""Entity pivot: a pod, user or service account, IP, node or image → everything linked to it.

Counts per source, first and last sighting, the entities seen with it (actors,
nodes, addresses, processes, images) and its place on the case timeline.  "Filter
on it" pushes the entity into the shared filters so every other view follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from kubeforensics.widgets import html as h
from kubeforensics.widgets.data import ensure_severity_view, events_sql
from kubeforensics.widgets.filters import FilterState
from kubeforensics.widgets.static import View, show_figure
from kubeforensics.widgets.timeline import SOURCE_COLOURS

if TYPE_CHECKING:
    from kubeforensics.case import Case

KINDS = ("pod", "user", "ip", "node", "image")
LINKED = (("actor", "actor"), ("node", "node"), ("pod", "coalesce(namespace || '/' || pod, pod)"),
          ("src_ip", "src_ip"), ("dst_ip", "dst_ip"), ("process", "process"))
IMAGE_SQL = {
    "tetragon": "SELECT time, 'tetragon' AS source, namespace, pod, node, event_id FROM {processes} WHERE image = ?",
    "falco": "SELECT time, 'falco' AS source, namespace, pod, hostname AS node, event_id FROM {alerts} WHERE image = ?",
    "audit": "SELECT time, 'audit' AS source, namespace, name AS pod, pod_node_name AS node, event_id FROM {audit} "
             "WHERE list_contains(pod_images, ?)",
    "objects": "SELECT time, 'objects' AS source, namespace, name AS pod, node, event_id FROM {objects} "
               "WHERE list_contains(images, ?)",
}


def entity_filter(kind: str, value: str) -> dict[str, str]:
    """FilterState fields selecting an entity (``pod`` accepts ``namespace/name``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if kind == "pod":
        ns, _, name = value.rpartition("/")
        return {"namespace": ns, "pod": name}
    if kind == "image":
        return {}
    return {kind: value}


class PivotView(View):
    """Everything linked to one entity.  ``pivot(kind, value)`` changes it."""

    def __init__(self, case: Case, state: FilterState | None = None, kind: str = "pod", value: str = "",
                 *, bins: int = 120) -> None:
        self.case, self.state, self.bins = case, state or FilterState(), bins
        self.kind, self.value = kind, value
        ensure_severity_view(case)
        self.counts, self.linked, self.hist = self.query()

    def __repr__(self) -> str:
        return f"<PivotView {self.kind}={self.value!r}: {int(self.counts['events'].sum()) if len(self.counts) else 0} events>"

    def _entity_state(self) -> FilterState:
        state = FilterState()
        state.update(**entity_filter(self.kind, self.value))  # a fresh state: no listeners to notify
        return state

    def _relation(self, params: list[Any]) -> str:
        if self.kind == "image":
            parts = []
            for tmpl in IMAGE_SQL.values():
                parts.append(tmpl)
                params.append(self.value)
            sql = " UNION ALL ".join(parts)
            from kubeforensics.case.query import Filters

            names = {t: f"({self.case.query.relation_sql(t, Filters(), [])})"
                     for t in ("processes", "alerts", "audit", "objects")}
            return sql.format(**names)
        return events_sql(self.case, self._entity_state(), params)

    def query(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Per-source counts, linked entities, and a per-source histogram over the case extent."""
        empty = (pd.DataFrame(columns=["source", "events", "first", "last"]),
                 pd.DataFrame(columns=["kind", "value", "events"]), pd.DataFrame(columns=["source", "start", "n"]))
        if not self.value:
            return empty
        con = self.case.query.con
        params: list[Any] = []
        rel = self._relation(params)
        counts = con.execute(f"SELECT source, count(*)::BIGINT AS events, min(time) AS first, max(time) AS last "
                             f"FROM ({rel}) GROUP BY 1 ORDER BY 2 DESC", params).df()
        linked_parts = []
        cols = LINKED if self.kind != "image" else (("node", "node"), ("pod", "coalesce(namespace || '/' || pod, pod)"))
        for name, expr in cols:
            p2: list[Any] = []
            r2 = self._relation(p2)
            linked_parts.append(con.execute(
                f"SELECT '{name}' AS kind, {expr} AS value, count(*)::BIGINT AS events FROM ({r2}) "
                f"WHERE {expr} IS NOT NULL AND {expr} <> '' GROUP BY 2 ORDER BY 3 DESC LIMIT 10", p2).df())
        linked = pd.concat(linked_parts, ignore_index=True) if linked_parts else empty[1]
        lo, hi = self.case.extent()
        hist = empty[2]
        if lo is not None and hi is not None:
            width = max(1, (int(hi.value) - int(lo.value)) // self.bins + 1)
            p3: list[Any] = []
            r3 = self._relation(p3)
            hist = con.execute(f"SELECT source, ((epoch_ns(time) - {int(lo.value)}) // {width})::BIGINT AS bin, "
                               f"count(*)::BIGINT AS n FROM ({r3}) GROUP BY 1, 2 ORDER BY 1, 2", p3).df()
            hist["start"] = pd.to_datetime(int(lo.value) + hist["bin"].astype("int64") * width, utc=True)
        for c in ("first", "last"):
            counts[c] = pd.to_datetime(counts[c], utc=True)
        return counts, linked, hist

    def pivot(self, kind: str, value: str) -> None:
        """Show entity ``value`` of ``kind`` (pod, user, ip, node, image)."""
        entity_filter(kind, value)
        self.kind, self.value = kind, value
        self.counts, self.linked, self.hist = self.query()
        if self._widget is not None:
            self._sync()

    def apply(self) -> None:
        """Filter every view on this entity (images: the pods that ran it are listed instead)."""
        f = entity_filter(self.kind, self.value)
        if f:
            self.state.update(**{"namespace": "", "pod": "", "ip": "", "user": "", "node": "", **f})

    # ------------------------------------------------------------------ content
    def figure(self) -> go.Figure:
        fig = go.Figure()
        for src, part in self.hist.groupby("source"):
            fig.add_bar(x=h.plot_times(part["start"]), y=part["n"], name=h.esc(src), marker_color=SOURCE_COLOURS.get(src, "#888"),
                        hovertext=[f"{h.hover(src)}: {n:,}" for n in part["n"]], hoverinfo="text+x")
        lo, hi = self.case.extent()
        fig.update_layout(barmode="stack", height=180, margin={"l": 10, "r": 10, "t": 30, "b": 20},
                          title={"text": h.esc(f"{self.kind} {self.value} on the case timeline"), "font": {"size": 12}},
                          xaxis={"type": "date", "range": h.plot_times([lo, hi]) if lo is not None else None}, showlegend=True)
        return fig

    def summary_html(self) -> str:
        if not self.value:
            return "<div class='kf-pivot'>pick an entity</div>"
        return (f"<div class='kf-pivot'><b>{h.esc(self.kind)} {h.esc(self.value)}</b>"
                f"{h.table(self.counts, caption='events per source')}"
                f"{h.table(self.linked, caption='seen with')}</div>")

    def static(self) -> list[Any]:
        return [self.summary_html(), self.figure()]

    def _sync(self) -> None:
        self._html.value = self.summary_html()
        show_figure(self._fig_out, self.figure())

    def _build_widget(self) -> Any:
        import ipywidgets as w

        from kubeforensics.widgets.filters import distinct

        kind = w.Dropdown(options=KINDS, value=self.kind, layout=w.Layout(width="8em"))
        value = w.Combobox(value=self.value, placeholder="namespace/pod, user, IP, node or image",
                           options=[v for v in distinct(self.case, "coalesce(namespace || '/' || pod, pod)", 200)],
                           ensure_option=False, layout=w.Layout(width="24em"))
        go_btn = w.Button(description="pivot", layout=w.Layout(width="6em"))
        apply_btn = w.Button(description="filter every view on it", layout=w.Layout(width="14em"))
        self._html = w.HTML(self.summary_html())
        self._fig_out = w.Output()
        show_figure(self._fig_out, self.figure())
        go_btn.on_click(lambda _b: self.pivot(kind.value, value.value))
        apply_btn.on_click(lambda _b: self.apply())
        self._widget = w.VBox([w.HBox([kind, value, go_btn, apply_btn]), self._html, self._fig_out])
        return self._widget
