"""FalcoReader on real Falco output and on realistic alerts (falcosidekick, k8s_audit, nulls)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kubeforensics.errors import RecordError
from kubeforensics.sources.base import read_file
from kubeforensics.sources.falco import FalcoReader, priority
from tests.conftest import conformance_files

READERS = {"falco": FalcoReader()}
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFCQyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp3ZWIifQ.c2lnbmF0dXJlc2lnbmF0dXJl"

SIDEKICK = {
    "uuid": "2bdb9d0b-42f3-4f7a-9d1b-5a9e1e6f1c11",
    "output": "15:14:05.123456789: Notice A shell was spawned in a container with an attached terminal "
    "(user=root user_loginuid=-1 k8s.ns=shop k8s.pod=web-7d9c6b5f4-x2x9q container=3ad7b26ded6d "
    "shell=bash parent=runc cmdline=bash -c curl -H 'Authorization: Bearer " + TOKEN + "' https://10.96.0.1)",
    "priority": "Notice",
    "rule": "Terminal shell in container",
    "time": "2026-03-02T15:14:05.123456789Z",
    "source": "syscall",
    "hostname": "worker-2",
    "tags": ["container", "maturity_stable", "mitre_execution", "shell", "T1059"],
    "output_fields": {
        "container.id": "3ad7b26ded6d",
        "container.image.repository": "ghcr.io/acme/shop-web",
        "container.image.tag": "1.4.2",
        "evt.time": 1772464445123456789,
        "k8s.ns.name": "shop",
        "k8s.pod.name": "web-7d9c6b5f4-x2x9q",
        "proc.cmdline": "bash -c curl -H 'Authorization: Bearer " + TOKEN + "' https://10.96.0.1",
        "proc.exepath": "/usr/bin/bash",
        "proc.name": "bash",
        "proc.pname": "runc",
        "proc.pid": 48213,
        "proc.tty": 34816,
        "user.loginuid": -1,
        "user.name": "root",
    },
}

K8S_AUDIT = {
    "output": "14:02:11.000000000: Notice Attach/Exec to pod (user=kubernetes-admin pod=db-0 resource=pods "
    "ns=payments action=exec command=sh)",
    "priority": "NOTICE",
    "rule": "Attach/Exec Pod",
    "source": "k8s_audit",
    "tags": ["k8s", "maturity_incubating", "mitre_execution", "T1609"],
    "time": "2026-03-02T14:02:11.000000000Z",
    "output_fields": {
        "jevt.time.iso8601": "2026-03-02T14:02:11.000Z",
        "ka.target.name": "db-0",
        "ka.target.namespace": "payments",
        "ka.target.resource": "pods",
        "ka.target.subresource": "exec",
        "ka.uri": "/api/v1/namespaces/payments/pods/db-0/exec?command=sh&container=db&stdin=true&tty=true",
        "ka.user.name": "kubernetes-admin",
        "ka.verb": "create",
        "ka.response.code": "101",
    },
}

NULLS = {
    "output": "10:00:00.000000001: Warning Sensitive file opened for reading by non-trusted program "
    "(user=<NA> program=cat file=/etc/shadow container_id=host image=<NA>)",
    "priority": "warning",
    "rule": "Read sensitive file untrusted",
    "time": "2026-03-02T10:00:00.000000001Z",
    "output_fields": {
        "container.id": "host",
        "container.image.repository": None,
        "container.image.tag": None,
        "k8s.ns.name": None,
        "k8s.pod.name": None,
        "proc.cmdline": "cat /etc/shadow",
        "proc.name": "cat",
        "proc.pid": None,
        "user.name": None,
        "fd.name": "/etc/shadow",
    },
}


def write_lines(path: Path, *objs: object) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def read(path: Path, fmt: str | None = None):
    return read_file(path, fmt, readers=READERS)


@pytest.mark.parametrize("path", conformance_files("falco"), ids=lambda p: p.name)
def test_conformance_file_fully_accounted(conformance: Path, path: Path) -> None:
    res = read(path)
    acc = res.account
    assert acc.format == "falco"
    assert acc.records == acc.ingested + acc.quarantined
    assert acc.quarantined == 0, [q.reason for q in res.quarantine]
    assert acc.ingested == res.tables["alerts"].num_rows > 0


def test_conformance_values(conformance: Path) -> None:
    df = read(conformance / "falco" / "single_rule_with_cat_write.json").frame("alerts")
    assert len(df) == 8
    first = df.iloc[0]
    assert first["rule"] == "open_from_cat"
    assert first["priority"] == "Warning"
    assert first["priority_rank"] == 4
    assert first["proc_cmdline"] == "cat /dev/null"
    assert first["hostname"] == "test-falco-hostname"
    assert first["falco_source"] == "syscall"
    assert list(first["tags"]) == ["filesystem", "process", "testing"]
    # nanosecond precision survives
    assert first["time"] == pd.Timestamp("2016-08-04T16:17:57.881781397Z")
    assert first["time"].nanosecond == 397
    assert df["time"].is_monotonic_increasing
    assert json.loads(first["output_fields"])["proc.cmdline"] == "cat /dev/null"


def test_falcosidekick_payload(tmp_path: Path) -> None:
    res = read(write_lines(tmp_path / "sidekick.json", SIDEKICK))
    assert res.account.format == "falco" and res.account.ingested == 1
    row = res.frame().iloc[0]
    assert row["uuid"] == "2bdb9d0b-42f3-4f7a-9d1b-5a9e1e6f1c11"
    assert row["priority"] == "Notice" and row["priority_rank"] == 5
    assert row["image"] == "ghcr.io/acme/shop-web:1.4.2"
    assert row["container_id"] == "3ad7b26ded6d"
    assert (row["namespace"], row["pod"]) == ("shop", "web-7d9c6b5f4-x2x9q")
    assert (row["proc_name"], row["proc_pname"], row["proc_exepath"]) == ("bash", "runc", "/usr/bin/bash")
    assert row["proc_pid"] == 48213
    assert row["user_name"] == "root"
    assert row["time"] == pd.Timestamp("2026-03-02T15:14:05.123456789Z")
    # the bearer token is redacted everywhere it appeared
    for col in ("output", "proc_cmdline", "output_fields"):
        assert TOKEN not in row[col]
        assert "[REDACTED]" in row[col]
    assert "curl" in row["proc_cmdline"]


def test_k8s_audit_alert(tmp_path: Path) -> None:
    row = read(write_lines(tmp_path / "ka.json", K8S_AUDIT)).frame().iloc[0]
    assert row["falco_source"] == "k8s_audit"
    assert row["priority"] == "Notice" and row["priority_rank"] == 5
    assert row["ka_user"] == "kubernetes-admin"
    assert row["ka_verb"] == "create"
    assert row["ka_resource"] == "pods"
    assert (row["ka_namespace"], row["ka_name"]) == ("payments", "db-0")
    assert row["ka_response_code"] == "101"
    assert row["ka_uri"].startswith("/api/v1/namespaces/payments/pods/db-0/exec?command=sh")
    # the target is a pod: namespace/pod are filled from ka.target
    assert (row["namespace"], row["pod"]) == ("payments", "db-0")
    assert pd.isna(row["container_id"])


def test_k8s_audit_non_pod_target_leaves_pod_empty(tmp_path: Path) -> None:
    alert = json.loads(json.dumps(K8S_AUDIT))
    alert["output_fields"].update({"ka.target.resource": "secrets", "ka.target.name": "db-creds"})
    row = read(write_lines(tmp_path / "ka.json", alert)).frame().iloc[0]
    assert row["ka_resource"] == "secrets" and row["ka_name"] == "db-creds"
    assert pd.isna(row["pod"]) and pd.isna(row["namespace"])


def test_null_output_fields_and_lower_case_priority(tmp_path: Path) -> None:
    res = read(write_lines(tmp_path / "nulls.json", NULLS))
    assert res.account.quarantined == 0
    row = res.frame().iloc[0]
    assert row["priority"] == "Warning" and row["priority_rank"] == 4
    assert pd.isna(row["image"]) and pd.isna(row["namespace"]) and pd.isna(row["user_name"])
    assert pd.isna(row["proc_pid"])
    assert row["container_id"] == "host"
    assert row["fd_name"] == "/etc/shadow"
    assert json.loads(row["output_fields"])["k8s.pod.name"] is None


@pytest.mark.parametrize(
    "given, name, rank",
    [
        ("Emergency", "Emergency", 0),
        ("ALERT", "Alert", 1),
        ("critical", "Critical", 2),
        ("Error", "Error", 3),
        ("Warning", "Warning", 4),
        ("notice", "Notice", 5),
        ("Informational", "Informational", 6),
        ("Info", "Informational", 6),
        ("debug", "Debug", 7),
    ],
)
def test_priority_names(given: str, name: str, rank: int) -> None:
    assert priority(given) == (name, rank)


@pytest.mark.parametrize("bad", ["Severe", "", None, 3])
def test_unknown_priority_is_an_error(bad: object) -> None:
    with pytest.raises(RecordError, match="priority"):
        priority(bad)


def test_time_fallbacks(tmp_path: Path) -> None:
    no_time_evt = {**SIDEKICK}
    del no_time_evt["time"]
    no_time_jevt = {**K8S_AUDIT}
    del no_time_jevt["time"]
    df = read(write_lines(tmp_path / "t.json", no_time_evt, no_time_jevt)).frame()
    assert df["time"].tolist() == [
        pd.Timestamp("2026-03-02T15:14:05.123456789Z"),  # output_fields evt.time (integer ns)
        pd.Timestamp("2026-03-02T14:02:11Z"),  # jevt.time.iso8601
    ]


def test_bad_alerts_are_quarantined_with_reasons(tmp_path: Path) -> None:
    no_time = {**NULLS, "output_fields": {"proc.name": "cat"}}
    del no_time["time"]
    bad_prio = {**NULLS, "priority": "Severe"}
    bad_time = {**NULLS, "time": "yesterday"}
    bad_fields = {**NULLS, "output_fields": ["not", "an", "object"]}
    bad_pid = {**NULLS, "output_fields": {"proc.pid": "forty-two"}}
    res = read(write_lines(tmp_path / "bad.json", SIDEKICK, no_time, bad_prio, bad_time, bad_fields, bad_pid), "falco")
    acc = res.account
    assert (acc.records, acc.ingested, acc.quarantined) == (6, 1, 5)
    reasons = {q.line: q.reason for q in res.quarantine}
    assert "'time' is missing" in reasons[2]
    assert "not a Falco priority: 'Severe'" in reasons[3]
    assert "'time' is not a timestamp: 'yesterday'" in reasons[4]
    assert "'output_fields' is list" in reasons[5]
    assert "'output_fields.proc.pid' is not an integer" in reasons[6]


def test_sniff() -> None:
    r = FalcoReader()
    assert r.sniff(SIDEKICK) and r.sniff(K8S_AUDIT)
    assert r.sniff({"rule": "x", "priority": "Debug", "output_fields": {}})
    assert not r.sniff({"rule": "x", "priority": "Debug"})
    assert not r.sniff({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a", "stage": "ResponseComplete"})
    assert not r.sniff({"process_exec": {}, "node_name": "n", "time": "2026-01-01T00:00:00Z"})
