"""The story on the hand-built case: steps, merging, enrichment, seeds, contract, noise."""

from __future__ import annotations

import json

import pandas as pd

from kubeforensics.correlate import build_story, collapse_noise
from kubeforensics.correlate.story import JSON_KEYS
from kubeforensics.schema import TIMELINE
from tests.correlate.cases import escape_case
from tests.correlate.conftest import T0

NO_FINDINGS = pd.DataFrame(
    columns=[
        "rule_id",
        "title",
        "severity",
        "techniques",
        "tactic",
        "first_seen",
        "last_seen",
        "namespace",
        "pod",
        "actor",
        "event_ids",
        "count",
        "summary",
    ]
)


def _steps(story):
    return [
        (s.tactic, s.techniques[0], s.pod, s.actor, s.process.rsplit("/", 1)[-1], s.dst_ip, s.severity)
        for s in story.steps
    ]


def test_story_from_correlation_alone():
    story = build_story(escape_case(), findings=NO_FINDINGS, min_severity="low")
    assert _steps(story) == [
        ("Execution", "T1609", "priv", "alice", "bash", "", "medium"),
        ("Privilege Escalation", "T1611", "priv", "alice", "nsenter", "", "high"),
        ("Persistence", "T1543.005", "", "", "agent", "198.51.100.9", "high"),
        ("Credential Access", "T1528", "web-1", "system:serviceaccount:shop:web", "", "", "high"),
        ("Execution", "T1609", "web-1", "", "sh", "", "medium"),
    ]
    exec_step = story.steps[0]
    # the Falco shell alert (Notice: low) and the exec session are one step, with both reasons and all evidence
    assert (
        "T1059" in exec_step.techniques
        and "alerts:1" in exec_step.event_ids
        and "audit:3" in exec_step.event_ids
    )
    assert len(exec_step.why) == 2
    assert story.steps[0].time == T0 + pd.Timedelta(seconds=60)
    # by default (no seed) low-severity candidates stay out
    default = build_story(escape_case(), findings=NO_FINDINGS)
    assert default.steps[0].techniques == ["T1609"] and len(default.steps) == 5


def test_json_contract():
    doc = build_story(escape_case(), findings=NO_FINDINGS).to_json()
    assert list(doc) == ["steps"]
    step = doc["steps"][0]
    assert list(step)[: len(JSON_KEYS)] == list(JSON_KEYS)
    assert step["time"] == "2026-03-01T10:01:00Z"
    json.dumps(doc)  # serialisable as is


def test_findings_drive_steps_and_are_enriched_from_evidence():
    findings = pd.DataFrame(
        [
            {
                "rule_id": "K8S-PRIV-POD",
                "title": "Privileged pod created",
                "severity": "high",
                "techniques": ["T1610"],
                "tactic": "Execution",
                "first_seen": T0 + pd.Timedelta(seconds=10),
                "last_seen": T0 + pd.Timedelta(seconds=10),
                "namespace": "default",
                "pod": "",
                "actor": "",
                "event_ids": ["audit:2"],
                "count": 1,
                "summary": "alice created privileged hostNetwork pod default/priv",
            }
        ]
    )
    story = build_story(escape_case(), findings=findings)
    first = story.steps[0]
    assert (first.tactic, first.techniques, first.pod, first.actor) == (
        "Execution",
        ["T1610"],
        "priv",
        "alice",
    )
    assert first.summary == "alice created privileged hostNetwork pod default/priv"
    assert any("K8S-PRIV-POD" in w for w in first.why)
    seeded = build_story(escape_case(), findings=findings, seed="K8S-PRIV-POD")
    # from the finding to the pod, to alice, to her exec and the escape -- not the web-1 token
    assert [s.techniques[0] for s in seeded.steps] == ["T1610", "T1609", "T1611"]


def test_seeds_and_window():
    case = escape_case()
    assert [s.pod for s in build_story(case, findings=NO_FINDINGS, seed="shop/web-1").steps] == [
        "web-1",
        "web-1",
    ]
    assert [s.techniques[0] for s in build_story(case, findings=NO_FINDINGS, seed="198.51.100.9").steps] == [
        "T1543.005"
    ]
    win = build_story(
        case, findings=NO_FINDINGS, since=T0 + pd.Timedelta(seconds=100), until=T0 + pd.Timedelta(seconds=350)
    )
    assert [s.tactic for s in win.steps] == ["Persistence", "Credential Access"]
    assert build_story(case, findings=NO_FINDINGS, seed="nobody").steps == []


def test_markdown_groups_by_tactic_and_escapes():
    case = escape_case()
    a = case["audit"]
    a.loc[a["audit_id"] == "a-exec", "exec_command"] = "/bin/bash <script>"
    md = build_story(case, findings=NO_FINDINGS).to_markdown()
    assert "## Execution" in md and "## Privilege Escalation" in md
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "why:" in md and "`audit:3`" in md


def test_empty_case_gives_empty_story():
    story = build_story({}, findings=NO_FINDINGS)
    assert story.steps == [] and story.to_json() == {"steps": []}
    assert "No suspicious activity" in story.to_markdown()


def test_collapse_noise_and_baseline_switch():
    t = [T0 + pd.Timedelta(seconds=10 * i) for i in range(6)]
    rows = [
        {
            "time": x,
            "source": "audit",
            "action": "update leases",
            "actor": "system:node:node-1",
            "namespace": "kube-node-lease",
            "summary": "lease renewal",
            "event_id": f"l{i}",
        }
        for i, x in enumerate(t)
    ]
    rows += [
        {
            "time": x,
            "source": "tetragon",
            "action": "kprobe:tcp_connect",
            "actor": "0",
            "pod": "x",
            "process": "/tmp/agent",
            "dst_ip": "198.51.100.9",
            "dst_port": 443,
            "summary": "beacon",
            "event_id": f"b{i}",
        }
        for i, x in enumerate(t)
    ]
    rows += [
        {
            "time": t[2],
            "source": "audit",
            "action": "create pods/exec",
            "actor": "alice",
            "summary": "exec",
            "event_id": "e1",
        }
    ]
    tl = pd.DataFrame(rows).reindex(columns=TIMELINE.names)
    out = collapse_noise(tl)
    assert len(out) == 3
    beacon = out[out["process"] == "/tmp/agent"].iloc[0]
    assert (beacon["count"], beacon["first_seen"], beacon["last_seen"], beacon["event_id"]) == (
        6,
        t[0],
        t[5],
        "b0",
    )
    assert out.loc[out["event_id"] == "l0", "baseline"].item()
    hidden = collapse_noise(tl, hide_baseline=True)
    assert sorted(hidden["event_id"]) == ["b0", "e1"]
