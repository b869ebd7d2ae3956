"""Live or static: every view renders as a widget in a live kernel and as a plain figure or
escaped HTML table elsewhere (papermill, nbconvert, a plain Python console).

``KUBEFORENSICS_WIDGETS=static`` (or ``live``) forces the choice.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
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


@functools.cache
def plotlyjs_loader() -> str:
    """One ``<script>`` that defines ``window.kfPlotlyReady(f)`` and loads plotly.js from a gzip copy
    inside the page (1.9 MB of base64 instead of 4.8 MB of script; the browser's DecompressionStream
    inflates it).  Figures wait on ``kfPlotlyReady``; a page that already has ``window.Plotly`` uses it.
    Offline, no CDN, no require.js; the page's CSP needs inline scripts only."""
    import base64
    import gzip

    import plotly

    src = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    header = src[:src.index(b"*/") + 2].decode() if src.startswith(b"/**") else "/* plotly.js (MIT license) */"
    payload = base64.b64encode(gzip.compress(src, 9, mtime=0)).decode("ascii")
    return ("<script>" + header + "\n/* kubeforensics: plotly.js, gzip + base64, inflated in the browser */\n"
            + _LOADER.replace("PAYLOAD", payload) + "</script>")


_LOADER = """(function () {
  if (window.kfPlotlyReady) { return; }
  var waiting = [];
  function run(f) { try { f(window.Plotly); } catch (e) { console.error(e); } }
  function ready() {
    window.kfPlotlyReady = run;
    var w = waiting; waiting = []; w.forEach(run);
  }
  window.kfPlotlyReady = function (f) { if (window.Plotly) { run(f); } else { waiting.push(f); } };
  if (window.Plotly) { ready(); return; }
  var b = atob("PAYLOAD"), u = new Uint8Array(b.length);
  for (var i = 0; i < b.length; i++) { u[i] = b.charCodeAt(i); }
  new Response(new Blob([u]).stream().pipeThrough(new DecompressionStream("gzip"))).text().then(function (js) {
    if (!window.Plotly) {
      var s = document.createElement("script");
      s.text = "window.PlotlyConfig={MathJaxConfig:'local'};(function(define,module,exports){" + js + "\\n}).call(window);";
      document.head.appendChild(s);
    }
    ready();
  }, function (e) { console.error("kubeforensics: could not inflate plotly.js", e); });
})();"""

_SCRIPT_OPEN = re.compile(r"<script[^>]*>")


def figure_html(fig: Any) -> str:
    """A plain plotly figure (or figure dict) as HTML that draws once plotly.js is loaded.

    The first figure of a process carries :func:`plotlyjs_loader` (offline reports and executed
    notebooks keep one compressed plotly.js); each figure's own script waits on ``kfPlotlyReady``.
    Text in the figure is JSON-escaped by plotly (``<``, ``>``, ``/`` as ``\\uXXXX``)."""
    global _PLOTLYJS_SENT
    import plotly.io as pio

    include = not _PLOTLYJS_SENT
    _PLOTLYJS_SENT = True
    doc = pio.to_html(fig, full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    m = _SCRIPT_OPEN.search(doc)
    end = doc.rfind("</script>")
    if m is None or end < m.end():  # pragma: no cover - plotly always writes one script per figure
        raise RuntimeError("unexpected plotly HTML: no figure script")
    doc = (doc[:m.end()] + "(window.kfPlotlyReady || function (f) { f(window.Plotly); })(function (Plotly) {"
           + doc[m.end():end] + "});" + doc[end:])
    return (plotlyjs_loader() if include else "") + doc


def use_static_renderer() -> None:
    """Make plain ``fig.show()`` render like the views' static figures (one compressed plotly.js per
    process, no CDN): registers and selects the ``kubeforensics`` plotly renderer."""
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class StaticRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict: Any) -> dict[str, str]:
            return {"text/html": figure_html(fig_dict)}

    pio.renderers["kubeforensics"] = StaticRenderer()
    pio.renderers.default = "kubeforensics"


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
