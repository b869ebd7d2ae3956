"""A small, realistic container-escape case built by hand (schema columns, reader-typed values).

Story: alice (stolen kubeconfig, from 203.0.113.5) creates a privileged hostNetwork pod
``default/priv``, execs ``/bin/bash`` into it, runs ``nsenter -t 1 -m -u -n -i -p bash``,
writes a static-pod manifest; the kubelet starts a hidden container (no pod block) whose
``/tmp/agent`` beacons to 198.51.100.9:443.  Meanwhile the token of ``shop/web-1``
(10.244.1.5) is used from 198.51.100.7, and a shell appears in ``shop/web-1`` with no exec
in the audit log.
"""

from __future__ import annotations

import base64
import json

import pandas as pd

from tests.correlate.conftest import frame, ts

NODE = "node-1"
NODE_IP = "10.0.0.11"
PRIV_CID = "a" * 8 + "0123456789abcdef" * 3 + "b" * 8
HIDDEN_CID = "c" * 8 + "fedcba9876543210" * 3 + "d" * 8
WEB_CID = "e" * 8 + "00112233445566778899aabbccddeeff"[:24] + "f" * 32


def xid(pid: int, ktime: int = 1000) -> str:
    return base64.b64encode(f"{NODE}:{ktime + pid}:{pid}".encode()).decode()


def audit_rows() -> list[dict]:
    pod_obj = {
        "metadata": {"name": "priv", "namespace": "default", "uid": "uid-priv"},
        "spec": {"nodeName": NODE, "hostNetwork": True, "hostPID": True, "serviceAccountName": "default"},
    }
    base = {
        "audit_version": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "user_groups": ["system:authenticated"],
    }
    rows = [
        # pod create, two stages of the same request
        {
            **base,
            "audit_id": "a-create",
            "stage": "RequestReceived",
            "time": ts(10),
            "request_time": ts(10),
            "verb": "create",
            "user": "alice",
            "source_ip": "203.0.113.5",
            "resource": "pods",
            "namespace": "default",
            "request_object": json.dumps(pod_obj),
            "pod_privileged": True,
            "pod_host_network": True,
            "pod_host_pid": True,
            "user_agent": "kubectl/v1.30.0",
        },
        {
            **base,
            "audit_id": "a-create",
            "stage": "ResponseComplete",
            "time": ts(10.4),
            "request_time": ts(10),
            "stage_time": ts(10.4),
            "verb": "create",
            "user": "alice",
            "source_ip": "203.0.113.5",
            "resource": "pods",
            "namespace": "default",
            "name": "",
            "code": 201,
            "request_object": json.dumps(pod_obj),
            "response_object": json.dumps({**pod_obj, "status": {"hostIP": NODE_IP, "podIP": NODE_IP}}),
            "pod_privileged": True,
            "pod_host_network": True,
            "pod_host_pid": True,
            "decision": "allow",
            "authz_reason": 'RBAC: allowed by ClusterRoleBinding "ops-admin"',
        },
        # exec (ResponseStarted 101)
        {
            **base,
            "audit_id": "a-exec",
            "stage": "ResponseStarted",
            "time": ts(60),
            "request_time": ts(60),
            "verb": "create",
            "user": "alice",
            "source_ip": "203.0.113.5",
            "resource": "pods",
            "subresource": "exec",
            "namespace": "default",
            "name": "priv",
            "code": 101,
            "exec_command": "/bin/bash",
            "exec_container": "priv",
            "exec_stdin": True,
            "exec_tty": True,
            "request_uri": "/api/v1/namespaces/default/pods/priv/exec?command=%2Fbin%2Fbash&container=priv&stdin=true&tty=true",
        },
        # web-1 pod known with IP via status patch by the kubelet
        {
            **base,
            "audit_id": "a-web-status",
            "stage": "ResponseComplete",
            "time": ts(1),
            "request_time": ts(1),
            "verb": "patch",
            "user": f"system:node:{NODE}",
            "source_ip": NODE_IP,
            "resource": "pods",
            "subresource": "status",
            "namespace": "shop",
            "name": "web-1",
            "code": 200,
            "response_object": json.dumps(
                {
                    "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-web"},
                    "spec": {"nodeName": NODE, "serviceAccountName": "web"},
                    "status": {"podIP": "10.244.1.5", "hostIP": NODE_IP},
                }
            ),
        },
        # the web-1 token used legitimately, then from outside
        {
            **base,
            "audit_id": "a-tok-1",
            "stage": "ResponseComplete",
            "time": ts(30),
            "request_time": ts(30),
            "verb": "get",
            "user": "system:serviceaccount:shop:web",
            "source_ip": "10.244.1.5",
            "resource": "configmaps",
            "namespace": "shop",
            "name": "cfg",
            "code": 200,
            "sa_pod_name": "web-1",
            "sa_pod_uid": "uid-web",
            "sa_node_name": NODE,
            "sa_credential_id": "JTI=tok-web",
        },
        {
            **base,
            "audit_id": "a-tok-2",
            "stage": "ResponseComplete",
            "time": ts(300),
            "request_time": ts(300),
            "verb": "list",
            "user": "system:serviceaccount:shop:web",
            "source_ip": "198.51.100.7",
            "resource": "secrets",
            "namespace": "shop",
            "code": 200,
            "sa_pod_name": "web-1",
            "sa_pod_uid": "uid-web",
            "sa_node_name": NODE,
            "sa_credential_id": "JTI=tok-web",
        },
        # noise: leases
        *[
            {
                **base,
                "audit_id": f"lease-{i}",
                "stage": "ResponseComplete",
                "time": ts(10 * i),
                "request_time": ts(10 * i),
                "verb": "update",
                "user": f"system:node:{NODE}",
                "source_ip": NODE_IP,
                "resource": "leases",
                "namespace": "kube-node-lease",
                "name": NODE,
                "code": 200,
            }
            for i in range(12)
        ],
        # the original pod deleted at the end
        {
            **base,
            "audit_id": "a-del",
            "stage": "ResponseComplete",
            "time": ts(900),
            "request_time": ts(900),
            "verb": "delete",
            "user": "alice",
            "source_ip": "203.0.113.5",
            "resource": "pods",
            "namespace": "default",
            "name": "priv",
            "code": 200,
        },
    ]
    return rows


