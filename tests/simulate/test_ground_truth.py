"""GROUND_TRUTH.json agrees with the data, and every source describes the same cluster."""

from __future__ import annotations

import base64
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .conftest import SCENARIOS, audit_records, falco_records, hubble_records, load, tetragon_records

TECHNIQUE = re.compile(r"^(T\d{4}(\.\d{3})?|MS-TA\d{4})$")


def event_body(rec: dict[str, Any]) -> dict[str, Any]:
    return next(v for k, v in rec.items() if k.startswith("process_"))


def index(folder: Path) -> dict[str, set[str]]:
    objects = load(folder, "k8s/objects.json")["items"]
    return {
        "audit": {a["auditID"] for a in audit_records(folder)},
        "tetragon": {event_body(t)["process"]["exec_id"] for t in tetragon_records(folder)},
        "hubble": {h["flow"]["uuid"] for h in hubble_records(folder) if "flow" in h},
        "falco": {f["time"] for f in falco_records(folder)},
        "k8s-events": {e["metadata"]["name"] for e in load(folder, "k8s/events.json")["items"]},
        "k8s-objects": {f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}".replace("//", "/")
                        for o in objects} | {f"{o['kind']}/{o['metadata'].get('namespace')}/{o['metadata']['name']}"
                                             for o in objects},
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_evidence_id_exists_in_its_source(scenario: str, generated: dict[str, Path]) -> None:
    folder = generated[scenario]
    truth = load(folder, "GROUND_TRUTH.json")
    idx = index(folder)
    assert truth["scenario"] == scenario and truth["seed"] == 7
    entries = truth["steps"] + truth["benign_lookalikes"]
    assert truth["benign_lookalikes"], "look-alikes are part of every dataset"
    for entry in entries:
        assert entry["sources"] == list(entry["evidence"])
        for source, ids in entry["evidence"].items():
            missing = [i for i in ids if i not in idx[source]]
            assert not missing, f"{entry['summary']}: {source} ids not in the files: {missing[:3]}"
    for i, step in enumerate(truth["steps"], 1):
        assert step["step"] == i and TECHNIQUE.match(step["technique"]) and step["tactic"]
        assert step["evidence"], f"step {i} has no evidence"
    times = [s["time"] for s in truth["steps"]]
    assert times == sorted(times)
    if scenario == "benign":
        assert truth["steps"] == []
    else:
        assert len(truth["steps"]) >= 5


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "benign"])
def test_attack_is_a_needle_in_a_haystack(scenario: str, generated: dict[str, Path]) -> None:
    folder = generated[scenario]
    truth = load(folder, "GROUND_TRUTH.json")
    idx = index(folder)
    total = sum(len(idx[s]) for s in ("audit", "tetragon", "hubble", "falco", "k8s-events"))
    attack = sum(len(ids) for st in truth["steps"] for s, ids in st["evidence"].items() if s != "k8s-objects")
    assert total > 15_000
    assert attack / total < 0.01, f"{attack} attack records of {total}"


