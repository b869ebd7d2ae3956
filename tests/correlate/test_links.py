"""Cross-source links and blind spots on the hand-built escape case."""

from __future__ import annotations

import pandas as pd

from kubeforensics.correlate import blind_spots, links
from tests.correlate.cases import audit_rows, escape_case
from tests.correlate.conftest import frame, ts


def _by(kind: str, df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == kind]


def test_exec_session_links_to_the_exact_processes_it_started():
    lk = links(escape_case())
    direct = _by("exec_session", lk)
    assert direct[["from_event_id", "to_event_id"]].values.tolist() == [["audit:3", "processes:3"]]
    assert "alice" in direct["reason"].iloc[0] and "command and args match" in direct["reason"].iloc[0]
    desc = _by("exec_descendant", lk)
    # nsenter, the host bash and tee -- not the container entrypoint, not the hidden container's agent
    assert sorted(desc["to_event_id"]) == ["processes:4", "processes:6", "processes:7"]
    assert set(desc["session"]) == {"audit:3"}


def test_exec_with_websocket_get_verb_links_too_and_other_command_does_not():
    case = escape_case()
    rows = audit_rows()
    rows[2] = {**rows[2], "verb": "get", "stage": "ResponseComplete", "code": 101}
    case["audit"] = frame("audit", rows)
    assert _by("exec_session", links(case))["to_event_id"].tolist() == ["processes:3"]
    rows[2] = {**rows[2], "exec_command": "/usr/bin/python3 -c x"}
    case["audit"] = frame("audit", rows)
    assert _by("exec_session", links(case)).empty


def test_tcp_connect_links_to_the_hubble_flow_with_the_same_tuple():
    lk = _by("connect_flow", links(escape_case()))
    assert sorted(lk[["from_event_id", "to_event_id"]].values.tolist()) == [
        ["processes:11", "flows:1"],
        ["processes:14", "flows:2"],
    ]


def test_token_used_from_a_foreign_ip_is_flagged_and_home_use_is_not():
    lk = _by("token_use", links(escape_case()))
    assert set(lk["from_event_id"]) == {"JTI=tok-web"}
    flagged = lk[lk["flag"] != ""]
    assert flagged["to_event_id"].tolist() == ["audit:6"] and flagged["flag"].iloc[0] == "foreign_ip"
    assert "198.51.100.7" in flagged["reason"].iloc[0] and "10.244.1.5" in flagged["reason"].iloc[0]
    assert lk.loc[lk["to_event_id"] == "audit:5", "flag"].iloc[0] == ""


def test_unbound_token_from_a_new_address_is_flagged_and_its_usual_client_is_not():
    base = {
        "stage": "ResponseComplete",
        "verb": "list",
        "resource": "secrets",
        "code": 200,
        "user": "system:serviceaccount:ci:deployer",
        "sa_credential_id": "JTI=ci",
    }
    rows = [
        {**base, "time": ts(5), "audit_id": "u1", "source_ip": "198.51.100.74"},
        {**base, "time": ts(50), "audit_id": "u2", "source_ip": "198.51.100.74"},
        {**base, "time": ts(90), "audit_id": "u3", "source_ip": "203.0.113.77"},
    ]
    lk = links({"audit": frame("audit", rows)}, kinds=["token_use"])
    assert lk["flag"].tolist() == ["", "", "new_source_ip"]
    assert "203.0.113.77" in lk["reason"].iloc[2]


def test_falco_alert_links_to_process_and_pod():
    lk = links(escape_case(), kinds=["alert_process", "alert_pod"])
    assert _by("alert_process", lk)[["from_event_id", "to_event_id"]].values.tolist() == [
        ["alerts:1", "processes:3"]
    ]
    assert _by("alert_pod", lk)["to_event_id"].tolist() == ["default/priv"]


def test_pod_create_links_events_and_first_process():
    lk = links(escape_case(), kinds=["pod_event", "pod_process"])
    assert sorted(_by("pod_event", lk)["to_event_id"]) == ["k8s_events:1", "k8s_events:2"]
    assert _by("pod_process", lk)["to_event_id"].tolist() == ["processes:1"]
    assert set(lk["from_event_id"]) == {"audit:2"}  # the ResponseComplete stage of the create


def test_blind_spots():
    b = blind_spots(escape_case())
    assert sorted(b["kind"]) == ["no_api_object", "unaudited_exec"]
    un = b[b["kind"] == "unaudited_exec"].iloc[0]
    assert (un["namespace"], un["pod"], un["process"], un["event_id"]) == (
        "shop",
        "web-1",
        "/bin/sh",
        "processes:12",
    )
    hid = b[b["kind"] == "no_api_object"].iloc[0]
    assert hid["process"] == "/tmp/agent" and hid["container_id"].startswith("cccccccc")


def test_repeated_runtime_shell_is_a_probe_not_a_blind_spot():
    case = escape_case()
    procs = case["processes"]
    probe = procs[procs["event_id"] == "processes:12"]
    more = pd.concat(
        [
            probe.assign(
                exec_id=f"probe{i}",
                event_id=f"p{i}",
                time=probe["time"] + pd.Timedelta(seconds=10 * i),
                start_time=probe["start_time"] + pd.Timedelta(seconds=10 * i),
            )
            for i in range(1, 4)
        ]
    )
    case["processes"] = pd.concat([procs, more], ignore_index=True)
    assert "unaudited_exec" not in set(blind_spots(case)["kind"])


def test_audit_from_unowned_pod_ip():
    case = escape_case()
    rows = audit_rows() + [
        {
            "time": ts(500),
            "audit_id": "ghost",
            "stage": "ResponseComplete",
            "verb": "list",
            "resource": "pods",
            "user": "system:anonymous",
            "source_ip": "10.244.3.3",
            "code": 200,
        }
    ]
    case["audit"] = frame("audit", rows)
    b = blind_spots(case)
    ghost = b[b["kind"] == "unowned_pod_ip"]
    assert ghost["src_ip"].tolist() == ["10.244.3.3"] and ghost["actor"].tolist() == ["system:anonymous"]
