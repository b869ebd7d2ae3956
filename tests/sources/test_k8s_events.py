"""K8sEventsReader on real EventList dumps and on realistic core/v1 and events.k8s.io/v1 Events."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kubeforensics.sources.base import read_file
from kubeforensics.sources.k8s_events import K8sEventsReader
from tests.conftest import conformance_files

READERS = {"k8s-events": K8sEventsReader()}
TS = pd.Timestamp

NEW_API = {
    "apiVersion": "events.k8s.io/v1",
    "kind": "Event",
    "metadata": {
        "name": "miner-7f9c-abcde.17a2b3c4d5e6f708",
        "namespace": "kube-system",
        "uid": "0b8e4c1e-8f1a-4d7e-9c55-3f0f3b2f7a10",
        "creationTimestamp": "2026-03-02T15:20:01Z",
    },
    "eventTime": "2026-03-02T15:20:01.250311Z",
    "series": {"count": 42, "lastObservedTime": "2026-03-02T15:41:07.000981Z"},
    "reportingController": "kubelet",
    "reportingInstance": "worker-3",
    "action": "Pulling",
    "reason": "BackOff",
    "regarding": {
        "kind": "Pod",
        "namespace": "kube-system",
        "name": "miner-7f9c-abcde",
        "uid": "5d1f0a5e-7a3c-4c36-9b8e-0e2b8e0a9c21",
        "fieldPath": "spec.containers{xmrig}",
    },
    "note": "Back-off pulling image \"registry.evil.example/xmrig:6.21\"",
    "type": "Warning",
    "deprecatedSource": {"component": "kubelet", "host": "worker-3"},
    "deprecatedFirstTimestamp": None,
    "deprecatedLastTimestamp": None,
}

CORE_EVENT_TIME_ONLY = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {
        "name": "web-7d9c6b5f4-x2x9q.17a2b3c4d5e6f709",
        "namespace": "shop",
        "uid": "4a0c7c5b-2b1d-4c8e-8d1e-9f6a1e2b3c4d",
        "creationTimestamp": "2026-03-02T15:00:00Z",
    },
    "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-7d9c6b5f4-x2x9q", "uid": "u-1"},
    "reason": "Scheduled",
    "message": "Successfully assigned shop/web-7d9c6b5f4-x2x9q to worker-2",
    "source": {},
    "firstTimestamp": None,
    "lastTimestamp": None,
    "eventTime": "2026-03-02T15:00:00.123456Z",
    "type": "Normal",
    "action": "Binding",
    "reportingComponent": "default-scheduler",
    "reportingInstance": "default-scheduler-cp-1",
}

AUDIT_EVENT = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "7b1e3d1a-0000-4000-8000-000000000001",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/pods",
    "verb": "list",
    "stageTimestamp": "2026-03-02T15:00:00.000000Z",
}


def write_lines(path: Path, *objs: object) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def read(path: Path, fmt: str | None = None):
    return read_file(path, fmt, readers=READERS)


@pytest.mark.parametrize("path", conformance_files("k8s-events"), ids=lambda p: p.name)
def test_conformance_file_fully_accounted(conformance: Path, path: Path) -> None:
    res = read(path)
    acc = res.account
    assert acc.format == "k8s-events"
    assert acc.records == acc.ingested + acc.quarantined
    assert acc.quarantined == 0, [q.reason for q in res.quarantine]
    df = res.frame("k8s_events")
    assert len(df) == acc.ingested == 17
    assert df["time"].notna().all() and df["reason"].notna().all()
    assert (df["count"] >= 1).all()
    assert (df["last_time"] >= df["first_time"]).all()


def test_conformance_image_pull_fail(conformance: Path) -> None:
    df = read(conformance / "k8s-events" / "message-image-pull-fail.json").frame()
    scheduled = df.iloc[0]
    assert scheduled["reason"] == "Scheduled"
    assert scheduled["time_field"] == "eventTime"
    assert scheduled["time"] == TS("2023-07-11T05:34:44.764227Z")
    assert scheduled["count"] == 1
    assert scheduled["component"] == "default-scheduler"
    assert scheduled["reporting_instance"] == "default-scheduler-minikube"
    assert scheduled["action"] == "Binding"
    assert scheduled["message"] == "Successfully assigned default/no-image-deployment-849c4c4958-rxqmt to minikube"

    pulling = df.iloc[1]
    assert (pulling["reason"], pulling["count"], pulling["type"]) == ("Pulling", 4, "Normal")
    assert pulling["time_field"] == "firstTimestamp"
    assert pulling["time"] == TS("2023-07-11T05:34:45Z")
    assert pulling["last_time"] == TS("2023-07-11T05:36:11Z")
    assert (pulling["kind"], pulling["namespace"], pulling["name"]) == (
        "Pod", "message-image-pull-fail", "no-image-deployment-849c4c4958-rxqmt",
    )
    assert pulling["object_uid"] == "209076ce-26d6-4836-981b-8c05cb0081eb"
    assert pulling["field_path"] == "spec.containers{demo-deployment-container}"
    assert (pulling["component"], pulling["host"]) == ("kubelet", "minikube")
    assert pulling["event_name"] == "no-image-deployment-849c4c4958-rxqmt.1770b960b6f1e0ea"
    assert pulling["event_uid"] == "e5ea1f55-0d14-4443-8f79-d5b6ef692f61"
    assert pulling["api"] == "v1"

    # a core/v1 view of an events.k8s.io Event with a series: count and last time come from the series
    sched_fail = df[(df["reason"] == "FailedScheduling") & (df["count"] == 3)].iloc[0]
    assert sched_fail["time"] == TS("2023-07-11T04:25:44.224298Z")
    assert sched_fail["last_time"] == TS("2023-07-11T04:40:44.264058Z")


def test_conformance_backoff_first_occurrence(conformance: Path) -> None:
    df = read(conformance / "k8s-events" / "message-pod-init-crashloop-backoff.json").frame()
    backoff = df[df["count"] == 111].iloc[0]
    assert backoff["reason"] == "BackOff"
    # `time` is the first occurrence; the span is kept
    assert backoff["time"] == backoff["first_time"] == TS("2023-07-11T03:32:15Z")
    assert backoff["last_time"] == TS("2023-07-11T03:56:47Z")
    assert set(df.loc[df["field_path"].notna(), "field_path"]) == {
        "spec.containers{nginx}", "spec.initContainers{install}",
    }


def test_events_k8s_io_v1_with_series(tmp_path: Path) -> None:
    res = read(write_lines(tmp_path / "ev.json", NEW_API))
    assert res.account.format == "k8s-events" and res.account.quarantined == 0
    row = res.frame().iloc[0]
    assert row["api"] == "events.k8s.io/v1"
    assert row["time_field"] == "eventTime"
    assert row["time"] == row["first_time"] == TS("2026-03-02T15:20:01.250311Z")
    assert row["last_time"] == TS("2026-03-02T15:41:07.000981Z")
    assert row["count"] == 42
    assert row["message"] == 'Back-off pulling image "registry.evil.example/xmrig:6.21"'
    assert (row["kind"], row["namespace"], row["name"]) == ("Pod", "kube-system", "miner-7f9c-abcde")
    assert row["object_uid"] == "5d1f0a5e-7a3c-4c36-9b8e-0e2b8e0a9c21"
    assert row["field_path"] == "spec.containers{xmrig}"
    assert (row["component"], row["reporting_instance"], row["host"]) == ("kubelet", "worker-3", "worker-3")
    assert (row["type"], row["reason"], row["action"]) == ("Warning", "BackOff", "Pulling")


def test_events_k8s_io_deprecated_fields_only(tmp_path: Path) -> None:
    ev = {**NEW_API, "eventTime": None, "series": None, "deprecatedCount": 7,
          "deprecatedFirstTimestamp": "2026-03-02T15:20:00Z", "deprecatedLastTimestamp": "2026-03-02T15:30:00Z"}
    row = read(write_lines(tmp_path / "ev.json", ev)).frame().iloc[0]
    assert row["time_field"] == "deprecatedFirstTimestamp"
    assert row["time"] == TS("2026-03-02T15:20:00Z")
    assert row["last_time"] == TS("2026-03-02T15:30:00Z")
    assert row["count"] == 7


def test_core_event_with_null_timestamps_uses_event_time(tmp_path: Path) -> None:
    row = read(write_lines(tmp_path / "ev.json", CORE_EVENT_TIME_ONLY)).frame().iloc[0]
    assert row["time_field"] == "eventTime"
    assert row["time"] == TS("2026-03-02T15:00:00.123456Z")
    assert row["count"] == 1
    assert row["component"] == "default-scheduler"  # source is empty: reportingComponent


@pytest.mark.parametrize(
    "changes, field, expected",
    [
        ({"eventTime": None, "lastTimestamp": "2026-03-02T15:05:00Z"}, "lastTimestamp", "2026-03-02T15:05:00Z"),
        ({"eventTime": None}, "metadata.creationTimestamp", "2026-03-02T15:00:00Z"),
        ({"eventTime": None, "firstTimestamp": "2026-03-02T14:59:00Z", "lastTimestamp": "2026-03-02T15:05:00Z"},
         "firstTimestamp", "2026-03-02T14:59:00Z"),
    ],
)
def test_time_fallback_order(tmp_path: Path, changes: dict, field: str, expected: str) -> None:
    row = read(write_lines(tmp_path / "ev.json", {**CORE_EVENT_TIME_ONLY, **changes})).frame().iloc[0]
    assert (row["time_field"], row["time"]) == (field, TS(expected))


def test_event_list_and_one_per_line(tmp_path: Path) -> None:
    items = [{k: v for k, v in CORE_EVENT_TIME_ONLY.items() if k != "kind"}, {**NEW_API}]
    (tmp_path / "list.json").write_text(json.dumps({"kind": "EventList", "apiVersion": "v1", "items": items}, indent=2))
    res = read(tmp_path / "list.json")
    assert res.account.format == "k8s-events"
    assert (res.account.records, res.account.ingested) == (2, 2)
    assert res.frame()["reason"].tolist() == ["Scheduled", "BackOff"]
    res = read(write_lines(tmp_path / "lines.json", CORE_EVENT_TIME_ONLY, NEW_API, CORE_EVENT_TIME_ONLY))
    assert res.frame()["line"].tolist() == [1, 2, 3]


def test_bad_events_are_quarantined(tmp_path: Path) -> None:
    no_time = {**CORE_EVENT_TIME_ONLY, "eventTime": None, "metadata": {"name": "x"}}
    bad_count = {**CORE_EVENT_TIME_ONLY, "count": "many"}
    bad_target = {**CORE_EVENT_TIME_ONLY, "involvedObject": "Pod/web"}
    res = read(write_lines(tmp_path / "bad.json", CORE_EVENT_TIME_ONLY, no_time, bad_count, bad_target, AUDIT_EVENT),
               "k8s-events")
    acc = res.account
    assert (acc.records, acc.ingested, acc.quarantined) == (5, 1, 4)
    reasons = {q.line: q.reason for q in res.quarantine}
    assert "no usable time" in reasons[2]
    assert "'count' is not an integer" in reasons[3]
    assert "'involvedObject' is str" in reasons[4]
    assert "audit event" in reasons[5]


def test_sniff_never_claims_audit_events() -> None:
    r = K8sEventsReader()
    assert r.sniff(CORE_EVENT_TIME_ONLY) and r.sniff(NEW_API)
    assert not r.sniff(AUDIT_EVENT)
    assert not r.sniff({**AUDIT_EVENT, "apiVersion": None, "reason": "x"})
    assert not r.sniff({**CORE_EVENT_TIME_ONLY, "stage": "ResponseComplete"})
    assert not r.sniff({"kind": "Pod", "metadata": {"name": "p"}})
    assert not r.sniff({"rule": "r", "priority": "Debug", "output": "o"})