def test_one_cluster_model_behind_every_source(generated: dict[str, Path]) -> None:
    folder = generated["container-escape"]
    objects = load(folder, "k8s/objects.json")["items"]
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in objects if p["kind"] == "Pod"}
    cids = {}
    for p in pods.values():
        for cs in p["status"]["containerStatuses"]:
            cids[cs["containerID"]] = p
    tet = tetragon_records(folder)
    exec_ids = {event_body(t)["process"]["exec_id"] for t in tet}
    hidden = 0
    checked = 0
    for t in tet:
        proc = event_body(t)["process"]
        node, ktime, pid = base64.b64decode(proc["exec_id"]).decode().rsplit(":", 2)
        assert node == t["node_name"] and int(pid) == proc["pid"] and int(ktime) > 0
        pod = proc.get("pod")
        if pod is None:
            hidden += "docker" in proc
            continue
        obj = cids.get(pod["container"]["id"])
        if obj is not None:  # a pod still present at dump time
            assert obj["metadata"]["name"] == pod["name"] and obj["spec"]["nodeName"] == t["node_name"]
            checked += 1
    assert checked > 1000
    assert hidden > 0, "the hidden static pod's processes carry docker but no pod block"
    truth = load(folder, "GROUND_TRUTH.json")
    hidden_step = next(s for s in truth["steps"] if s["technique"] == "MS-TA9017")
    assert (hidden_step["entities"]["namespace"], hidden_step["entities"]["pod"]) not in pods
    hidden_ns = hidden_step["entities"]["namespace"]
    assert hidden_ns not in {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    # attack process trees are complete: every parent of an evidence process is in the file
    attack = {i for s in truth["steps"] for i in s["evidence"].get("tetragon", [])}
    parents = {event_body(t)["process"].get("parent_exec_id") for t in tet
               if event_body(t)["process"]["exec_id"] in attack and "process_exec" in t}
    shims = {event_body(t)["process"]["exec_id"] for t in tet if event_body(t)["process"]["binary"].endswith("shim-runc-v2")}
    assert parents - exec_ids <= shims | {None} or parents <= exec_ids | _pre_existing(tet)
    # after nsenter: host namespaces while still labelled with the pod
    host_bash = [event_body(t)["process"] for t in tet if "process_exec" in t
                 and event_body(t)["parent"]["binary"] == "/usr/bin/nsenter"]
    assert host_bash and host_bash[0]["ns"]["mnt"]["is_host"] and host_bash[0]["pod"]["name"] == \
        truth["steps"][0]["entities"]["pod"]
    # Falco and Tetragon agree on container ids (12-char prefix)
    falco_ids = {f["output_fields"]["container.id"] for f in falco_records(folder)
                 if f["source"] == "syscall" and f["output_fields"]["k8s.pod.name"]}
    tet_ids = {event_body(t)["process"]["docker"][:12] for t in tet if "docker" in event_body(t)["process"]}
    assert falco_ids and falco_ids <= tet_ids


def _pre_existing(tet: list[dict[str, Any]]) -> set[str]:
    """Parents started before the capture (shims of long-running pods) are referenced but not in the file."""
    return {event_body(t)["process"].get("parent_exec_id") for t in tet}


def test_flows_match_the_connecting_processes(generated: dict[str, Path]) -> None:
    folder = generated["miner"]
    truth = load(folder, "GROUND_TRUTH.json")
    step = next(s for s in truth["steps"] if s["technique"] == "T1496")
    kprobes = [t["process_kprobe"] for t in tetragon_records(folder) if "process_kprobe" in t
               and t["process_kprobe"]["function_name"] == "tcp_connect"
               and t["process_kprobe"]["process"]["exec_id"] in step["evidence"]["tetragon"]]
    flows = {(f["flow"]["IP"]["source"], f["flow"]["l4"]["TCP"]["source_port"], f["flow"]["IP"]["destination"],
              f["flow"]["l4"]["TCP"]["destination_port"]) for f in hubble_records(folder)
             if "TCP" in f.get("flow", {}).get("l4", {})}
    assert len(kprobes) >= 2
    for k in kprobes:
        s = k["args"][0]["sock_arg"]
        assert (s["saddr"], s["sport"], s["daddr"], s["dport"]) in flows
        assert s["dport"] == 3333


def test_record_volumes_are_realistic(generated: dict[str, Path]) -> None:
    folder = generated["benign"]
    audit = audit_records(folder)
    verbs = Counter((a["verb"], a.get("objectRef", {}).get("resource")) for a in audit)
    assert verbs[("update", "leases")] > 0.5 * len(audit)
    assert 3_000 < len(audit) < 50_000
    assert 3_000 < len(tetragon_records(folder)) < 50_000
    assert 5_000 < len(hubble_records(folder)) < 60_000
