"""The shared filter state (time range, entities, sources, severity) and the filter bar widget.

Every view holds the same :class:`FilterState` and re-queries the case when it
changes; the :class:`FilterBar` is one way to change it, the timeline's zoom and
the entity pivot are others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.widgets.data import SEVERITIES

if TYPE_CHECKING:
    from kubeforensics.case import Case

SOURCES = ("audit", "tetragon", "hubble", "falco", "k8s-events")
Listener = Callable[[set[str]], None]


@dataclass
class FilterState:
    """What the analyst is looking at.  Change it with :meth:`update` so views refresh once."""

    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None
    namespace: str = ""
    pod: str = ""
    node: str = ""
    actor: str = ""
    ip: str = ""
    user: str = ""
    sources: tuple[str, ...] = ()
    min_severity: str = ""
    _listeners: list[Listener] = field(default_factory=list, repr=False, compare=False)

    def on_change(self, callback: Listener) -> None:
        """Call ``callback(changed_names)`` after every effective :meth:`update`."""
        self._listeners.append(callback)

    def update(self, **changes: Any) -> set[str]:
        """Set several filters at once; listeners run once.  Returns the names that changed."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        changed: set[str] = set()
        for k, v in changes.items():
            if k not in names:
                raise TypeError(f"unknown filter {k!r}; one of {sorted(names)}")
            if k in ("since", "until") and v is not None:
                v = _utc(v)
            elif k == "sources":
                v = tuple(v or ())
                bad = [s for s in v if s not in SOURCES]
                if bad:
                    raise ValueError(f"unknown source(s) {bad}; one of {SOURCES}")
            elif k == "min_severity":
                v = v or ""
                if v and v not in SEVERITIES:
                    raise ValueError(f"unknown severity {v!r}; one of {SEVERITIES}")
            elif k not in ("since", "until"):
                v = v or ""
            if getattr(self, k) != v:
                setattr(self, k, v)
                changed.add(k)
        if changed:
            for cb in list(self._listeners):
                cb(changed)
        return changed

    def clear(self) -> set[str]:
        """Remove every filter (the whole case)."""
        return self.update(since=None, until=None, namespace="", pod="", node="", actor="", ip="", user="",
                           sources=(), min_severity="")

    def describe(self) -> str:
        """One line: the active filters (plain text; escape before use in HTML)."""
        parts = []
        if self.since is not None or self.until is not None:
            parts.append(f"{_fmt(self.since)} → {_fmt(self.until)}")
        for k in ("namespace", "pod", "node", "actor", "ip", "user"):
            if getattr(self, k):
                parts.append(f"{k}={getattr(self, k)}")
        if self.sources:
            parts.append("sources=" + ",".join(self.sources))
        if self.min_severity:
            parts.append(f"severity≥{self.min_severity}")
        return "; ".join(parts) or "whole case"


def _utc(v: Any) -> pd.Timestamp:
    ts = pd.Timestamp(v)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _fmt(ts: pd.Timestamp | None) -> str:
    return "…" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def distinct(case: Case, column: str, limit: int = 500) -> list[str]:
    """Most frequent values of a timeline column (for filter suggestions), computed in DuckDB."""
    from kubeforensics.case.query import Filters
    from kubeforensics.timeline.unified import timeline_sql

    params: list[Any] = []
    union = timeline_sql(case, Filters(), params)
    if not union:
        return []
    df = case.query.con.execute(
        f"SELECT {column} AS v, count(*) AS n FROM ({union}) WHERE {column} IS NOT NULL AND {column} <> '' "
        f"GROUP BY 1 ORDER BY n DESC LIMIT {int(limit)}", params).df()
    return [str(v) for v in df["v"]]


class FilterBar:
    """Widgets bound to a :class:`FilterState`: range slider over the case extent, entity boxes,
    sources and minimum severity.  ``.widget`` is the ipywidgets box."""

    STEPS = 200

    def __init__(self, case: Case, state: FilterState) -> None:
        import ipywidgets as w

        self.case, self.state = case, state
        lo, hi = case.extent()
        self.extent = (lo, hi)
        self._syncing = False
        if lo is not None and hi is not None and hi > lo:
            ticks = pd.date_range(lo, hi + pd.Timedelta(1, "ns"), periods=self.STEPS + 1)
        else:
            ticks = pd.DatetimeIndex([lo or pd.Timestamp.now(tz="UTC")] * 2)
        self.ticks = ticks
        opts = [(t.strftime("%m-%d %H:%M:%S"), i) for i, t in enumerate(ticks)]
        self.range = w.SelectionRangeSlider(options=opts, index=(0, len(opts) - 1), description="time",
                                            layout=w.Layout(width="60%"), continuous_update=False)
        self.boxes = {k: w.Combobox(placeholder=k, options=distinct(case, k, 200) if k != "actor" else
                                    distinct(case, "actor", 200), ensure_option=False,
                                    layout=w.Layout(width="14em"), continuous_update=False)
                      for k in ("namespace", "pod", "node", "actor")}
        self.sources = w.SelectMultiple(options=SOURCES, value=(), rows=5, description="sources",
                                        layout=w.Layout(width="16em"))
        self.severity = w.Dropdown(options=[("any severity", "")] + [(f"≥ {s}", s) for s in SEVERITIES],
                                   value="", layout=w.Layout(width="10em"))
        self.reset = w.Button(description="reset", tooltip="clear every filter", layout=w.Layout(width="6em"))
        self.label = w.HTML()
        self.range.observe(self._on_range, names="index")
        for k, box in self.boxes.items():
            box.observe(lambda ch, k=k: self._push({k: ch["new"]}), names="value")
        self.sources.observe(lambda ch: self._push({"sources": ch["new"]}), names="value")
        self.severity.observe(lambda ch: self._push({"min_severity": ch["new"]}), names="value")
        self.reset.on_click(lambda _b: self.state.clear())
        state.on_change(self._pull)
        self.widget = w.VBox([w.HBox([self.range, self.severity, self.reset]),
                              w.HBox([*self.boxes.values(), self.sources]), self.label])
        self._pull(set())

    def _push(self, changes: dict[str, Any]) -> None:
        if not self._syncing:
            self.state.update(**changes)

    def _on_range(self, change: dict[str, Any]) -> None:
        a, b = change["new"]
        last = len(self.ticks) - 1
        self._push({"since": None if a == 0 else self.ticks[a], "until": None if b == last else self.ticks[b]})

    def _pull(self, _changed: set[str]) -> None:
        """Reflect the state (changed elsewhere, e.g. by a zoom) in the widgets."""
        import html

        self._syncing = True
        try:
            s = self.state
            a = 0 if s.since is None else int(self.ticks.searchsorted(s.since, side="right")) - 1
            b = len(self.ticks) - 1 if s.until is None else int(self.ticks.searchsorted(s.until, side="left"))
            a, b = max(0, min(a, len(self.ticks) - 1)), max(0, min(b, len(self.ticks) - 1))
            if self.range.index != (a, max(a, b)):
                self.range.index = (a, max(a, b))
            for k, box in self.boxes.items():
                if box.value != getattr(s, k):
                    box.value = getattr(s, k)
            if tuple(self.sources.value) != s.sources:
                self.sources.value = s.sources
            if self.severity.value != s.min_severity:
                self.severity.value = s.min_severity
            self.label.value = f"<small>showing: {html.escape(s.describe())}</small>"
        finally:
            self._syncing = False
