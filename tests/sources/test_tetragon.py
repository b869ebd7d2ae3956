"""TetragonReader on the real upstream events and on realistic generated events of every type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeforensics.redact import MARK
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.tetragon import TetragonReader
from tests.conftest import conformance_files

READERS = {"tetragon": TetragonReader()}
NODE = "gke-prod-pool-1-8f2c"
CONTAINER = "containerd://3b1f7c9a0d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a"


def ts_ns(text: str) -> int:
    return pd.Timestamp(text).value


def process(**over: Any) -> dict[str, Any]:
    """A process object shaped like Tetragon 1.x output (namespaces and caps enabled)."""
    p: dict[str, Any] = {
        "exec_id": "Z2tlLXByb2QtcG9vbC0xLThmMmM6MjI4ODk0NTExNjM5MTk6NTIxMTI=",
        "pid": 52112,
        "uid": 0,
        "cwd": "/",
        "binary": "/usr/bin/curl",
        "arguments": "-s https://10.96.0.1:443/api/v1/namespaces/default/secrets",
        "flags": "execve rootcwd clone",
        "start_time": "2024-05-06T10:21:04.118220513Z",
        "auid": 4294967295,
        "pod": {
            "namespace": "payments",
            "name": "checkout-7d9f8b6c5-x2x4k",
            "uid": "5b0f2d1e-8c3a-4b7e-9a51-0c6d2e7f8a91",
            "container": {
                "id": CONTAINER,
                "name": "checkout",
                "image": {
                    "id": "ghcr.io/acme/checkout@sha256:" + "ab" * 32,
                    "name": "ghcr.io/acme/checkout:2.4.1",
                },
                "start_time": "2024-05-06T09:58:10Z",
                "pid": 31,
            },
            "pod_labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5"},
            "workload": "checkout",
            "workload_kind": "Deployment",
        },
        "docker": "3b1f7c9a0d2e4f6a8b0c1d2e3f4a5b6",
        "parent_exec_id": "Z2tlLXByb2QtcG9vbC0xLThmMmM6MjI4ODkzOTg3NjU0MzI6NTIxMDA=",
        "tid": 52112,
        "refcnt": 1,
        "cap": {
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        },
        "ns": {
            "uts": {"inum": 4026532571},
            "ipc": {"inum": 4026532572},
            "mnt": {"inum": 4026532574},
            "pid": {"inum": 4026532575},
            "net": {"inum": 4026531992, "is_host": True},
            "cgroup": {"inum": 4026531835, "is_host": True},
            "user": {"inum": 4026531837, "is_host": True},
        },
    }
    p.update(over)
    return p


PARENT = {
    "exec_id": "Z2tlLXByb2QtcG9vbC0xLThmMmM6MjI4ODkzOTg3NjU0MzI6NTIxMDA=",
    "pid": 52100,
    "uid": 0,
    "cwd": "/",
    "binary": "/bin/sh",
    "arguments": '-c "curl -s https://10.96.0.1:443/api/v1/namespaces/default/secrets"',
    "flags": "execve rootcwd clone",
    "start_time": "2024-05-06T10:21:04.009871122Z",
    "auid": 4294967295,
    "parent_exec_id": "Z2tlLXByb2QtcG9vbC0xLThmMmM6MjI4ODkxMTExMTExMTE6NTIwOTA=",
}
ANCESTORS = [
    {
        "exec_id": "Z2tlLXByb2QtcG9vbC0xLThmMmM6MjI4ODkxMTExMTExMTE6NTIwOTA=",
        "binary": "/usr/bin/bash",
        "pid": 52090,
    },
    {
        "exec_id": "Z2tlLXByb2QtcG9vbC0xLThmMmM6MTEwMDAwMDAwMDAwOjMx",
        "binary": "/usr/local/bin/checkout",
        "pid": 31,
    },
]


def event(
    key: str, payload: dict[str, Any], time: str | None = "2024-05-06T10:21:04.120554211Z", **env: Any
) -> dict[str, Any]:
    e: dict[str, Any] = {key: payload, "node_name": NODE}
    if time is not None:
        e["time"] = time
    e.update(env)
    return e


def read(tmp_path: Path, events: list[dict[str, Any]], fmt: str | None = "tetragon") -> ReadResult:
    path = tmp_path / "tetragon.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return read_file(path, fmt, readers=READERS)


def one(tmp_path: Path, ev: dict[str, Any]) -> dict[str, Any]:
    res = read(tmp_path, [ev])
    assert res.account.quarantined == 0, res.quarantine
    rows = res.frame("processes").to_dict("records")
    assert len(rows) == 1
    return rows[0]


# --- real upstream events ------------------------------------------------------------------


@pytest.mark.parametrize("path", conformance_files("tetragon"), ids=lambda p: p.name)
def test_conformance_files_ingest_fully(path: Path) -> None:
    res = read_file(path, None, readers=READERS)  # also proves sniffing
    acc = res.account
    assert acc.format == "tetragon"
    assert acc.records > 0
    assert acc.quarantined == 0, res.quarantine
    assert acc.records == acc.ingested == acc.rows["processes"]


def test_conformance_exec_values(conformance: Path) -> None:
    res = read_file(conformance / "tetragon" / "testdata-events.json", "tetragon", readers=READERS)
    df = res.frame("processes")
    first = df.iloc[0]
    assert first.event_type == "exec"
    assert first.node == "my-node"
    assert first.namespace == "default"
    assert first.pod == "tiefighter"
    assert first.container_id == "19a02291e106ce6227b684197be232ea57c4e1a5ab2604a12608c325d701c7f4"
    assert first.container_name == "spaceship"
    assert first.image == "docker.io/tgraf/netperf:latest"
    assert first.binary == "/usr/bin/netserver"
    assert first.args == "-D"
    assert first.parent_binary == "/usr/bin/containerd-shim-runc-v2"
    assert first.parent_pid == 68598
    assert first.pid == 68790
    assert first.auid == 4294967295
    assert json.loads(first.pod_labels)["org"] == "empire"
    # the first event has no `time`: it falls back to the process start time
    assert first.time_source == "process.start_time"
    assert first.time == pd.Timestamp("2022-10-18T03:16:18.273546829Z")
    assert first.time == first.start_time
    assert list(df.time_source[1:]) == ["time", "time"]
    assert df.time[1] == pd.Timestamp("2022-10-18T03:16:21.373327754Z")
    assert df.pod[1] == "deathstar-6f87496b94-qdlh8"


# --- generated events of every type -----------------------------------------------------------


def test_exec_with_namespaces_caps_ancestors_and_workload(tmp_path: Path) -> None:
    row = one(
        tmp_path,
        event(
            "process_exec",
            {"process": process(), "parent": PARENT, "ancestors": ANCESTORS},
            cluster_name="prod-eu1",
        ),
    )
    assert row["event_type"] == "exec"
    assert row["cluster"] == "prod-eu1"
    assert row["node"] == NODE
    assert row["namespace"] == "payments"
    assert row["pod_uid"] == "5b0f2d1e-8c3a-4b7e-9a51-0c6d2e7f8a91"
    assert row["container_id"] == CONTAINER.split("://")[1]
    assert row["image_id"].endswith("ab" * 32)
    assert row["workload"] == "checkout" and row["workload_kind"] == "Deployment"
    assert list(row["host_namespaces"]) == ["net", "cgroup", "user"]
    assert list(row["caps_effective"]) == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
    assert "CAP_SYS_ADMIN" in list(row["caps_permitted"])
    assert list(row["ancestors"]) == [a["exec_id"] for a in ANCESTORS]
    assert row["parent_binary"] == "/bin/sh" and row["parent_pid"] == 52100
    assert row["tid"] == 52112
    assert row["time_source"] == "time"
    assert pd.isna(row["raw"])


def test_exit_status_and_signal(tmp_path: Path) -> None:
    ev = event(
        "process_exit",
        {
            "process": process(),
            "parent": PARENT,
            "signal": "SIGKILL",
            "status": 137,
            "time": "2024-05-06T10:21:09.5Z",
        },
        time="2024-05-06T10:21:09.500112Z",
    )
    row = one(tmp_path, ev)
    assert row["event_type"] == "exit"
    assert row["exit_status"] == 137
    assert row["exit_signal"] == "SIGKILL"
    assert row["time"] == pd.Timestamp("2024-05-06T10:21:09.500112Z")
    # a clean exit: no signal, status 0
    row = one(tmp_path, event("process_exit", {"process": process(), "status": 0}))
    assert row["exit_status"] == 0 and pd.isna(row["exit_signal"])


def test_kprobe_tcp_connect_sock_arg(tmp_path: Path) -> None:
    ev = event(
        "process_kprobe",
        {
            "process": process(),
            "parent": PARENT,
            "function_name": "tcp_connect",
            "args": [
                {
                    "sock_arg": {
                        "family": "AF_INET",
                        "type": "SOCK_STREAM",
                        "protocol": "IPPROTO_TCP",
                        "saddr": "10.244.1.17",
                        "daddr": "45.9.148.35",
                        "sport": 51234,
                        "dport": 3333,
                        "cookie": "18446620011389484672",
                        "state": "TCP_SYN_SENT",
                    }
                }
            ],
            "action": "KPROBE_ACTION_POST",
            "policy_name": "monitor-network-activity-outside-cluster",
            "return_action": "KPROBE_ACTION_POST",
        },
    )
    row = one(tmp_path, ev)
    assert row["event_type"] == "kprobe"
    assert row["function_name"] == "tcp_connect"
    assert row["policy_name"] == "monitor-network-activity-outside-cluster"
    assert row["action"] == "KPROBE_ACTION_POST"
    assert (row["sock_family"], row["sock_protocol"]) == ("AF_INET", "IPPROTO_TCP")
    assert (row["saddr"], row["sport"], row["daddr"], row["dport"]) == (
        "10.244.1.17",
        51234,
        "45.9.148.35",
        3333,
    )
    assert json.loads(row["decoded_args"])[0]["sock_arg"]["cookie"] == "18446620011389484672"
    assert row["pod"] == "checkout-7d9f8b6c5-x2x4k"


def test_kprobe_file_arg_service_account_token(tmp_path: Path) -> None:
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ev = event(
        "process_kprobe",
        {
            "process": process(binary="/bin/cat", arguments=token),
            "parent": PARENT,
            "function_name": "security_file_permission",
            "args": [
                {
                    "file_arg": {
                        "path": "/var/run/secrets/kubernetes.io/serviceaccount/..2024_05_06_09_58_10.1/token",
                        "permission": "-rw-r-----",
                    }
                },
                {"int_arg": 4},
                {"bytes_arg": "ZXlKaGJHY2lPaUpTVXpJMU5pSXM=", "label": "buf"},
            ],
            "return": {"int_arg": 0},
            "action": "KPROBE_ACTION_POST",
            "policy_name": "file-monitoring-filtered",
            "ancestors": ANCESTORS[:1],
            "kernel_stack_trace": [{"address": "18446744072631447780", "symbol": "security_file_permission"}],
        },
    )
    row = one(tmp_path, ev)
    assert row["function_name"] == "security_file_permission"
    assert row["file_path"].startswith("/var/run/secrets/kubernetes.io/serviceaccount/")
    assert row["file_path"].endswith("/token")
    assert row["return_value"] == 0
    args = json.loads(row["decoded_args"])
    assert args[1] == {"int_arg": 4}
    assert args[2]["bytes_arg"] == "ZXlKaGJHY2lPaUpTVXpJMU5pSXM="  # stays base64 text
    assert list(row["ancestors"]) == [ANCESTORS[0]["exec_id"]]  # ancestors on a non-exec event (v1.4+)


def test_kprobe_setns_from_host_namespaces(tmp_path: Path) -> None:
    host_ns = {
        n: {"inum": 4026531830 + i, "is_host": True}
        for i, n in enumerate(["uts", "ipc", "mnt", "pid", "net"])
    }
    ev = event(
        "process_kprobe",
        {
            "process": process(
                binary="/usr/bin/nsenter", arguments="-t 1 -m -u -i -n -p -- bash", ns=host_ns
            ),
            "function_name": "__x64_sys_setns",
            "args": [{"int_arg": 3}, {"int_arg": 1073741824}],
            "return": {"int_arg": 0},
            "action": "KPROBE_ACTION_POST",
            "policy_name": "sys-setns",
        },
    )
    row = one(tmp_path, ev)
    assert row["function_name"] == "__x64_sys_setns"
    assert list(row["host_namespaces"]) == ["uts", "ipc", "mnt", "pid", "net"]
    assert json.loads(row["decoded_args"]) == [{"int_arg": 3}, {"int_arg": 1073741824}]


def test_64bit_integers_as_strings(tmp_path: Path) -> None:
    ev = event(
        "process_kprobe",
        {
            "process": process(pid="52112", tid="52113", uid="1000", auid="4294967295"),
            "parent": {**PARENT, "pid": "52100"},
            "function_name": "fd_install",
            "args": [{"int_arg": 7}, {"file_arg": {"path": "/etc/shadow"}}],
            "return": {"size_arg": "18446744073709551615"},
            "action": "KPROBE_ACTION_POST",
        },
    )
    row = one(tmp_path, ev)
    assert (row["pid"], row["tid"], row["uid"], row["auid"], row["parent_pid"]) == (
        52112,
        52113,
        1000,
        4294967295,
        52100,
    )
    assert row["return_value"] == -1  # uint64 max is -1 as a signed 64-bit value
    assert row["file_path"] == "/etc/shadow"


@pytest.mark.parametrize(
    "docker", ["3b1f7c9a0d2e4f6a8b0c1d2e", "3b1f7c9a0d2e4f6a8b0c1d2e3f4a5b6"], ids=["24-char-2022", "31-char"]
)
def test_docker_id_without_pod(tmp_path: Path, docker: str) -> None:
    p = process(docker=docker)
    del p["pod"]
    row = one(tmp_path, event("process_exec", {"process": p, "parent": PARENT}))
    assert row["container_id"] == docker
    assert pd.isna(row["namespace"]) and pd.isna(row["pod"])


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("2024-05-06T10:21:04Z", 0),
        ("2024-05-06T10:21:04.120Z", 120_000_000),
        ("2024-05-06T10:21:04.120554Z", 120_554_000),
        ("2024-05-06T10:21:04.120554211Z", 120_554_211),
    ],
)
def test_time_fractional_digits(tmp_path: Path, text: str, nanos: int) -> None:
    row = one(tmp_path, event("process_exec", {"process": process()}, time=text))
    assert row["time"].value == ts_ns("2024-05-06T10:21:04Z") + nanos
    assert row["time_source"] == "time"


def test_unknown_event_key_is_kept_with_raw(tmp_path: Path) -> None:
    ev = event(
        "process_connect",
        {
            "process": process(),
            "parent": PARENT,
            "source_ip": "10.244.1.17",
            "destination_ip": "45.9.148.35",
            "destination_port": 3333,
        },
    )
    row = one(tmp_path, ev)
    assert row["event_type"] == "connect"
    assert row["binary"] == "/usr/bin/curl"
    assert row["pod"] == "checkout-7d9f8b6c5-x2x4k"
    raw = json.loads(row["raw"])
    assert raw["process_connect"]["destination_port"] == 3333
    assert raw["node_name"] == NODE
    # an unknown event without a process still counts, when it has a time
    row = one(tmp_path, event("process_listen", {"sock": {"port": 8080}}))
    assert row["event_type"] == "listen" and pd.isna(row["binary"])


def test_tracepoint_lsm_uprobe_usdt_loader(tmp_path: Path) -> None:
    events = [
        event(
            "process_tracepoint",
            {
                "process": process(),
                "subsys": "syscalls",
                "event": "sys_enter_ptrace",
                "args": [{"long_arg": "16"}, {"int_arg": 1}],
                "policy_name": "ptrace",
                "action": "KPROBE_ACTION_POST",
            },
        ),
        event(
            "process_lsm",
            {
                "process": process(),
                "function_name": "bprm_check_security",
                "policy_name": "lsm-exec",
                "args": [{"linux_binprm_arg": {"path": "/tmp/xmrig", "permission": "-rwxr-xr-x"}}],
                "action": "KPROBE_ACTION_POST",
            },
        ),
        event(
            "process_uprobe",
            {
                "process": process(binary="/bin/bash"),
                "path": "/bin/bash",
                "symbol": "readline",
                "policy_name": "bash-readline",
            },
        ),
        event(
            "process_usdt",
            {
                "process": process(),
                "path": "/usr/bin/python3",
                "provider": "python",
                "name": "function__entry",
                "args": [{"string_arg": "login --password hunter2"}],
            },
        ),
        event(
            "process_loader",
            {"process": process(), "path": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "buildid": "q2h0Zg=="},
        ),
    ]
    res = read(tmp_path, events)
    assert res.account.quarantined == 0, res.quarantine
    df = res.frame("processes").set_index("event_type")
    assert df.loc["tracepoint", "function_name"] == "syscalls/sys_enter_ptrace"
    assert df.loc["tracepoint", "policy_name"] == "ptrace"
    assert df.loc["lsm", "function_name"] == "bprm_check_security"
    assert df.loc["lsm", "file_path"] == "/tmp/xmrig"
    assert df.loc["uprobe", "function_name"] == "readline"
    assert df.loc["uprobe", "file_path"] == "/bin/bash"
    assert df.loc["usdt", "function_name"] == "python:function__entry"
    assert "hunter2" not in df.loc["usdt", "decoded_args"] and MARK in df.loc["usdt", "decoded_args"]
    assert df.loc["loader", "file_path"] == "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def test_throttle_and_rate_limit_have_no_process(tmp_path: Path) -> None:
    events = [
        event("process_throttle", {"type": "THROTTLE_START", "cgroup": "cri-containerd-3b1f7c9a0d2e.scope"}),
        event("rate_limit_info", {"number_of_dropped_process_events": "1423"}),
    ]
    res = read(tmp_path, events)
    assert res.account.quarantined == 0, res.quarantine
    df = res.frame("processes")
    assert list(df.event_type) == ["throttle", "rate_limit_info"]
    assert df.action[0] == "THROTTLE_START"
    assert json.loads(df.decoded_args[1]) == {"number_of_dropped_process_events": "1423"}


def test_old_pod_labels_and_stack_trace_drift(tmp_path: Path) -> None:
    p = process()
    p["pod"] = {k: v for k, v in p["pod"].items() if k != "pod_labels"}
    p["pod"]["labels"] = ["k8s:app=checkout", "k8s:io.kubernetes.pod.namespace=payments"]
    ev = event(
        "process_kprobe",
        {"process": p, "function_name": "commit_creds", "stack_trace": [{"address": "1", "symbol": "x"}]},
    )
    row = one(tmp_path, ev)
    assert json.loads(row["pod_labels"]) == {"app": "checkout", "io.kubernetes.pod.namespace": "payments"}
    assert row["function_name"] == "commit_creds"


def test_secrets_in_arguments_are_redacted(tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpkZWZhdWx0In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    p = process(arguments=f'-H "Authorization: Bearer {jwt}" https://10.96.0.1/api --token=s3cr3tT0ken')
    row = one(
        tmp_path,
        event("process_exec", {"process": p, "parent": {**PARENT, "arguments": f"--password hunter2 {jwt}"}}),
    )
    assert jwt not in row["args"] and "s3cr3tT0ken" not in row["args"]
    assert MARK in row["args"] and "https://10.96.0.1/api" in row["args"]
    assert "hunter2" not in row["parent_args"] and jwt not in row["parent_args"]


# --- bad input: quarantined with a reason -----------------------------------------------------


@pytest.mark.parametrize(
    ("ev", "reason"),
    [
        (event("process_exec", {"process": process(pid="fifty")}), "'process.pid' is not an integer"),
        (event("process_exec", {"process": "curl"}), "'process' is str, not an object"),
        (event("process_exec", {"process": process(pod=["payments"])}), "'process.pod' is list"),
        (event("process_exec", {"process": process()}, time="yesterday"), "'time' is not a timestamp"),
        (event("process_exec", {"process": process(start_time=None)}, time=None), "'time' is missing"),
        (event("rate_limit_info", {"number_of_dropped_process_events": "3"}, time=None), "'time' is missing"),
        (
            event("process_kprobe", {"process": process(), "args": {"int_arg": 1}}),
            "'args' is dict, not a list",
        ),
        (
            event("process_kprobe", {"process": process(), "args": [{"sock_arg": {"dport": "https"}}]}),
            "'args.sock_arg.dport'",
        ),
        (event("process_exec", [1, 2]), "'process_exec' is list, not an object"),
        (
            {"process_exec": {"process": process()}, "process_exit": {}, "time": "2024-05-06T10:21:04Z"},
            "exactly one event key",
        ),
    ],
)
def test_wrong_types_are_quarantined_with_reason(tmp_path: Path, ev: dict[str, Any], reason: str) -> None:
    good = event("process_exec", {"process": process()})
    res = read(tmp_path, [good, ev])
    assert res.account.records == 2
    assert res.account.ingested == 1 and res.account.quarantined == 1
    (q,) = res.quarantine
    assert q.line == 2
    assert reason in q.reason


def test_sniff() -> None:
    r = TetragonReader()
    assert r.sniff(event("process_exec", {"process": process()}))
    assert r.sniff(event("process_connect", {"process": process()}, cluster_name="c1"))
    assert r.sniff({"process_kprobe": {"function_name": "tcp_connect"}})
    assert not r.sniff({"process_exec": {}, "process_exit": {}, "node_name": NODE})
    assert not r.sniff({"flow": {"verdict": "FORWARDED"}, "node_name": NODE, "time": "2024-05-06T10:21:04Z"})
    assert not r.sniff({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "get"})
    assert not r.sniff({"process_exec": "x", "node_name": NODE})
