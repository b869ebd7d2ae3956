"""Exact process trees (exec_id/parent_exec_id), host-namespace marks, hidden containers."""

from __future__ import annotations

import json

from kubeforensics.correlate import inferred_tree, process_tree
from kubeforensics.correlate.frames import basename
from tests.conftest import conformance_files
from tests.correlate.cases import escape_case, xid
from tests.correlate.conftest import frame, ts


def test_escape_chain_and_host_namespace_marks():
    t = process_tree(escape_case()["processes"], pod="priv")
    assert t.chain(xid(203)) == "runc → bash → nsenter → bash"
    n = t.to_frame().set_index("exec_id")
    assert bool(n.at[xid(202), "entered_host_ns"])  # nsenter -t 1 with a setns kprobe
    assert bool(n.at[xid(203), "host_namespace"]) and bool(n.at[xid(204), "host_namespace"])
    assert not n.at[xid(201), "host_namespace"]  # the exec'd bash is still in the container
    assert n.at[xid(204), "exit_status"] == 0 and n.at[xid(204), "duration"].total_seconds() == 5
    assert n.at[xid(204), "files"] == ["/etc/kubernetes/manifests/kube-metrics.yaml"]
    assert not n.at[xid(201), "inferred"]
    assert t.ancestors(xid(204)) == [xid(203), xid(202), xid(201), xid(200)]
    assert t.children(xid(202)) == [xid(203)]
    text = t.render_text()
    assert "nsenter -t 1 -m -u -n -i -p bash" in text and "ENTERED-HOST-NS" in text
    assert "agent" not in text  # another container


def test_hidden_container_has_no_api_object_and_is_network_active():
    t = process_tree(escape_case()["processes"])
    n = t.to_frame().set_index("exec_id")
    assert bool(n.at[xid(300), "no_api_object"]) and bool(n.at[xid(300), "network_active"])
    assert not n.at[xid(201), "no_api_object"]
    assert not n.at[xid(300), "entered_host_ns"]  # started in host namespaces by the runtime, not an escape


def test_tree_is_built_from_exec_ids_not_pids():
    # two processes reuse pid 42; the parent relation must follow exec ids
    rows = [
        {
            "event_type": "exec",
            "time": ts(0),
            "exec_id": "A",
            "parent_exec_id": "",
            "pid": 42,
            "binary": "/bin/a",
        },
        {
            "event_type": "exec",
            "time": ts(1),
            "exec_id": "B",
            "parent_exec_id": "A",
            "pid": 43,
            "binary": "/bin/b",
            "parent_pid": 42,
        },
        {
            "event_type": "exec",
            "time": ts(9),
            "exec_id": "C",
            "parent_exec_id": "",
            "pid": 42,
            "binary": "/bin/c",
        },
        {
            "event_type": "exec",
            "time": ts(10),
            "exec_id": "D",
            "parent_exec_id": "C",
            "pid": 44,
            "binary": "/bin/d",
            "parent_pid": 42,
        },
    ]
    t = process_tree(frame("processes", rows))
    assert t.roots == ["A", "C"] and t.children("A") == ["B"] and t.children("C") == ["D"]


def test_inferred_tree_from_falco_names():
    a = [
        {
            "time": ts(3),
            "rule": "Terminal shell",
            "container_id": "abcdefabcdef",
            "namespace": "default",
            "pod": "web",
            "proc_name": "bash",
            "proc_pname": "runc",
            "proc_cmdline": "bash -i",
            "proc_pid": 7,
            "output_fields": json.dumps({"proc.aname[2]": "containerd-shim"}),
        }
    ]
    t = inferred_tree(frame("alerts", a))
    n = t.to_frame()
    assert n["inferred"].all()
    leaf = n[n["binary"] == "bash"].iloc[0]
    assert t.chain(leaf["exec_id"]) == "containerd-shim → runc → bash"
    assert leaf["args"] == "-i" and leaf["event_id"] == "alerts:1"


def test_conformance_tetragon_records_build_a_tree(conformance):
    sources = __import__("pytest").importorskip("kubeforensics.sources")
    files = conformance_files("tetragon")
    assert files
    procs = sources.read_file(files[0]).frame("processes")
    t = process_tree(procs)
    n = t.to_frame()
    assert len(n[n["observed"]]) == 3
    # the parents (containerd-shim) have no exec event of their own and come from the parent block
    shims = n[~n["observed"]]
    assert set(basename(shims["binary"])) == {"containerd-shim-runc-v2"}
    assert all(t.chain(e).startswith("containerd-shim-runc-v2 → ") for e in n.loc[n["observed"], "exec_id"])
    tiefighter = n[n["pod"] == "tiefighter"].iloc[0]
    assert tiefighter["binary"] == "/usr/bin/netserver" and not tiefighter["no_api_object"]
    assert t.render_text().count("\n") == len(n) - 1
