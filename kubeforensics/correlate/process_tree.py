"""Exact process trees from Tetragon ``exec_id``/``parent_exec_id`` (never from PIDs).

Each node is one process (one ``exec_id``) with its start, exit, duration and
flags: ``host_namespace`` (runs in the host mount namespace, or descends from a
process that entered the host namespaces), ``entered_host_ns`` (nsenter into
PID 1, a ``setns`` kprobe, chroot into a host mount, or the first process of a
chain found in host namespaces), ``no_api_object`` (its container is owned by
no API object: a hidden static pod) and ``network_active`` (made a
``tcp_connect``).  Parents that have no exec event of their own (``runc``,
``containerd-shim``) are added from the ``parent_*`` columns with
``observed=False``.  :func:`inferred_tree` is the fallback for Falco alerts,
which have no unique ids: its nodes are marked ``inferred=True``.

Example
-------
>>> tree = process_tree(case.frames()["processes"], pod="web-0")   # doctest: +SKIP
>>> print(tree.render_text())                                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from kubeforensics.correlate.frames import as_list, basename, cid, table

if TYPE_CHECKING:
    from kubeforensics.correlate.entities import EntityResolver

NODE_COLS = [
    "exec_id",
    "parent_exec_id",
    "binary",
    "args",
    "start",
    "end",
    "exit_status",
    "duration",
    "namespace",
    "pod",
    "container_id",
    "node",
    "pid",
    "host_namespace",
    "entered_host_ns",
    "no_api_object",
    "network_active",
    "files",
    "inferred",
    "observed",
    "event_id",
]
MAX_FILES = 20


class ProcessTree:
    """A forest of processes; ``nodes`` is a DataFrame indexed by ``exec_id``."""

    def __init__(self, nodes: pd.DataFrame) -> None:
        self.nodes = nodes.set_index("exec_id", drop=False) if "exec_id" in nodes.columns else nodes
        parents = self.nodes["parent_exec_id"]
        known = parents.isin(self.nodes.index)
        self._children: dict[str, list[str]] = {}
        order = self.nodes.sort_values("start", na_position="first")
        for pid, grp in order[order["parent_exec_id"].isin(self.nodes.index)].groupby(
            "parent_exec_id", sort=False
        ):
            self._children[pid] = list(grp["exec_id"])
        self._roots = list(self.nodes.loc[~known.values].sort_values("start", na_position="first")["exec_id"])

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def roots(self) -> list[str]:
        """exec_ids of the processes whose parent is not in the tree."""
        return list(self._roots)

    def children(self, exec_id: str) -> list[str]:
        """exec_ids of the direct children of ``exec_id``, by start time."""
        return list(self._children.get(exec_id, []))

    def ancestors(self, exec_id: str) -> list[str]:
        """exec_ids of the ancestors of ``exec_id`` in the tree, nearest first."""
        out: list[str] = []
        seen = {exec_id}
        cur = exec_id
        while cur in self.nodes.index:
            parent = self.nodes.at[cur, "parent_exec_id"]
            if not parent or parent in seen or parent not in self.nodes.index:
                break
            out.append(parent)
            seen.add(parent)
            cur = parent
        return out

    def descendants(self, exec_id: str) -> list[str]:
        """exec_ids of every process below ``exec_id``."""
        out, stack = [], list(self.children(exec_id))
        while stack:
            e = stack.pop()
            out.append(e)
            stack.extend(self.children(e))
        return out

    def chain(self, exec_id: str) -> str:
        """``runc → bash → nsenter → bash``: binary names from the root down to ``exec_id``."""
        ids = [*reversed(self.ancestors(exec_id)), exec_id]
        return " → ".join(basename(self.nodes.loc[ids, "binary"]).tolist())

    def to_frame(self) -> pd.DataFrame:
        """The nodes as a plain DataFrame (one row per process)."""
        return self.nodes.reset_index(drop=True)[NODE_COLS]

    def walk(self) -> Iterator[tuple[int, str]]:
        """(depth, exec_id) in depth-first order."""
        stack = [(0, r) for r in reversed(self._roots)]
        seen: set[str] = set()
        while stack:
            depth, e = stack.pop()
            if e in seen:
                continue
            seen.add(e)
            yield depth, e
            stack.extend((depth + 1, c) for c in reversed(self.children(e)))

    def render_text(self, max_args: int = 80) -> str:
        """An indented tree, one process per line, with flags in brackets."""
        lines = []
        for depth, e in self.walk():
            n = self.nodes.loc[e]
            args = n["args"] if len(n["args"]) <= max_args else n["args"][: max_args - 1] + "…"
            flags = [
                f
                for f, on in (
                    ("HOST-NS", n["host_namespace"]),
                    ("ENTERED-HOST-NS", n["entered_host_ns"]),
                    ("NO-API-OBJECT", n["no_api_object"]),
                    ("NET", n["network_active"]),
                    ("INFERRED", n["inferred"]),
                )
                if on
            ]
            where = f"{n['namespace']}/{n['pod']}" if n["pod"] else (n["container_id"][:12] or n["node"])
            status = "" if pd.isna(n["exit_status"]) else f" exit={int(n['exit_status'])}"
            dur = "" if pd.isna(n["duration"]) else f" {n['duration'].total_seconds():.1f}s"
            lines.append(
                f"{'  ' * depth}{n['binary']} {args}".rstrip()
                + f"  [{where}]{status}{dur}"
                + (f" [{' '.join(flags)}]" if flags else "")
            )
        return "\n".join(lines)


def _host_mnt(v: object) -> bool:
    return "mnt" in as_list(v)


_USED = [
    "event_id",
    "time",
    "event_type",
    "node",
    "exec_id",
    "parent_exec_id",
    "pid",
    "binary",
    "args",
    "start_time",
    "namespace",
    "pod",
    "container_id",
    "parent_binary",
    "parent_args",
    "parent_pid",
    "ancestors",
    "host_namespaces",
    "function_name",
    "exit_status",
    "file_path",
]


def build_nodes(processes: pd.DataFrame, resolver: EntityResolver | None = None) -> pd.DataFrame:
    """One row per exec_id across the processes table (see module docstring).

    With a ``resolver``, container ownership comes from every source it was
    built from, and processes of containers without a pod block get the
    namespace/pod name other sources (Falco, CRI labels) gave the container.
    """
    p = table({"processes": processes}, "processes")
    p = p[[c for c in _USED if c in p.columns]]  # filter a narrow frame, not every column
    p = p.astype({"exec_id": object, "parent_exec_id": object})
    ex = p[(p["event_type"] == "exec") & (p["exec_id"] != "")].drop_duplicates("exec_id")
    other = p[(p["event_type"] != "exec") & (p["exec_id"] != "")]
    # processes seen only through later events (started before the capture)
    late = other[~other["exec_id"].isin(ex["exec_id"])].drop_duplicates("exec_id")
    base = pd.concat([ex.assign(observed=True), late.assign(observed=True)], ignore_index=True)
    start = base["start_time"].where(base["start_time"].notna(), base["time"])
    nodes = pd.DataFrame(
        {
            "exec_id": base["exec_id"],
            "parent_exec_id": base["parent_exec_id"],
            "binary": base["binary"],
            "args": base["args"],
            "start": start,
            "namespace": base["namespace"],
            "pod": base["pod"],
            "container_id": cid(base["container_id"]),
            "node": base["node"],
            "pid": base["pid"],
            "host_namespace": base["host_namespaces"].map(_host_mnt),
            "observed": True,
            "inferred": False,
            "event_id": base["event_id"],
            "_parent_binary": base["parent_binary"],
            "_parent_args": base["parent_args"],
            "_parent_pid": base["parent_pid"],
            "_ancestors": base["ancestors"],
        }
    )
    # parents without an exec event of their own
    missing = nodes[(nodes["parent_exec_id"] != "") & ~nodes["parent_exec_id"].isin(nodes["exec_id"])]
    missing = missing.drop_duplicates("parent_exec_id")
    if not missing.empty:
        grand = missing["_ancestors"].map(lambda a: (as_list(a)[1:2] or [""])[0])
        syn = pd.DataFrame(
            {
                "exec_id": missing["parent_exec_id"],
                "parent_exec_id": grand,
                "binary": missing["_parent_binary"],
                "args": missing["_parent_args"],
                "start": pd.NaT,
                "namespace": "",
                "pod": "",
                "container_id": "",
                "node": missing["node"],
                "pid": missing["_parent_pid"],
                "host_namespace": False,
                "observed": False,
                "inferred": False,
                "event_id": "",
            }
        )
        nodes = pd.concat([nodes, syn], ignore_index=True)
    nodes = nodes.drop(columns=[c for c in nodes.columns if c.startswith("_")])
    nodes["start"] = pd.to_datetime(nodes["start"], utc=True)
    # exits
    exits = p[p["event_type"] == "exit"].drop_duplicates("exec_id", keep="last").set_index("exec_id")
    nodes["end"] = (
        pd.to_datetime(nodes["exec_id"].map(exits["time"]), utc=True)
        if len(exits)
        else pd.Series(pd.NaT, index=nodes.index, dtype="datetime64[ns, UTC]")
    )
    nodes["exit_status"] = nodes["exec_id"].map(exits["exit_status"]).astype("Int64")
    nodes["duration"] = nodes["end"] - nodes["start"]
    # kprobes: setns, connects, files
    fn = other["function_name"]
    setns = set(other.loc[fn.str.contains("setns"), "exec_id"])
    net = set(other.loc[fn.str.contains("connect") | (other["event_type"] == "connect"), "exec_id"])
    files = (
        other[other["file_path"] != ""]
        .groupby("exec_id")["file_path"]
        .agg(lambda s: list(dict.fromkeys(s))[:MAX_FILES])
    )
    nodes["files"] = nodes["exec_id"].map(files).map(lambda v: v if isinstance(v, list) else [])
    nodes["network_active"] = nodes["exec_id"].isin(net)
    b = basename(nodes["binary"])
    nsenter_pid1 = (b == "nsenter") & nodes["args"].str.contains(r"(?:-t|--target)[ =]?1\b", regex=True)
    chroot_host = (b == "chroot") & nodes["args"].str.match(r"^\s*/host\b")
    by_id = nodes.set_index("exec_id")
    parent_host = nodes["parent_exec_id"].map(by_id["host_namespace"]).fillna(True).astype(bool)
    parent_in_container = nodes["parent_exec_id"].map(by_id["container_id"]).fillna("") != ""
    turned = nodes["host_namespace"] & ~parent_host & parent_in_container & (nodes["container_id"] != "")
    nodes["entered_host_ns"] = nsenter_pid1 | chroot_host | nodes["exec_id"].isin(setns) | turned
    _propagate_host(nodes)
    key = nodes["container_id"].str[:12]
    if resolver is None:
        owned = set(key[nodes["pod"] != ""])
    else:
        c = resolver.containers
        owned = set(c.loc[c["owned_by_api"].astype(bool), "key"])
        named = c[c["pod"] != ""].drop_duplicates("key").set_index("key")
        fill = (nodes["pod"] == "") & key.isin(named.index)
        nodes.loc[fill, "namespace"] = key[fill].map(named["namespace"]).values
        nodes.loc[fill, "pod"] = key[fill].map(named["pod"]).values
    nodes["no_api_object"] = (nodes["container_id"] != "") & ~key.isin(owned)
    return nodes[NODE_COLS]


def _propagate_host(nodes: pd.DataFrame) -> None:
    """Descendants of a process that entered the host namespaces run there too."""
    frontier = set(nodes.loc[nodes["entered_host_ns"], "exec_id"])
    host = set(frontier)
    for _ in range(64):
        if not frontier:
            break
        kids = nodes.loc[nodes["parent_exec_id"].isin(frontier) & ~nodes["exec_id"].isin(host), "exec_id"]
        frontier = set(kids)
        host |= frontier
    nodes["host_namespace"] = nodes["host_namespace"] | nodes["exec_id"].isin(host)


def process_tree(
    processes: pd.DataFrame,
    *,
    pod: str | None = None,
    namespace: str | None = None,
    container_id: str | None = None,
    exec_id: str | None = None,
    resolver: EntityResolver | None = None,
) -> ProcessTree:
    """Build the exact process tree, optionally restricted to a pod, container or subtree.

    Parameters
    ----------
    processes : DataFrame
        The canonical ``processes`` table (Tetragon).
    pod, namespace : str, optional
        Keep the processes of this pod (and namespace) plus their ancestors.
    container_id : str, optional
        Keep one container (any prefix of its id) plus ancestors.
    exec_id : str, optional
        Keep the subtree below this process plus its ancestors.
    resolver : EntityResolver, optional
        Decides which containers an API object owns and names containers that
        Tetragon saw without a pod block; by default a container is owned when
        Tetragon saw a pod block for it.

    Returns
    -------
    ProcessTree
    """
    nodes = build_nodes(processes, resolver)
    if pod is None and namespace is None and container_id is None and exec_id is None:
        return ProcessTree(nodes)
    keep = pd.Series(True, index=nodes.index)
    if pod is not None:
        keep &= nodes["pod"] == pod
    if namespace is not None:
        keep &= nodes["namespace"] == namespace
    if container_id is not None:
        key = cid(pd.Series([container_id])).iloc[0]
        keep &= nodes["container_id"].map(lambda c: bool(c) and (c.startswith(key) or key.startswith(c)))
    full = ProcessTree(nodes)
    ids = set(nodes.loc[keep, "exec_id"])
    if exec_id is not None:
        ids = (
            ({exec_id, *full.descendants(exec_id)} & ids)
            if (pod or namespace or container_id)
            else {exec_id, *full.descendants(exec_id)}
        )
    # processes the selection started in other containers (nsenter into the host keeps the pod label,
    # but a chroot/ns switch may not) stay in the tree, as do ancestors
    for e in list(ids):
        ids.update(full.descendants(e))
    for e in list(ids):
        ids.update(full.ancestors(e))
    return ProcessTree(nodes[nodes["exec_id"].isin(ids)])


def inferred_tree(alerts: pd.DataFrame) -> ProcessTree:
    """A best-effort tree from Falco ``proc.name``/``proc.pname``/``proc.aname[N]`` (``inferred=True``).

    Falco has no unique process ids: nodes are keyed by container and the
    chain of names, so two runs of the same chain collapse into one node.
    """
    a = table({"alerts": alerts}, "alerts")
    a = a[a["proc_name"] != ""]
    rows: dict[str, dict[str, object]] = {}
    for r in a.itertuples(index=False):
        chain = _falco_chain(r.output_fields, r.proc_pname, r.proc_name)
        parent = ""
        for depth, name in enumerate(chain):
            key = f"falco:{r.container_id or r.hostname}:" + "/".join(chain[: depth + 1])
            leaf = depth == len(chain) - 1
            node = rows.setdefault(
                key,
                {
                    "exec_id": key,
                    "parent_exec_id": parent,
                    "binary": name,
                    "args": "",
                    "start": r.time,
                    "end": pd.NaT,
                    "exit_status": pd.NA,
                    "duration": pd.NaT,
                    "namespace": r.namespace,
                    "pod": r.pod,
                    "container_id": r.container_id,
                    "node": r.hostname,
                    "pid": pd.NA,
                    "host_namespace": False,
                    "entered_host_ns": False,
                    "no_api_object": False,
                    "network_active": False,
                    "files": [],
                    "inferred": True,
                    "observed": leaf,
                    "event_id": "",
                },
            )
            if leaf:
                node["args"] = r.proc_cmdline.split(" ", 1)[1] if " " in r.proc_cmdline else ""
                node["event_id"] = node["event_id"] or r.event_id
                node["pid"] = r.proc_pid
                node["entered_host_ns"] = bool(node["entered_host_ns"] or name == "nsenter")
                files = as_list(node["files"])
                if r.fd_name and len(files) < MAX_FILES:
                    node["files"] = [*files, r.fd_name]
            parent = key
    nodes = pd.DataFrame(list(rows.values()), columns=NODE_COLS)
    nodes["start"] = pd.to_datetime(nodes["start"], utc=True)
    return ProcessTree(nodes)


def _falco_chain(output_fields: str, pname: str, name: str) -> list[str]:
    import orjson

    try:
        of = orjson.loads(output_fields) if isinstance(output_fields, str) and output_fields else {}
    except orjson.JSONDecodeError:
        of = {}
    anc = []
    for n in range(9, 1, -1):
        v = of.get(f"proc.aname[{n}]") if isinstance(of, dict) else None
        if isinstance(v, str) and v:
            anc.append(v)
    return [*anc, *([pname] if pname else []), name]