def proc(
    event_type: str,
    t: float,
    pid: int,
    binary: str,
    args: str = "",
    parent: int | None = None,
    *,
    pod: str | None = "priv",
    ns: str = "default",
    cid: str = PRIV_CID,
    host_ns: list[str] | None = None,
    parent_binary: str = "",
    **kw,
) -> dict:
    row = {
        "event_type": event_type,
        "time": ts(t),
        "time_source": "time",
        "node": NODE,
        "exec_id": xid(pid),
        "parent_exec_id": xid(parent) if parent else "",
        "pid": pid,
        "uid": 0,
        "binary": binary,
        "args": args,
        "start_time": ts(t) if event_type == "exec" else None,
        "container_id": cid,
        "host_namespaces": host_ns if host_ns is not None else ["pid", "pid_for_children", "net"],
        "parent_binary": parent_binary,
        "parent_pid": parent,
    }
    if pod:
        row.update(
            namespace=ns, pod=pod, container_name=pod.split("-")[0], pod_uid=f"uid-{pod.split('-')[0]}"
        )
    row.update(kw)
    return row


HOST = ["mnt", "uts", "ipc", "pid", "pid_for_children", "net", "cgroup"]


def process_rows() -> list[dict]:
    return [
        proc(
            "exec",
            11,
            100,
            "/usr/bin/sleep",
            "infinity",
            90,
            parent_binary="/usr/bin/containerd-shim-runc-v2",
        ),
        proc("exec", 60.3, 200, "/usr/sbin/runc", "exec -t priv", None, pod=None, cid="", host_ns=HOST),
        proc("exec", 60.5, 201, "/bin/bash", "", 200, parent_binary="/usr/sbin/runc"),
        proc("exec", 75, 202, "/usr/bin/nsenter", "-t 1 -m -u -n -i -p bash", 201, parent_binary="/bin/bash"),
        proc(
            "kprobe",
            75.01,
            202,
            "/usr/bin/nsenter",
            "-t 1 -m -u -n -i -p bash",
            201,
            function_name="__x64_sys_setns",
            policy_name="namespaces",
        ),
        proc("exec", 75.02, 203, "/bin/bash", "", 202, host_ns=HOST, parent_binary="/usr/bin/nsenter"),
        proc(
            "exec", 90, 204, "/usr/bin/tee", "/etc/kubernetes/manifests/kube-metrics.yaml", 203, host_ns=HOST
        ),
        proc(
            "kprobe",
            90.1,
            204,
            "/usr/bin/tee",
            "/etc/kubernetes/manifests/kube-metrics.yaml",
            203,
            host_ns=HOST,
            function_name="fd_install",
            file_path="/etc/kubernetes/manifests/kube-metrics.yaml",
        ),
        proc("exit", 95, 204, "/usr/bin/tee", "", 203, host_ns=HOST, exit_status=0),
        # hidden static pod: no pod block, only the container id
        proc(
            "exec",
            120,
            300,
            "/tmp/agent",
            "--beacon",
            290,
            pod=None,
            cid=HIDDEN_CID[:31],
            host_ns=HOST,
            parent_binary="/usr/bin/containerd-shim-runc-v2",
        ),
        proc(
            "kprobe",
            121,
            300,
            "/tmp/agent",
            "--beacon",
            290,
            pod=None,
            cid=HIDDEN_CID[:31],
            host_ns=HOST,
            function_name="tcp_connect",
            sock_protocol="TCP",
            saddr=NODE_IP,
            daddr="198.51.100.9",
            sport=40001,
            dport=443,
        ),
        # shell in web-1 with no exec in audit (kubelet API)
        proc(
            "exec",
            400,
            500,
            "/bin/sh",
            "-c id",
            490,
            pod="web-1",
            ns="shop",
            cid=WEB_CID,
            host_ns=[],
            parent_binary="/usr/sbin/runc",
        ),
        # web-1 entrypoint (runtime parent, not interactive)
        proc(
            "exec",
            0.5,
            480,
            "/usr/local/bin/gunicorn",
            "app:app",
            470,
            pod="web-1",
            ns="shop",
            cid=WEB_CID,
            host_ns=[],
            parent_binary="/usr/bin/containerd-shim-runc-v2",
        ),
        proc(
            "kprobe",
            31,
            480,
            "/usr/local/bin/gunicorn",
            "app:app",
            470,
            pod="web-1",
            ns="shop",
            cid=WEB_CID,
            host_ns=[],
            function_name="tcp_connect",
            saddr="10.244.1.5",
            daddr="10.96.0.1",
            sport=51000,
            dport=443,
        ),
    ]


