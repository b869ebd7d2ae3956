"""Tetragon export records (``tetra getevents -o json`` / the export file): one event key per line."""

from __future__ import annotations

import base64
from typing import Any

from kubeforensics.simulate.clock import rfc0, rfc9
from kubeforensics.simulate.cluster import Process

NS_KINDS = ("uts", "ipc", "mnt", "pid", "pid_for_children", "net", "time", "time_for_children", "cgroup", "user")
HOST_INUM = {"uts": 4026531838, "ipc": 4026531839, "mnt": 4026531841, "pid": 4026531836, "pid_for_children": 4026531836,
             "net": 4026531840, "time": 4026531834, "time_for_children": 4026531834, "cgroup": 4026531835,
             "user": 4026531837}


def _ns(p: Process) -> dict[str, Any]:
    """Namespaces; a container's own namespaces get inums derived from its id."""
    c = p.container
    if p.host_ns or c is None:
        return {k: {"inum": v, "is_host": True} for k, v in HOST_INUM.items()}
    base = 4026532000 + int(c.cid[:4], 16) % 60000 * 8
    pod = p.pod
    out: dict[str, Any] = {}
    for i, k in enumerate(NS_KINDS):
        host = k in ("time", "time_for_children", "user") or (
            pod is not None and ((k == "net" and pod.host_network) or (k.startswith("pid") and pod.host_pid))
        )
        out[k] = {"inum": HOST_INUM[k], "is_host": True} if host else {"inum": base + i}
    return out


def _pod(p: Process) -> dict[str, Any]:
    pod, c = p.pod, p.container
    assert pod is not None and c is not None
    container: dict[str, Any] = {
        "id": f"containerd://{c.cid}",
        "name": c.name,
        "image": {"id": c.image_id, "name": c.image},
        "start_time": rfc0(c.start_ns),
        "pid": p.cpid,
    }
    if p.exec_probe:
        container["maybe_exec_probe"] = True
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "container": container,
        "pod_labels": dict(pod.labels),
        "workload": pod.workload_name,
        "workload_kind": pod.workload_kind,
    }


def process(p: Process, *, refcnt: int = 1) -> dict[str, Any]:
    """The ``process`` object (cached per process and refcnt)."""
    key = f"proc{refcnt}"
    d = p.cache.get(key)
    if d is not None:
        return d
    d = {"exec_id": p.exec_id, "pid": p.pid, "uid": p.uid, "cwd": p.cwd, "binary": p.binary}
    if p.args:
        d["arguments"] = p.args
    d["flags"] = p.flags
    d["start_time"] = rfc9(p.start_ns)
    d["auid"] = 4294967295
    if p.pod is not None and p.container is not None:
        if not (p.pod.static and not p.pod.mirror):  # no API object: Tetragon has no pod block, only docker
            d["pod"] = _pod(p)
        d["docker"] = p.container.cid[:31]
    elif p.hidden_docker:
        d["docker"] = p.hidden_docker[:31]
    if p.parent is not None:
        d["parent_exec_id"] = p.parent.exec_id
    d["refcnt"] = refcnt
    d["ns"] = _ns(p)
    d["tid"] = p.pid
    if p.host_ns and p.pod is None and p.parent is None:
        d["in_init_tree"] = True
    p.cache[key] = d
    return d


def _envelope(key: str, body: dict[str, Any], p: Process, t: int) -> dict[str, Any]:
    return {key: body, "node_name": p.node.name, "time": rfc9(t)}


def exec_event(p: Process) -> dict[str, Any]:
    body: dict[str, Any] = {"process": process(p)}
    if p.parent is not None:
        body["parent"] = process(p.parent, refcnt=2)
    return _envelope("process_exec", body, p, p.start_ns)


def exit_event(p: Process, t: int, status: int = 0, signal: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"process": process(p, refcnt=0)}
    if p.parent is not None:
        body["parent"] = process(p.parent, refcnt=2)
    if signal:
        body["signal"] = signal
    if status:
        body["status"] = status
    body["time"] = rfc9(t)
    return _envelope("process_exit", body, p, t)


def sock_arg(saddr: str, sport: int, daddr: str, dport: int, proto: str = "TCP") -> dict[str, Any]:
    tcp = proto == "TCP"
    return {"sock_arg": {
        "family": "AF_INET", "type": "SOCK_STREAM" if tcp else "SOCK_DGRAM",
        "protocol": "IPPROTO_TCP" if tcp else "IPPROTO_UDP", "mark": 0, "priority": 0,
        "saddr": saddr, "daddr": daddr, "sport": sport, "dport": dport,
        "cookie": str(0xFFFF8F0000000000 + (sport * 7919 + dport) % (1 << 32)),
        "state": "TCP_SYN_SENT" if tcp else "TCP_CLOSE",
    }}


def file_arg(path: str, permission: str = "-rw-r--r--") -> dict[str, Any]:
    return {"file_arg": {"path": path, "permission": permission}}


def bytes_arg(data: bytes) -> dict[str, Any]:
    return {"bytes_arg": base64.b64encode(data).decode()}


def kprobe(p: Process, t: int, function_name: str, args: list[dict[str, Any]], policy: str,
           ret: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"process": process(p)}
    if p.parent is not None:
        body["parent"] = process(p.parent, refcnt=2)
    body["function_name"] = function_name
    body["args"] = args
    if ret is not None:
        body["return"] = ret
    body["action"] = "KPROBE_ACTION_POST"
    body["policy_name"] = policy
    if ret is not None:
        body["return_action"] = "KPROBE_ACTION_POST"
    return _envelope("process_kprobe", body, p, t)
