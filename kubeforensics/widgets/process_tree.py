"""The process tree of a pod, container or exec session (exact, from Tetragon exec ids).

Highlights: ``HOST-NS`` (runs in the host namespaces), ``ENTERED-HOST`` (nsenter, setns,
chroot into the host), ``NEW-BINARY`` (executed from a writable location such as
``/tmp``), ``NET`` (made connections) and ``NO-API-OBJECT`` (a container no pod owns).
Selecting a process shows its args, cwd, credentials, connections and files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from kubeforensics.widgets import html as h
from kubeforensics.widgets.filters import FilterState
from kubeforensics.widgets.static import View

if TYPE_CHECKING:
    from kubeforensics.case import Case

log = logging.getLogger(__name__)

#: Binaries run from these places were not part of the image: dropped and executed.
NEW_BINARY = re.compile(r"^(/tmp/|/var/tmp/|/dev/shm/|/run/|/root/|/home/|\./|/proc/self/fd/|/memfd:)")
FLAGS = (("host_namespace", "host", "HOST-NS"), ("entered_host_ns", "host", "ENTERED-HOST"),
         ("new_binary", "new", "NEW-BINARY"), ("network_active", "net", "NET"),
         ("no_api_object", "hidden", "NO-API-OBJECT"))
PROC_COLUMNS = ["time", "event_type", "exec_id", "pid", "uid", "auid", "binary", "args", "cwd", "flags",
                "caps_effective", "function_name", "saddr", "daddr", "sport", "dport", "sock_protocol", "file_path",
                "exit_status", "namespace", "pod", "container_id", "node", "image", "event_id"]


class ProcessTreeView(View):
    """Collapsible process tree following the shared filters (pod, namespace, node, time window).

    Parameters
    ----------
    case : Case
    state : FilterState, optional
    container_id, exec_id : str, optional
        Restrict to one container or to the subtree of one exec session.
    max_nodes : int
        At most this many processes are shown (the earliest); the rest are counted.
    max_rows : int
        Above this many process events in the selection no tree is built (narrow the filters).
    """

    def __init__(self, case: Case, state: FilterState | None = None, *, container_id: str | None = None,
                 exec_id: str | None = None, max_nodes: int = 2000, max_rows: int = 50_000) -> None:
        self.case, self.state = case, state or FilterState()
        self.container_id, self.exec_id, self.max_nodes = container_id, exec_id, max_nodes
        self.max_rows, self.too_many = max_rows, 0
        self.selected = ""
        self._select_cbs: list[Callable[[str], None]] = []
        self.nodes, self.truncated = self.query()
        self.state.on_change(lambda _c: self.refresh())

    def __repr__(self) -> str:
        return f"<ProcessTreeView {len(self.nodes)} processes>"

    def query(self) -> tuple[pd.DataFrame, int]:
        """Depth-first process rows (``depth`` column) for the current filters; and how many were cut."""
        from kubeforensics.case.query import Filters

        s = self.state
        # with a pod filter the namespace is applied by the tree (which keeps ancestors outside the pod)
        filt: dict[str, Any] = {"since": s.since, "until": s.until, "node": s.node or None,
                "namespace": None if s.pod else (s.namespace or None)}
        params: list[Any] = []
        rel = self.case.query.relation_sql("processes", Filters(**filt), params, ["event_id"])
        n = int(self.case.query.con.execute(f"SELECT count(*) FROM ({rel})", params).fetchall()[0][0])
        if n > self.max_rows:
            self.too_many = n
            return _empty_nodes(), 0
        self.too_many = 0
        procs = self.case.table("processes", **filt)
        try:
            from kubeforensics.correlate.process_tree import process_tree
        except ImportError:  # pragma: no cover - correlate is part of the package
            return _empty_nodes(), 0
        if procs.empty:
            return _empty_nodes(), 0
        tree = process_tree(procs, pod=s.pod or None, namespace=(s.namespace or None) if s.pod else None,
                            container_id=self.container_id, exec_id=self.exec_id)
        order = list(tree.walk())
        cut = max(0, len(order) - self.max_nodes)
        order = order[: self.max_nodes]
        if not order:
            return _empty_nodes(), 0
        nodes = tree.nodes.loc[[e for _d, e in order]].reset_index(drop=True)
        nodes.insert(0, "depth", [d for d, _e in order])
        nodes["new_binary"] = nodes["binary"].fillna("").str.match(NEW_BINARY)
        return nodes, cut

    def refresh(self) -> None:
        self.nodes, self.truncated = self.query()
        if self._widget is not None:
            self._tree.nodes = self.tree_nodes()
            self._count.value = self._caption()

    # ------------------------------------------------------------------ content
    def tree_nodes(self) -> list[dict[str, Any]]:
        """Nodes for the tree widget: label text (not HTML), flags and an exit note."""
        out = []
        for r in self.nodes.itertuples(index=False):
            label = f"{h.text(r.binary)} {h.text(r.args, 120)}".rstrip()
            where = f"{r.namespace}/{r.pod}" if r.pod else (f"container {str(r.container_id)[:12]}" if r.container_id
                                                              else f"host {r.node}")
            flags = [{"cls": cls, "text": txt} for col, cls, txt in FLAGS if bool(getattr(r, col, False))]
            note = f"[{where}]" + ("" if pd.isna(r.exit_status) else f" exit={int(r.exit_status)}")
            out.append({"id": str(r.exec_id), "depth": int(r.depth), "label": label, "flags": flags,
                        "note": h.text(note, 200)})
        return out

    def static(self) -> str:
        """Nested ``<details>`` elements (collapsible without a kernel), every value escaped."""
        parts: list[str] = []
        open_depths: list[int] = []
        for n in self.tree_nodes():
            while open_depths and open_depths[-1] >= n["depth"]:
                parts.append("</div></details>")
                open_depths.pop()
            flags = "".join(f"<span class='kf-flag kf-{f['cls']}'>{h.esc(f['text'])}</span>" for f in n["flags"])
            parts.append(f"<details open style='margin-left:{12 if n['depth'] else 0}px'>"
                         f"<summary data-id='{h.esc(n['id'])}'><code>{h.esc(n['label'])}</code>{flags} "
                         f"<small>{h.esc(n['note'])}</small></summary><div>")
            open_depths.append(n["depth"])
        parts.extend("</div></details>" for _ in open_depths)
        return f"<div class='kf-process-tree'><small>{h.esc(self._caption())}</small>{''.join(parts)}</div>"

    def _caption(self) -> str:
        if self.too_many:
            return (f"{self.too_many:,} process events in this selection: narrow the filters (pod, namespace, "
                    f"node or time) to see a tree · {self.state.describe()}")
        more = f" (first {len(self.nodes):,}; {self.truncated:,} more)" if self.truncated else ""
        return f"{len(self.nodes):,} processes{more} · {self.state.describe()}"

    def process(self, exec_id: str) -> dict[str, Any]:
        """Everything about one process: its node row, events, connections and files."""
        node = self.nodes[self.nodes["exec_id"] == exec_id]
        ev = self.case.sql(f"SELECT {', '.join(repr(c).replace(chr(39), chr(34)) for c in PROC_COLUMNS)} FROM {{processes}} WHERE exec_id = ? "
                           f"ORDER BY time LIMIT 5000", [exec_id])
        execs = ev[ev["event_type"] == "exec"]
        first = execs.iloc[0] if len(execs) else (ev.iloc[0] if len(ev) else None)
        conns = ev[ev["daddr"].notna() & (ev["daddr"] != "")]
        files = ev[ev["file_path"].notna() & (ev["file_path"] != "")]
        return {"node": node.iloc[0].to_dict() if len(node) else {}, "first": None if first is None else first.to_dict(),
                "connections": conns[["time", "function_name", "saddr", "sport", "daddr", "dport", "sock_protocol"]],
                "files": files[["time", "function_name", "file_path"]], "events": ev}

    def details_html(self, exec_id: str) -> str:
        info = self.process(exec_id)
        n, f = info["node"], info["first"] or {}
        creds = f"uid={h.text(f.get('uid'))} auid={h.text(f.get('auid'))}"
        caps = f.get("caps_effective")
        items = [("binary", n.get("binary")), ("args", n.get("args")), ("cwd", f.get("cwd")),
                 ("credentials", creds), ("capabilities", caps), ("pod", f"{n.get('namespace') or ''}/{n.get('pod') or ''}"),
                 ("container", n.get("container_id")), ("node", n.get("node")), ("image", f.get("image")),
                 ("pid", n.get("pid")), ("started", n.get("start")), ("ended", n.get("end")),
                 ("exit status", n.get("exit_status")), ("exec_id", exec_id),
                 ("flags", " ".join(t for c, _k, t in FLAGS if bool(n.get(c, False))))]
        conns, files = info["connections"], info["files"]
        return (f"<div class='kf-details kf-process'><b>process {h.esc(n.get('binary') or exec_id)}</b>"
                f"{h.definition_list(items)}<b>connections ({len(conns)})</b>"
                f"{h.table(conns.head(200)) if len(conns) else '<div>none</div>'}"
                f"<b>files ({len(files)})</b>{h.table(files.head(200)) if len(files) else '<div>none</div>'}</div>")

    def on_select(self, callback: Callable[[str], None]) -> None:
        self._select_cbs.append(callback)

    def select(self, exec_id: str) -> str:
        """Select a process: the details pane shows it; returns the details HTML."""
        self.selected = exec_id
        details = self.details_html(exec_id) if exec_id else ""
        if self._widget is not None:
            self._details.value = details
            if self._tree.selected != exec_id:
                self._tree.selected = exec_id
        for cb in self._select_cbs:
            cb(exec_id)
        return details

    def _build_widget(self) -> Any:
        import ipywidgets as w

        from kubeforensics.widgets.rows import TreeWidget

        self._tree = TreeWidget(nodes=self.tree_nodes(), empty="no processes in this window / selection")
        self._tree.add_class("kf-process-tree")
        self._count = w.HTML(self._caption())
        self._details = w.HTML(layout=w.Layout(max_height="30em", overflow="auto"))
        self._tree.observe(lambda ch: self.select(ch["new"]) if ch["new"] != self.selected else None,
                           names="selected")
        self._widget = w.VBox([self._count, w.Box([self._tree], layout=w.Layout(max_height="28em", overflow="auto")),
                               self._details])
        return self._widget


def _empty_nodes() -> pd.DataFrame:
    return pd.DataFrame(columns=["depth", "exec_id", "parent_exec_id", "binary", "args", "start", "end",
                                 "exit_status", "namespace", "pod", "container_id", "node", "pid",
                                 "host_namespace", "entered_host_ns", "no_api_object", "network_active", "files",
                                 "new_binary", "event_id"])