def flow_rows() -> list[dict]:
    return [
        {
            "time": ts(121.002),
            "verdict": "FORWARDED",
            "flow_type": "L3_L4",
            "src_ip": NODE_IP,
            "dst_ip": "198.51.100.9",
            "protocol": "TCP",
            "src_port": 40001,
            "dst_port": 443,
            "tcp_flags": "SYN",
            "src_labels": ["reserved:host"],
            "dst_labels": ["reserved:world"],
            "node": NODE,
        },
        {
            "time": ts(31.001),
            "verdict": "FORWARDED",
            "flow_type": "L3_L4",
            "src_ip": "10.244.1.5",
            "dst_ip": "10.96.0.1",
            "protocol": "TCP",
            "src_port": 51000,
            "dst_port": 443,
            "tcp_flags": "SYN",
            "src_namespace": "shop",
            "src_pod": "web-1",
            "node": NODE,
        },
    ]


def alert_rows() -> list[dict]:
    return [
        {
            "time": ts(60.6),
            "rule": "Terminal shell in container",
            "priority": "Notice",
            "priority_rank": 5,
            "falco_source": "syscall",
            "hostname": NODE,
            "container_id": PRIV_CID[:12],
            "namespace": "default",
            "pod": "priv",
            "proc_name": "bash",
            "proc_cmdline": "bash",
            "proc_pname": "runc",
            "proc_pid": 201,
            "tags": ["container", "shell", "mitre_execution", "T1059"],
            "output": "A shell was spawned in a container with an attached terminal (user=root bash)",
            "output_fields": json.dumps({"proc.aname[2]": "containerd-shim"}),
        },
    ]


def event_rows() -> list[dict]:
    return [
        {
            "time": ts(10.5),
            "kind": "Pod",
            "namespace": "default",
            "name": "priv",
            "reason": "Scheduled",
            "type": "Normal",
            "message": f"Successfully assigned default/priv to {NODE}",
            "component": "default-scheduler",
        },
        {
            "time": ts(11),
            "kind": "Pod",
            "namespace": "default",
            "name": "priv",
            "reason": "Started",
            "type": "Normal",
            "message": "Started container priv",
            "host": NODE,
        },
    ]


def escape_case() -> dict[str, pd.DataFrame]:
    return {
        "audit": frame("audit", audit_rows()),
        "processes": frame("processes", process_rows()),
        "flows": frame("flows", flow_rows()),
        "alerts": frame("alerts", alert_rows()),
        "k8s_events": frame("k8s_events", event_rows()),
    }
