"""Two small anywidget components: a clickable, sortable row table and a collapsible tree.

The browser code writes every value with ``textContent`` (never ``innerHTML``), so
attacker-controlled text cannot become markup; Python-side HTML uses
:mod:`kubeforensics.widgets.html`.
"""

from __future__ import annotations

import anywidget
import traitlets

_CSS = """
.kf-rows table{border-collapse:collapse;font-size:12px;width:100%}
.kf-rows th{cursor:pointer;text-align:left;border-bottom:2px solid #999;padding:2px 6px;white-space:nowrap}
.kf-rows td{border-bottom:1px solid #e0e0e0;padding:2px 6px;vertical-align:top;max-width:40em;overflow:hidden;text-overflow:ellipsis}
.kf-rows tbody tr{cursor:pointer}.kf-rows tbody tr:hover{background:#f1f8ff}
.kf-rows tr.kf-sel{background:#fff3c4}.kf-rows .kf-status{font-size:11px;color:#555;margin:2px 0}
.kf-tree{font:12px monospace}.kf-tree .kf-node{white-space:nowrap;cursor:pointer;padding:1px 0}
.kf-tree .kf-node:hover{background:#f1f8ff}.kf-tree .kf-sel{background:#fff3c4}
.kf-tree .kf-tog{display:inline-block;width:1.2em;color:#555}
.kf-tree .kf-flag{border-radius:3px;padding:0 4px;margin-left:4px;font-size:10px;color:#fff}
.kf-tree .kf-host{background:#c62828}.kf-tree .kf-new{background:#ef6c00}.kf-tree .kf-net{background:#1565c0}
.kf-tree .kf-hidden{background:#6a1b9a}.kf-tree .kf-exit{color:#777}
"""

_ROWS_JS = """
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "kf-rows";
  el.appendChild(root);
  function draw() {
    root.replaceChildren();
    const status = document.createElement("div");
    status.className = "kf-status";
    status.textContent = model.get("status");
    root.appendChild(status);
    const table = document.createElement("table");
    const hr = table.createTHead().insertRow();
    const sortBy = model.get("sort_by"), desc = model.get("sort_desc");
    for (const c of model.get("columns")) {
      const th = document.createElement("th");
      th.textContent = c + (sortBy === c ? (desc ? " \\u25BC" : " \\u25B2") : "");
      th.onclick = () => {
        if (model.get("sort_by") === c) { model.set("sort_desc", !model.get("sort_desc")); }
        else { model.set("sort_by", c); model.set("sort_desc", false); }
        model.save_changes();
      };
      hr.appendChild(th);
    }
    const tb = table.createTBody();
    const keys = model.get("row_keys"), sel = model.get("selected");
    model.get("rows").forEach((row, i) => {
      const tr = tb.insertRow();
      tr.dataset.key = keys[i];
      if (keys[i] === sel) tr.className = "kf-sel";
      for (const v of row) { const td = tr.insertCell(); td.textContent = v; td.title = v; }
      tr.onclick = () => { model.set("selected", keys[i]); model.save_changes(); };
    });
    root.appendChild(table);
  }
  model.on("change:rows", draw); model.on("change:selected", draw); model.on("change:status", draw);
  model.on("change:sort_by", draw); model.on("change:sort_desc", draw);
  draw();
}
export default { render };
"""

_TREE_JS = """
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "kf-tree";
  el.appendChild(root);
  const collapsed = new Set();
  function draw() {
    root.replaceChildren();
    const nodes = model.get("nodes"), sel = model.get("selected");
    let hideBelow = -1;
    nodes.forEach((n, i) => {
      if (hideBelow >= 0 && n.depth > hideBelow) return;
      hideBelow = -1;
      const hasKids = i + 1 < nodes.length && nodes[i + 1].depth > n.depth;
      const row = document.createElement("div");
      row.className = "kf-node" + (n.id === sel ? " kf-sel" : "");
      row.dataset.key = n.id;
      row.style.paddingLeft = (n.depth * 16) + "px";
      const tog = document.createElement("span");
      tog.className = "kf-tog";
      tog.textContent = hasKids ? (collapsed.has(n.id) ? "\\u25B8" : "\\u25BE") : "";
      tog.onclick = (ev) => { ev.stopPropagation(); if (collapsed.has(n.id)) collapsed.delete(n.id); else collapsed.add(n.id); draw(); };
      row.appendChild(tog);
      const label = document.createElement("span");
      label.textContent = n.label;
      row.appendChild(label);
      for (const f of n.flags) {
        const b = document.createElement("span");
        b.className = "kf-flag kf-" + f.cls;
        b.textContent = f.text;
        row.appendChild(b);
      }
      if (n.note) { const s = document.createElement("span"); s.className = "kf-exit"; s.textContent = " " + n.note; row.appendChild(s); }
      row.onclick = () => { model.set("selected", n.id); model.save_changes(); };
      root.appendChild(row);
      if (hasKids && collapsed.has(n.id)) hideBelow = n.depth;
    });
    if (!nodes.length) { root.textContent = model.get("empty"); }
  }
  model.on("change:nodes", draw); model.on("change:selected", draw);
  draw();
}
export default { render };
"""


class RowsWidget(anywidget.AnyWidget):
    """Rows of text cells; click a row to set ``selected`` (its key), click a header to sort."""

    _esm = _ROWS_JS
    _css = _CSS
    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    rows = traitlets.List(traitlets.List()).tag(sync=True)
    row_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    sort_by = traitlets.Unicode("").tag(sync=True)
    sort_desc = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)


class TreeWidget(anywidget.AnyWidget):
    """A collapsible tree given in depth-first order (``{"id", "depth", "label", "flags", "note"}``)."""

    _esm = _TREE_JS
    _css = _CSS
    nodes = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    empty = traitlets.Unicode("no processes").tag(sync=True)
