"""Render an executed playbook and its case as one self-contained HTML file, or as Markdown.

The HTML opens offline: no CDN, no require.js, no widget state; plotly.js is
inlined once, gzip-compressed (:func:`kubeforensics.widgets.static.plotlyjs_loader`); should a
notebook output carry further copies, only the first is kept.
Code cells are folded away (``<details>``) so the report reads as a narrative.
After the notebook come the fixed sections every report has: the answers of
the run, the bookmarks, the story, the findings with their ATT&CK ids, the
indicators and the evidence manifest with the manifest hash the report was
built from.  Every value from the evidence is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from kubeforensics.report.sections import Sections

_PLOTLYJS = re.compile(r"<script[^>]*>\s*/\*\*\s*\n?\s*\*\s*plotly\.js v", re.DOTALL)
STYLE = """<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#1f2328;line-height:1.45}
h1,h2,h3{line-height:1.2} h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0} td,th{border:1px solid #d0d7de;padding:2px 6px;
vertical-align:top;text-align:left;max-width:60em;overflow-wrap:anywhere} th{background:#f6f8fa}
pre,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px} pre{white-space:pre-wrap;
background:#f6f8fa;padding:.5em;overflow-x:auto}
details.kf-code summary{color:#656d76;font-size:11px;cursor:pointer} .kf-out{margin:.3em 0 1em 0}
.kf-answer{border-left:4px solid #0969da;padding:.3em .8em;margin:.5em 0;background:#f6f8ff}
.kf-error{border-left:4px solid #cf222e;background:#fff0f0;padding:.3em .8em}
.kf-meta{color:#656d76;font-size:12px} .sev-critical{color:#a40e26;font-weight:bold} .sev-high{color:#cf222e}
</style>"""


def _markdown(text: str) -> str:
    import mistune

    md = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])
    return str(md(text))


def _output_html(out: dict[str, Any]) -> str:
    """One cell output as HTML: rich HTML from the library, images, or escaped text; widgets dropped."""
    kind = out.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(''.join(out.get('text', '')))}</pre>"
    if kind == "error":
        return (f"<div class='kf-error'><b>{html.escape(str(out.get('ename', 'Error')))}</b>: "
                f"{html.escape(str(out.get('evalue', '')))}</div>")
    data = out.get("data", {})
    if "text/html" in data:
        v = data["text/html"]
        return "".join(v) if isinstance(v, list) else str(v)
    for mime in ("image/svg+xml",):
        if mime in data:
            return "".join(data[mime]) if isinstance(data[mime], list) else str(data[mime])
    if "image/png" in data:
        return f"<img alt='figure' src='data:image/png;base64,{str(data['image/png']).strip()}'>"
    if "text/markdown" in data:
        return _markdown("".join(data["text/markdown"]) if isinstance(data["text/markdown"], list)
                         else data["text/markdown"])
    if "text/plain" in data:
        v = data["text/plain"]
        return f"<pre>{html.escape(''.join(v) if isinstance(v, list) else str(v))}</pre>"
    return ""  # widget views, plotly JSON without HTML, ...


def notebook_body(nb: Any) -> str:
    """The cells of an executed notebook as HTML (code folded, outputs shown, injected parameters folded)."""
    parts: list[str] = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            parts.append(_markdown(cell.source))
            continue
        if cell.cell_type != "code":
            continue
        label = "parameters" if ("parameters" in tags or "injected-parameters" in tags) else "code"
        if cell.source.strip():
            parts.append(f"<details class='kf-code'><summary>{label}</summary><pre>{html.escape(cell.source)}</pre>"
                         "</details>")
        if "remove-output" in tags:
            continue
        outs = "".join(_output_html(o) for o in cell.get("outputs", []))
        if outs:
            parts.append(f"<div class='kf-out'>{outs}</div>")
    return "\n".join(parts)


def dedupe_plotlyjs(doc: str) -> str:
    """Keep the first inlined plotly.js bundle and drop later copies (each is several MB)."""
    starts = [m.start() for m in _PLOTLYJS.finditer(doc)]
    for s in reversed(starts[1:]):
        end = doc.find("</script>", s)
        if end != -1:
            doc = doc[:s] + doc[end + len("</script>"):]
    return doc


def render_html(notebook: str | Path | None, case: Any, *, playbook: str, run_id: str | None = None,
                title: str | None = None) -> str:
    """The self-contained HTML report of a playbook run.

    Parameters
    ----------
    notebook : path or None
        The executed notebook (``None``: the fixed sections only).
    case : Case
        The case the playbook ran on.
    playbook, run_id : str
        Which run's answers to show (default: the latest run of ``playbook``).
    title : str, optional
        Document title.
    """
    import nbformat

    sec = Sections(case, playbook=playbook, run_id=run_id)
    body = ""
    if notebook is not None:
        body = notebook_body(nbformat.read(str(notebook), as_version=4))
    title = title or f"kubeforensics report: {playbook}"
    esc = html.escape
    head = (f"<h1>{esc(title)}</h1><p class='kf-meta'>case <code>{esc(str(case.path))}</code> · case id "
            f"<code>{esc(str(case.info.get('id', '')))}</code> · built from manifest sha256 "
            f"<code>{esc(sec.manifest_sha or 'unknown')}</code> · run <code>{esc(sec.run_id or '-')}</code> · "
            f"generated {esc(pd.Timestamp.now(tz='UTC').strftime('%Y-%m-%d %H:%M:%S UTC'))}</p>")
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
           "'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"
           f"<title>{esc(title)}</title>{STYLE}</head><body>{head}<main>{body}</main>{sec.html()}</body></html>")
    return dedupe_plotlyjs(doc)


def render_markdown(case: Any, *, playbook: str, run_id: str | None = None, title: str | None = None) -> str:
    """The report as Markdown for a ticket: answers, story, findings, indicators, bookmarks, manifest."""
    sec = Sections(case, playbook=playbook, run_id=run_id)
    title = title or f"kubeforensics report: {playbook}"
    head = [f"# {title}", "",
            (f"Case `{case.path}` (id `{case.info.get('id', '')}`), built from manifest sha256 "
             f"`{sec.manifest_sha or 'unknown'}`, run `{sec.run_id or '-'}`."), ""]
    return "\n".join(head) + sec.markdown()
