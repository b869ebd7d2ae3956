"""The event table: sortable, filterable, paginated in DuckDB (LIMIT/OFFSET), with a details pane.

Only one page of rows leaves the storage engine.  Selecting a row shows the
event's timeline fields and its raw record (redacted with
:mod:`kubeforensics.redact`) in the details pane.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from kubeforensics.widgets import html as h
from kubeforensics.widgets.data import ensure_severity_view, events_sql
from kubeforensics.widgets.filters import FilterState
from kubeforensics.widgets.static import View

if TYPE_CHECKING:
    from kubeforensics.case import Case

log = logging.getLogger(__name__)

COLUMNS = ("time", "source", "sev", "namespace", "pod", "actor", "action", "summary")
SORTABLE = frozenset(COLUMNS) | {"node", "process", "src_ip", "dst_ip", "dst_port", "verdict", "event_id"}


def event_row(case: Case, event_id: str) -> dict[str, Any] | None:
    """The unified-timeline row of one event (with its finding severity), or None."""
    ensure_severity_view(case)
    params: list[Any] = []
    rel = events_sql(case, FilterState(), params, extra="t.event_id = ?")
    params.append(event_id)
    df = case.query.con.execute(f"SELECT * FROM ({rel}) LIMIT 1", params).df()
    return None if df.empty else df.iloc[0].to_dict()


def redacted_raw(case: Case, event_id: str) -> Any:
    """The raw evidence record of an event with secrets redacted (or an explanation when unavailable)."""
    from kubeforensics import redact

    try:
        return redact.k8s_object(case.raw(event_id))
    except Exception as exc:  # noqa: BLE001 - the details pane shows why instead of failing
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def event_details_html(case: Case, event_id: str) -> str:
    """Escaped HTML: the event's fields and its redacted raw record."""
    row = event_row(case, event_id)
    if row is None:
        return f"<div class='kf-details'><b>no event</b> {h.esc(event_id)}</div>"
    raw = redacted_raw(case, event_id)
    fields = [(k, row.get(k)) for k in ("time", "source", "sev", "action", "actor", "namespace", "pod", "node",
                                         "container_id", "process", "args", "src_ip", "dst_ip", "dst_port",
                                         "verdict", "techniques", "summary", "event_id")]
    return (f"<div class='kf-details'><b>event {h.esc(event_id)}</b>{h.definition_list(fields)}"
            f"<details open><summary>raw record (redacted)</summary>"
            f"{h.pre(orjson.dumps(raw, option=orjson.OPT_INDENT_2, default=str).decode())}</details></div>")


