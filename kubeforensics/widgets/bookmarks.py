"""Bookmarks and notes: bookmark the selected event, finding, process or story step.

They are written to the case's append-only log (``Case.bookmark``), so they
survive re-opening the case and appear in reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubeforensics.widgets import html as h
from kubeforensics.widgets.static import View

if TYPE_CHECKING:
    from kubeforensics.case import Case

KINDS = ("event", "finding", "process", "story-step", "entity")


class BookmarkPanel(View):
    """Add and list bookmarks.  ``target``/``kind`` follow the current selection of the other views."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.target, self.kind = "", "event"

    def __repr__(self) -> str:
        return f"<BookmarkPanel {len(self.case.bookmarks())} bookmarks>"

    def set_target(self, target: str, kind: str = "event") -> None:
        """What the next bookmark points at (the views call this when something is selected)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.target, self.kind = target, kind
        if self._widget is not None:
            self._target.value = target
            self._kind.value = kind

    def add(self, note: str = "", tags: Sequence[str] | str = (), target: str | None = None,
            kind: str | None = None) -> Any:
        """Bookmark ``target`` (default: the current selection) with a note and tags; returns the Bookmark."""
        target = self.target if target is None else target
        kind = self.kind if kind is None else kind
        if not target:
            raise ValueError("nothing selected to bookmark: select an event, process, finding or story step")
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        mark = self.case.bookmark(target, note, kind=kind, tags=list(tags))
        if self._widget is not None:
            self._list.value = self.static()
            self._note.value = ""
        return mark

    def static(self) -> str:
        b = self.case.bookmarks()
        if b.empty:
            return "<div class='kf-bookmarks'>no bookmarks yet</div>"
        b = b.assign(tags=b["tags"].map(lambda t: ", ".join(t)))
        return "<div class='kf-bookmarks'>" + h.table(b, ["time", "target_kind", "target", "note", "tags", "author"],
                                                     caption=f"{len(b)} bookmarks") + "</div>"

    def _build_widget(self) -> Any:
        import ipywidgets as w

        self._kind = w.Dropdown(options=KINDS, value=self.kind, layout=w.Layout(width="9em"))
        self._target = w.Text(value=self.target, placeholder="selected event id / exec id / rule id",
                              layout=w.Layout(width="18em"))
        self._note = w.Text(placeholder="note", layout=w.Layout(width="24em"))
        self._tags = w.Text(placeholder="tags, comma separated", layout=w.Layout(width="14em"))
        btn = w.Button(description="bookmark", button_style="warning", layout=w.Layout(width="8em"))
        self._msg = w.HTML()
        self._list = w.HTML(self.static())

        def on_click(_b: Any) -> None:
            try:
                self.add(self._note.value, self._tags.value, self._target.value, self._kind.value)
                self._msg.value = ""
            except ValueError as exc:
                self._msg.value = f"<span style='color:#c62828'>{h.esc(exc)}</span>"

        btn.on_click(on_click)
        self._widget = w.VBox([w.HBox([self._kind, self._target, self._note, self._tags, btn]), self._msg,
                               self._list])
        return self._widget
