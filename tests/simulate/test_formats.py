"""Generated records have the real tools' keys and timestamp formats (compared with ../shared/conformance)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import conformance_files

from .conftest import audit_records, falco_records, hubble_records, load, tetragon_records

# Keys that the conformance records (old captures) lack but that FORMATS.md documents for current versions.
AUDIT_EXTRA = {"impersonatedUser"}
FLOW_EXTRA = {"uuid", "drop_reason", "drop_reason_desc", "destination_names", "destination_service"}
ENDPOINT_EXTRA = {"cluster_name", "workloads"}
PROCESS_EXTRA = {"tid", "ns", "in_init_tree"}
POD_EXTRA = {"workload", "workload_kind"}
CONTAINER_EXTRA = {"maybe_exec_probe"}
FLOW_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
AUDIT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def real_lines(sub: str) -> list[dict[str, Any]]:
    out = []
    for path in conformance_files(sub):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def union(objs: Iterable[dict[str, Any]]) -> set[str]:
    keys: set[str] = set()
    for o in objs:
        keys |= set(o)
    return keys


def test_audit_keys_match_real_events(conformance: Path, generated: dict[str, Path]) -> None:
    real = union(real_lines("audit/falco-trace-files"))
    ours = audit_records(generated["container-escape"])
    assert union(ours) - real - AUDIT_EXTRA == set()
    real_user = union(o["user"] for o in real_lines("audit/falco-trace-files") if "user" in o)
    assert union(o["user"] for o in ours) - real_user <= {"uid", "extra"}
    real_ref = union(o["objectRef"] for o in real_lines("audit/falco-trace-files") if "objectRef" in o)
    assert union(o["objectRef"] for o in ours if "objectRef" in o) <= real_ref | {"uid", "subresource"}
    for o in ours:
        assert AUDIT_TIME.match(o["requestReceivedTimestamp"]) and AUDIT_TIME.match(o["stageTimestamp"])
        assert o["apiVersion"] == "audit.k8s.io/v1" and o["kind"] == "Event"


def test_tetragon_keys_match_real_events(conformance: Path, generated: dict[str, Path]) -> None:
    real = real_lines("tetragon")
    ours = [o for o in tetragon_records(generated["container-escape"]) if "process_exec" in o]
    assert union(ours) == union(real) | {"time"} == {"process_exec", "node_name", "time"}
    real_proc = union(o["process_exec"]["process"] for o in real)
    assert union(o["process_exec"]["process"] for o in ours) - real_proc <= PROCESS_EXTRA
    assert union(o["process_exec"]["parent"] for o in ours) - real_proc <= PROCESS_EXTRA
    real_pod = union(o["process_exec"]["process"]["pod"] for o in real)
    pods = [o["process_exec"]["process"]["pod"] for o in ours if "pod" in o["process_exec"]["process"]]
    assert union(pods) - real_pod <= POD_EXTRA
    real_c = union(o["process_exec"]["process"]["pod"]["container"] for o in real)
    assert union(p["container"] for p in pods) - real_c <= CONTAINER_EXTRA
    for o in ours:
        p = o["process_exec"]["process"]
        assert FLOW_TIME.match(o["time"]) and FLOW_TIME.match(p["start_time"])
        if "pod" in p:
            cid = p["pod"]["container"]["id"]
            assert re.fullmatch(r"containerd://[0-9a-f]{64}", cid) and p["docker"] == cid[13:44]


def test_hubble_keys_match_real_flows(conformance: Path, generated: dict[str, Path]) -> None:
    real = real_lines("hubble")
    ours = hubble_records(generated["ssrf-dns-exfil"])
    flows = [o["flow"] for o in ours if "flow" in o]
    real_flows = [o["flow"] for o in real]
    assert union(flows) - union(real_flows) - FLOW_EXTRA == set()
    real_ep = union([*(f["source"] for f in real_flows), *(f["destination"] for f in real_flows)])
    assert union([*(f["source"] for f in flows), *(f["destination"] for f in flows)]) - real_ep <= ENDPOINT_EXTRA
    assert union(f["l7"] for f in flows if "l7" in f) <= union(f["l7"] for f in real_flows if "l7" in f)
    real_dns = union(f["l7"]["dns"] for f in real_flows if "dns" in f.get("l7", {}))
    assert union(f["l7"]["dns"] for f in flows if "dns" in f.get("l7", {})) <= real_dns | {"ips", "rrtypes"}
    for o in ours:
        assert set(o) in ({"flow", "node_name", "time"}, {"lost_events", "node_name", "time"})
        assert FLOW_TIME.match(o["time"])
    assert any("lost_events" in o for o in ours)


def test_falco_keys_match_real_alerts(conformance: Path, generated: dict[str, Path]) -> None:
    real = union(real_lines("falco"))
    ours = falco_records(generated["miner"])
    assert ours and all(set(o) == real for o in ours)
    for o in ours:
        assert FLOW_TIME.match(o["time"])
        assert o["output"].startswith(o["time"][:19] + "." + o["time"][20:29] + "+0000: " + o["priority"])
        assert isinstance(o["output_fields"]["evt.time"], int)
        cid = o["output_fields"].get("container.id")
        assert cid is None or cid == "host" or re.fullmatch(r"[0-9a-f]{12}", cid)


def test_event_and_pod_keys_match_real_dumps(conformance: Path, generated: dict[str, Path]) -> None:
    real_events = [i for p in conformance_files("k8s-events") for i in json.loads(p.read_text())["items"]]
    events = load(generated["miner"], "k8s/events.json")
    assert events["kind"] == "EventList" and events["apiVersion"] == "v1"
    assert union(events["items"]) <= union(real_events)
    assert union(e["involvedObject"] for e in events["items"]) <= union(e["involvedObject"] for e in real_events)
    for e in events["items"]:
        for k in ("firstTimestamp", "lastTimestamp"):
            assert e[k] is None or SECONDS.match(e[k])
        assert e["eventTime"] is None or AUDIT_TIME.match(e["eventTime"])
    assert any(e["firstTimestamp"] is None for e in events["items"])
    assert any(e["firstTimestamp"] is not None for e in events["items"])
    real_pods = [i for p in conformance_files("pods") for i in json.loads(p.read_text())["items"]]
    objects = load(generated["miner"], "k8s/objects.json")
    pods = [i for i in objects["items"] if i["kind"] == "Pod"]
    assert objects["kind"] == "List" and pods
    assert union(pods) <= union(real_pods)
    assert union(p["metadata"] for p in pods) - union(p["metadata"] for p in real_pods) <= {"annotations"}
    assert union(p["status"] for p in pods) <= union(p["status"] for p in real_pods)
    kinds = {i["kind"] for i in objects["items"]}
    assert {"Pod", "ServiceAccount", "Namespace", "Node", "Deployment", "DaemonSet", "StatefulSet",
            "RoleBinding", "ClusterRoleBinding", "Secret"} <= kinds


@pytest.mark.parametrize("scenario", ["container-escape", "stolen-credentials"])
def test_realistic_variation(scenario: str, generated: dict[str, Path]) -> None:
    audit = audit_records(generated[scenario])
    execs = [a for a in audit if a.get("objectRef", {}).get("subresource") == "exec" and a["stage"] != "RequestReceived"]
    assert {a["responseStatus"]["code"] for a in execs} == {101}
    assert {a["stage"] for a in execs} == {"ResponseStarted", "ResponseComplete"}
    stages: dict[str, set[str]] = {}
    for a in audit:
        stages.setdefault(a["auditID"], set()).add(a["stage"])
    assert any(s == {"RequestReceived", "ResponseComplete"} for s in stages.values())
    bound = [a for a in audit if "authentication.kubernetes.io/pod-name" in a["user"].get("extra", {})]
    assert bound and all(a["user"]["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
                         for a in bound)
    falco = falco_records(generated[scenario])
    assert any(v is None for o in falco for v in o["output_fields"].values())
    l7 = [f["flow"] for f in hubble_records(generated[scenario]) if f.get("flow", {}).get("Type") == "L7"]
    assert l7 and all("shop" in (f["source"].get("namespace"), f["destination"].get("namespace")) for f in l7)
    l4_only = {f["flow"]["source"].get("namespace") for f in hubble_records(generated[scenario])
               if "UDP" in f.get("flow", {}).get("l4", {}) and f["flow"]["Type"] == "L3_L4"}
    assert "data" in l4_only, "DNS from namespaces without an L7 policy is plain UDP"


def test_exec_verb_varies_with_kubectl_version(generated: dict[str, Path]) -> None:
    verbs = set()
    for folder in generated.values():
        verbs |= {a["verb"] for a in audit_records(folder) if a.get("objectRef", {}).get("subresource") == "exec"}
    assert verbs == {"create", "get"}