class EventTable(View):
    """Paginated table of the filtered timeline.

    Parameters
    ----------
    case : Case
    state : FilterState, optional
    page_size : int
    sort_by : str
        A timeline column (``time`` by default); ``sort_desc`` reverses.
    """

    def __init__(self, case: Case, state: FilterState | None = None, *, page_size: int = 25,
                 sort_by: str = "time", sort_desc: bool = False) -> None:
        self.case, self.state = case, state or FilterState()
        self.page_size, self.page = page_size, 0
        self.sort_by, self.sort_desc, self.search = sort_by, sort_desc, ""
        self.selected = ""
        self._select_cbs: list[Callable[[str], None]] = []
        ensure_severity_view(case)
        self.rows, self.total = self.query()
        self.state.on_change(lambda _c: self.refresh(reset_page=True))

    def __repr__(self) -> str:
        return f"<EventTable page {self.page + 1}/{self.pages}: {self.total:,} events>"

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def query(self) -> tuple[pd.DataFrame, int]:
        """One page of rows (and the total) for the current filters, sort, search and page."""
        if self.sort_by not in SORTABLE:
            raise ValueError(f"cannot sort by {self.sort_by!r}; one of {sorted(SORTABLE)}")
        params: list[Any] = []
        extra = ""
        if self.search:
            extra = "(t.summary ILIKE ? OR t.event_id = ?)"
        rel = events_sql(self.case, self.state, params, extra=extra)
        if self.search:
            params += [f"%{self.search}%", self.search]
        con = self.case.query.con
        total = int(con.execute(f"SELECT count(*) FROM ({rel})", params).fetchall()[0][0])
        order = f"{self.sort_by} {'DESC' if self.sort_desc else 'ASC'} NULLS LAST, event_id"
        df = con.execute(f"SELECT {', '.join(COLUMNS)}, event_id FROM ({rel}) ORDER BY {order} "
                         f"LIMIT {int(self.page_size)} OFFSET {int(self.page * self.page_size)}", params).df()
        df["time"] = pd.to_datetime(df["time"], utc=True)
        return df, total

    def refresh(self, reset_page: bool = False) -> None:
        if reset_page:
            self.page = 0
        self.rows, self.total = self.query()
        self._sync()

    def goto(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped)."""
        self.page = max(0, min(page, self.pages - 1))
        self.refresh()

    def sort(self, column: str, desc: bool = False) -> None:
        self.sort_by, self.sort_desc = column, desc
        self.refresh(reset_page=True)

    def filter_text(self, text: str) -> None:
        """Keep events whose summary contains ``text`` (case-insensitive) or whose id is ``text``."""
        self.search = text
        self.refresh(reset_page=True)

    def on_select(self, callback: Callable[[str], None]) -> None:
        self._select_cbs.append(callback)

    def select(self, event_id: str) -> str:
        """Select an event: the details pane shows it; returns the details HTML."""
        self.selected = event_id
        details = event_details_html(self.case, event_id) if event_id else ""
        if self._widget is not None:
            self._details.value = details
            if self._rows.selected != event_id:
                self._rows.selected = event_id
        for cb in self._select_cbs:
            cb(event_id)
        return details

    # ------------------------------------------------------------------ display
    def cells(self) -> list[list[str]]:
        return [[h.text(v, h.MAX_CELL) for v in r] for r in self.rows[list(COLUMNS)].itertuples(index=False, name=None)]

    def static(self) -> str:
        return (f"<div class='kf-event-table'><small>{self.total:,} events · page {self.page + 1} of {self.pages} · "
                f"{h.esc(self.state.describe())}</small>"
                + h.table(self.rows, list(COLUMNS), row_ids=self.rows["event_id"]) + "</div>")

    def _status(self) -> str:
        return f"{self.total:,} events · page {self.page + 1} of {self.pages} · {self.state.describe()}"

    def _sync(self) -> None:
        if self._widget is None:
            return
        self._rows.set_trait("status", self._status())
        self._rows.row_keys = [str(k) for k in self.rows["event_id"]]
        self._rows.rows = self.cells()
        self._page.value = f"{self.page + 1} / {self.pages}"

    def _build_widget(self) -> Any:
        import ipywidgets as w

        from kubeforensics.widgets.rows import RowsWidget

        self._rows = RowsWidget(columns=list(COLUMNS), sort_by=self.sort_by, sort_desc=self.sort_desc)
        self._rows.add_class("kf-event-rows")
        self._details = w.HTML(layout=w.Layout(max_height="30em", overflow="auto"))
        self._details.add_class("kf-details-pane")
        search = w.Text(placeholder="search summaries or an event id", continuous_update=False,
                        layout=w.Layout(width="24em"))
        prev, nxt = w.Button(description="◀", layout=w.Layout(width="3em")), w.Button(description="▶",
                                                                                    layout=w.Layout(width="3em"))
        self._page = w.Label()
        search.observe(lambda ch: self.filter_text(ch["new"]), names="value")
        prev.on_click(lambda _b: self.goto(self.page - 1))
        nxt.on_click(lambda _b: self.goto(self.page + 1))
        self._rows.observe(lambda ch: self.select(ch["new"]) if ch["new"] != self.selected else None, names="selected")
        self._rows.observe(self._on_sort, names=["sort_by", "sort_desc"])
        box = w.VBox([w.HBox([search, prev, self._page, nxt]), self._rows, self._details])
        self._widget = box
        self._sync()
        return box

    def _on_sort(self, _change: dict[str, Any]) -> None:
        col = self._rows.sort_by
        if col in SORTABLE and (col, self._rows.sort_desc) != (self.sort_by, self.sort_desc):
            self.sort(col, self._rows.sort_desc)
