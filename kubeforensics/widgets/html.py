"""Escaping helpers: every attacker-controlled string goes through these before it becomes HTML.

Pod names, process arguments, URLs, user agents and labels come from the
evidence, i.e. from the attacker.  Plotly renders a subset of HTML in hover
text and annotations, and ipywidgets ``HTML`` renders everything, so both get
escaped text only.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

#: Longest text shown in a hover label or table cell (the full value is in the details pane).
MAX_CELL = 300


def text(value: Any, limit: int | None = None) -> str:
    """Plain text for a value: ``""`` for missing values, lists joined, optionally truncated."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(text(v) for v in value)
    elif hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
        return text(value, limit)
    else:
        try:
            if pd.isna(value):
                return ""
        except (TypeError, ValueError):
            pass
    if isinstance(value, pd.Timestamp):
        s = value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    else:
        s = str(value)
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def esc(value: Any, limit: int | None = None) -> str:
    """HTML-escaped text of ``value`` (quotes included), optionally truncated first."""
    return html.escape(text(value, limit), quote=True)


def hover(value: Any, limit: int = MAX_CELL) -> str:
    """Escaped text for plotly ``hovertext``/``text`` (plotly renders tags such as ``<img>``)."""
    return esc(value, limit)


def table(frame: pd.DataFrame, columns: Sequence[str] | None = None, *, limit: int = MAX_CELL,
          caption: str = "", row_ids: Iterable[str] | None = None) -> str:
    """An HTML table of ``frame`` with every header and cell escaped."""
    cols = list(columns or frame.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    ids = list(row_ids) if row_ids is not None else None
    body = []
    for n, row in enumerate(frame[cols].itertuples(index=False, name=None)):
        rid = f" data-id='{esc(ids[n])}'" if ids is not None else ""
        body.append(f"<tr{rid}>" + "".join(f"<td>{esc(v, limit)}</td>" for v in row) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f"<table class='kf-table'>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def definition_list(items: Iterable[tuple[str, Any]], limit: int | None = 2000) -> str:
    """``<dl>`` of label/value pairs, both escaped; empty values are skipped."""
    parts = [f"<dt>{esc(k)}</dt><dd>{esc(v, limit)}</dd>" for k, v in items if text(v) != ""]
    return "<dl class='kf-dl'>" + "".join(parts) + "</dl>"


def pre(value: Any) -> str:
    """Escaped preformatted text (raw records, JSON)."""
    return f"<pre class='kf-pre'>{esc(value)}</pre>"


STYLE = """<style>
.kf-table{border-collapse:collapse;font-size:12px}
.kf-table th,.kf-table td{border-bottom:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
.kf-dl dt{font-weight:bold;float:left;clear:left;width:9em}.kf-dl dd{margin-left:9.5em}
.kf-pre{max-height:24em;overflow:auto;font-size:11px;white-space:pre-wrap}
.kf-flag{border-radius:3px;padding:0 4px;margin-left:4px;font-size:10px;color:#fff}
.kf-host{background:#c62828}.kf-new{background:#ef6c00}.kf-net{background:#1565c0}.kf-hidden{background:#6a1b9a}
</style>"""


def plot_times(values: Any) -> list[str]:
    """UTC times as ``YYYY-MM-DD HH:MM:SS.ffffff`` strings for plotly axes.

    FigureWidget serialises tz-aware datetimes as integer nanoseconds, which
    plotly.js reads as milliseconds; strings are unambiguous in both paths.
    """
    s = pd.to_datetime(pd.Series(values), utc=True)
    return s.dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
