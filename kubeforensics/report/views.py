"""Views a playbook shows: the widgets of :mod:`kubeforensics.widgets` in a live kernel, static plotly
figures and escaped tables in headless runs (papermill, nbconvert), so a report keeps its plots."""

from __future__ import annotations

from typing import Any

import pandas as pd


def setup_plotly() -> None:
    """Make plain ``fig.show()`` survive a headless run: outside a live kernel figures render as HTML
    with plotly.js inlined once, compressed (no CDN), instead of the JSON-only default that reports drop."""
    from kubeforensics.widgets import in_live_kernel
    from kubeforensics.widgets.static import use_static_renderer

    if not in_live_kernel():
        use_static_renderer()


def _state(inv: Any, pod: str = "") -> Any:
    from kubeforensics.widgets import FilterState

    st = FilterState()
    changes: dict[str, Any] = {}
    if inv.since:
        changes["since"] = pd.Timestamp(inv.since)
    if inv.until:
        changes["until"] = pd.Timestamp(inv.until)
    if pod:
        ns, _, name = pod.rpartition("/")
        changes.update(namespace=ns, pod=name)
    if changes:
        st.update(**changes)
    return st


def timeline(inv: Any, pod: str = "") -> Any:
    """The timeline swimlanes of the case (or of one pod), with findings overlaid."""
    from kubeforensics.widgets import TimelineView

    return TimelineView(inv.case, _state(inv, pod), findings=inv.findings)


class TextView:
    """Preformatted text that renders escaped in notebooks and reports."""

    def __init__(self, text: str, title: str = "") -> None:
        self.text, self.title = text, title

    def __repr__(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text

    def _repr_html_(self) -> str:
        import html

        head = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        return f"{head}<pre>{html.escape(self.text)}</pre>"


def process_tree(inv: Any, pod: str) -> Any:
    """The exact process tree of a pod: the interactive view in a live kernel, indented text otherwise."""
    from kubeforensics.widgets import in_live_kernel

    if in_live_kernel():
        from kubeforensics.widgets import ProcessTreeView

        return ProcessTreeView(inv.case, _state(inv, pod))
    from kubeforensics.correlate import process_tree as tree

    ns, _, name = pod.rpartition("/")
    if not name:  # (pod "" would select every process without a pod: the whole host tree, read whole)
        return TextView("", "process tree: no pod picked (no seed given, and no finding names a pod)")
    if getattr(inv, "lean", False) and hasattr(inv.case, "process_tree"):
        t = inv.case.process_tree(pod=name, namespace=ns or None)  # the pod's events and their ancestors
    else:
        t = tree(inv.tables["processes"], pod=name, namespace=ns or None)
    return TextView(t.render_text(), f"process tree of {pod}: {len(t)} processes")


def flow_map(inv: Any, pod: str = "") -> Any:
    """Who talked to whom (of one pod when given)."""
    from kubeforensics.widgets import FlowMapView

    return FlowMapView(inv.case, _state(inv, pod))
