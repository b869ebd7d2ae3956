"""Live or static: every view renders as a widget in a live kernel and as a plain figure or
escaped HTML table elsewhere (papermill, nbconvert, a plain Python console).

``KUBEFORENSICS_WIDGETS=static`` (or ``live``) forces the choice.
"""

from __future__ import annotations

import os
from typing import Any

_PLOTLYJS_SENT = False


def in_live_kernel() -> bool:
    """True when a Jupyter front end that renders widgets is attached to this kernel.

    JupyterLab/Notebook (jupyter_server) start kernels with ``JPY_SESSION_NAME``;
    VS Code with ``VSCODE_PID``.  papermill/nbclient kernels have neither, and
    nothing renders widgets there, so views fall back to static output.
    """
    mode = os.environ.get("KUBEFORENSICS_WIDGETS", "").strip().lower()
    if mode in ("static", "off", "0", "no"):
        return False
    if mode in ("live", "on", "1", "yes"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def figure_html(fig: Any) -> str:
    """A plain plotly figure as HTML; plotly.js is inlined once per process (offline reports)."""
    global _PLOTLYJS_SENT
    include = not _PLOTLYJS_SENT
    _PLOTLYJS_SENT = True
    return fig.to_html(full_html=False, include_plotlyjs=include, config={"displaylogo": False})


def bundle(content: Any, text: str) -> dict[str, Any]:
    """A MIME bundle for static content: plotly figures and/or HTML strings (already escaped)."""
    from kubeforensics.widgets.html import STYLE

    items = content if isinstance(content, (list, tuple)) else [content]
    parts = [c if isinstance(c, str) else figure_html(c) for c in items]
    return {"text/html": STYLE + "".join(parts), "text/plain": text}


class View:
    """Base of every view: ``widget`` (built on first use), ``static()``, and display that picks one."""

    _widget: Any = None

    @property
    def widget(self) -> Any:
        """The ipywidgets object of this view (built on first access)."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def static(self) -> Any:
        """The same content without a kernel: a ``plotly.graph_objects.Figure`` or an HTML string."""
        raise NotImplementedError

    def html(self) -> str:
        """The static content as one escaped HTML fragment (figures as plotly HTML)."""
        return bundle(self.static(), repr(self))["text/html"]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if in_live_kernel():
            return self.widget._repr_mimebundle_(include=include, exclude=exclude)
        return bundle(self.static(), repr(self))


def show_figure(output: Any, fig: Any) -> None:
    """Replace the content of an ipywidgets ``Output`` with a plain plotly figure.

    Rendered by JupyterLab's plotly MIME renderer: unlike a ``FigureWidget`` it carries no
    copy of plotly.js in the widget state (about 5 MB each), so only the timeline, which
    needs zoom and click events, is a FigureWidget.
    """
    import json

    from IPython.display import display

    output.clear_output(wait=True)
    with output:
        display({"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                 "text/plain": f"<plotly figure: {len(fig.data)} traces>"}, raw=True)
