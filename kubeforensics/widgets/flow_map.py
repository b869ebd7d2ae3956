"""The flow map: pods, services, nodes and the world as a Sankey of aggregated Hubble flows.

Edges carry verdict, count, ports and DNS names (from the ``dns_query``/``dns_ips``
the case saw); external endpoints (public addresses) stand out in red, dropped
edges are drawn red.  Select an edge in the edge list to see its flows.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from kubeforensics.widgets import html as h
from kubeforensics.widgets.filters import FilterState
from kubeforensics.widgets.static import View, show_figure

if TYPE_CHECKING:
    from kubeforensics.case import Case

_HOST = "(list_contains({l}, 'reserved:host') OR list_contains({l}, 'reserved:remote-node'))"
SRC = ("CASE WHEN coalesce(src_pod, '') <> '' THEN 'pod ' || coalesce(src_namespace || '/', '') || src_pod "
       f"WHEN {_HOST.format(l='src_labels')} THEN 'node ' || coalesce(node, src_ip) "
       "ELSE 'ip ' || coalesce(src_ip, '?') END")
DST = ("CASE WHEN coalesce(dst_pod, '') <> '' THEN 'pod ' || coalesce(dst_namespace || '/', '') || dst_pod "
       "WHEN coalesce(dst_service, '') <> '' THEN 'svc ' || dst_service "
       f"WHEN {_HOST.format(l='dst_labels')} THEN 'node ' || coalesce(node, dst_ip) "
       "ELSE 'ip ' || coalesce(dst_ip, '?') END")
EDGE_COLUMNS = ("src", "dst", "verdict", "count", "ports", "names", "first", "last")


INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "0.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128"))


def is_external(label: str) -> bool:
    """True for an endpoint label naming an address outside the private, loopback and link-local ranges
    (documentation ranges such as 203.0.113.0/24 count as external: samples use them for the internet)."""
    if not label.startswith("ip "):
        return False
    try:
        ip = ipaddress.ip_address(label[3:].split(" ")[0])
    except ValueError:
        return False
    return not any(ip.version == n.version and ip in n for n in INTERNAL)


class FlowMapView(View):
    """Aggregated flows for the shared filters.

    Parameters
    ----------
    case : Case
    state : FilterState, optional
    max_edges : int
        The busiest edges drawn (external and dropped edges first).
    """

    def __init__(self, case: Case, state: FilterState | None = None, *, max_edges: int = 60) -> None:
        self.case, self.state, self.max_edges = case, state or FilterState(), max_edges
        self.selected = ""
        self.edges = self.query()
        self.state.on_change(lambda _c: self.refresh())

    def __repr__(self) -> str:
        return f"<FlowMapView {len(self.edges)} edges>"

    def _rel(self, params: list[Any]) -> str:
        from kubeforensics.case.query import Filters

        s = self.state
        f = Filters(since=s.since, until=s.until, namespace=s.namespace or None, pod=s.pod or None,
                    node=s.node or None, ip=s.ip or None)
        return self.case.query.relation_sql("flows", f, params)

    def query(self) -> pd.DataFrame:
        """One row per (source, destination, verdict): count, ports, DNS names, first and last time."""
        if "hubble" not in (self.state.sources or ("hubble",)):
            return pd.DataFrame(columns=[*EDGE_COLUMNS, "external"])
        params: list[Any] = []
        rel = self._rel(params)
        dns = (f"SELECT ip, string_agg(DISTINCT rtrim(dns_query, '.'), ', ') AS names FROM "
               f"(SELECT unnest(dns_ips) AS ip, dns_query FROM {self.case.query.source('flows')} "
               f"WHERE dns_query IS NOT NULL) GROUP BY ip")
        sql = (f"WITH f AS ({rel}), d AS ({dns}) "
               f"SELECT {SRC} AS src, {DST} AS dst, coalesce(verdict, '?') AS verdict, count(*)::BIGINT AS count, "
               f"list_sort(list_distinct(list(dst_port)))[1:8] AS ports, "
               f"coalesce(any_value(list_first(dst_names)), any_value(d.names), any_value(dns_query)) AS names, "
               f"min(time) AS first, max(time) AS last "
               f"FROM f LEFT JOIN d ON d.ip = f.dst_ip GROUP BY 1, 2, 3")
        e = self.case.query.con.execute(sql, params).df()
        if e.empty:
            return pd.DataFrame(columns=[*EDGE_COLUMNS, "external"])
        e["external"] = e["src"].map(is_external) | e["dst"].map(is_external)
        e["ports"] = e["ports"].map(lambda v: ", ".join(str(int(p)) for p in (v if v is not None else []) if pd.notna(p)))
        e["first"] = pd.to_datetime(e["first"], utc=True)
        e["last"] = pd.to_datetime(e["last"], utc=True)
        e["_rank"] = e["external"].astype(int) * 2 + (e["verdict"] != "FORWARDED").astype(int)
        e = e.sort_values(["_rank", "count"], ascending=False).head(self.max_edges).drop(columns="_rank")
        return e.reset_index(drop=True)

    def refresh(self) -> None:
        self.edges = self.query()
        if self._widget is not None:
            show_figure(self._fig_out, self.figure())
            self._rows.row_keys = [str(i) for i in range(len(self.edges))]
            self._rows.rows = self.cells()

    # ------------------------------------------------------------------ content
    def figure(self) -> go.Figure:
        e = self.edges
        labels = list(dict.fromkeys([*e["src"], *e["dst"]]))
        idx = {l: i for i, l in enumerate(labels)}

        def node_colour(l: str) -> str:
            return "#d32f2f" if is_external(l) else "#1976d2" if l.startswith("pod ") else \
                "#616161" if l.startswith("node ") else "#7b1fa2" if l.startswith("svc ") else "#9e9e9e"

        names = {r.dst: r.names for r in e.itertuples() if isinstance(r.names, str) and r.names}
        disp = [h.hover(f"{l} ({names[l]})" if l in names and l.startswith("ip ") else l, 80) for l in labels]
        link_colour = ["rgba(211,47,47,0.55)" if v != "FORWARDED" else
                       "rgba(239,108,0,0.45)" if x else "rgba(120,144,156,0.35)" for v, x in zip(e["verdict"], e["external"])]
        fig = go.Figure(go.Sankey(
            arrangement="snap",
            node={"label": disp, "color": [node_colour(l) for l in labels], "pad": 12, "thickness": 14,
                  "hovertemplate": "%{label}<extra></extra>"},
            link={"source": [idx[s] for s in e["src"]], "target": [idx[d] for d in e["dst"]],
                  "value": e["count"].tolist(), "color": link_colour,
                  "customdata": [h.hover(f"{v} · {c:,} flows · ports {p} {n or ''}") for v, c, p, n in
                                 zip(e["verdict"], e["count"], e["ports"], e["names"])],
                  "hovertemplate": "%{customdata}<extra></extra>"}))
        fig.update_layout(title={"text": h.esc(f"{int(e['count'].sum()) if len(e) else 0:,} flows in "
                                               f"{len(e)} edges · {self.state.describe()}"), "font": {"size": 13}},
                          height=max(300, min(900, 22 * len(labels))), margin={"l": 10, "r": 10, "t": 36, "b": 10})
        return fig

    def cells(self) -> list[list[str]]:
        e = self.edges
        return [[("⚠ " if x else "") + h.text(s), h.text(d) + (f" ({n})" if isinstance(n, str) and n else ""), v,
                 f"{c:,}", p, h.text(f)] for s, d, v, c, p, n, f, x in
                zip(e["src"], e["dst"], e["verdict"], e["count"], e["ports"], e["names"], e["first"], e["external"])]

    def flows(self, edge: int, limit: int = 200) -> pd.DataFrame:
        """The flows behind edge number ``edge`` of :attr:`edges`."""
        r = self.edges.iloc[int(edge)]
        params: list[Any] = []
        rel = self._rel(params)
        params += [r["src"], r["dst"], r["verdict"]]
        return self.case.query.con.execute(
            f"SELECT time, src_ip, src_port, dst_ip, dst_port, protocol, verdict, drop_reason, dns_query, "
            f"http_method, http_url, event_id FROM ({rel}) WHERE {SRC} = ? AND {DST} = ? AND coalesce(verdict, '?') = ? "
            f"ORDER BY time LIMIT {int(limit)}", params).df()

    def select(self, edge: str) -> str:
        self.selected = edge
        if edge == "":
            return ""
        r = self.edges.iloc[int(edge)]
        out = (f"<div class='kf-details'><b>{h.esc(r['src'])} → {h.esc(r['dst'])}</b> {h.esc(r['verdict'])} · "
               f"{int(r['count']):,} flows{h.table(self.flows(int(edge)))}</div>")
        if self._widget is not None:
            self._details.value = out
        return out

    def static(self) -> list[Any]:
        e = self.edges
        return [self.figure(), h.table(e.assign(external=e["external"].map({True: "external", False: ""})),
                                       [*EDGE_COLUMNS, "external"])]

    def _build_widget(self) -> Any:
        import ipywidgets as w

        from kubeforensics.widgets.rows import RowsWidget

        self._fig_out = w.Output()
        show_figure(self._fig_out, self.figure())
        self._rows = RowsWidget(columns=["source", "destination", "verdict", "flows", "ports", "first seen"],
                                row_keys=[str(i) for i in range(len(self.edges))], rows=self.cells(),
                                status="edges (external and dropped first); click one for its flows")
        self._details = w.HTML(layout=w.Layout(max_height="24em", overflow="auto"))
        self._rows.observe(lambda ch: self.select(ch["new"]), names="selected")
        self._widget = w.VBox([self._fig_out, self._rows, self._details])
        return self._widget
