"""Playbook questions on a whole case read slices from storage (Investigation.slice), never whole tables,
and answer exactly what they answer with every table loaded.

Every playbook runs on every shipped scenario (its own and the others: the branches where nothing is
found count too) and on the hostile case; pod-deep-dive runs for each pod the findings name.
"""

from __future__ import annotations

import pandas as pd
import pytest

from kubeforensics.report import start, views
from kubeforensics.report.questions import credentials, escape, miner, rbac, scheduled, ssrf, triage
from kubeforensics.report.questions.common import pod_weights

SCENARIOS = ("container-escape", "stolen-credentials", "miner", "rbac-persistence", "ssrf-dns-exfil", "benign")

#: playbook -> (question module, questions in the order the notebook asks them)
PLAYBOOKS = {
    "container-escape": (escape, ("pod_creation", "exec_session", "host_processes", "hidden_pods",
                                  "external_endpoints", "still_running")),
    "stolen-credentials": (credentials, ("first_abnormal", "legitimate_use", "exec_sessions", "data_theft",
                                         "evidence_deleted")),
    "miner": (miner, ("initial_access", "token_theft", "enumeration", "secrets_read", "miner_workload")),
    "rbac-persistence": (rbac, ("rbac_changes", "tokens_minted", "persistence_paths", "revoke")),
    "ssrf-dns-exfil": (ssrf, ("metadata_access", "enumeration", "dns_exfiltration")),
    "triage": (triage, ("contents", "suspicious", "story_so_far", "where_next")),
    "scheduled": (scheduled, ("new_findings", "top_talkers")),
}
POD_QUESTIONS = ("pod_spec", "pod_touched", "pod_processes", "pod_flows", "pod_findings")


def same_answer(a, b, where: str) -> None:
    assert a.text == b.text, where
    assert repr(a.facts) == repr(b.facts), where  # repr: NaT and None compare, types show
    assert a.evidence == b.evidence, where
    assert (a.table is None) == (b.table is None), where
    if a.table is not None:
        pd.testing.assert_frame_equal(a.table.reset_index(drop=True), b.table.reset_index(drop=True),
                                      obj=where)


def pair(case, playbook: str, seed=None):
    """A lean investigation and one with every table loaded (the reference)."""
    case.findings()  # cached: both read the same findings
    lean, whole = start(case, playbook=playbook, seed=seed), start(case, playbook=playbook, seed=seed)
    whole.tables  # noqa: B018 - load every table: the reference path
    assert lean.lean and not whole.lean
    return lean, whole


def case_of(name, scenario_cases, hostile_case):
    return hostile_case if name == "hostile" else scenario_cases(name)[0]


@pytest.mark.parametrize("scenario", [*SCENARIOS, "hostile"])
@pytest.mark.parametrize("playbook", sorted(PLAYBOOKS))
def test_lean_answers_equal_whole_table_answers(scenario_cases, hostile_case, playbook, scenario):
    case = case_of(scenario, scenario_cases, hostile_case)
    module, questions = PLAYBOOKS[playbook]
    lean, whole = pair(case, playbook)
    for name in questions:
        fn = getattr(module, name)
        a, b = lean.ask(name, fn(lean)), whole.ask(name, fn(whole))
        same_answer(a, b, f"{playbook}.{name} on {scenario}")
    assert lean._tables is None, "a question loaded whole tables"


def test_playbooks_find_on_their_scenarios(scenario_cases):
    """The comparison above is not between two empty answers: on its own scenario each playbook's
    questions find something on the lean path."""
    for playbook in ("container-escape", "stolen-credentials", "miner", "rbac-persistence", "ssrf-dns-exfil"):
        module, questions = PLAYBOOKS[playbook]
        lean = start(scenario_cases(playbook)[0], playbook=playbook)
        found = {name: lean.ask(name, getattr(module, name)(lean)).found for name in questions}
        assert all(found.values()), (playbook, found)
        assert lean._tables is None


@pytest.mark.parametrize("scenario", [*SCENARIOS, "hostile"])
def test_pod_deep_dive_on_each_pod(scenario_cases, hostile_case, scenario):
    case = case_of(scenario, scenario_cases, hostile_case)
    lean, whole = pair(case, "pod-deep-dive")
    pods = [p for p in pod_weights(whole.findings).index if not p.endswith("/")][:6]
    pods += [triage.pick_pod(whole), "no-such-ns/no-such-pod", ""]  # "": no pod picked (NULL names match)
    if scenario == "hostile":
        pods.append("default/" + case.table("audit")["name"].iloc[0])
    found = 0
    for pod in dict.fromkeys(pods):
        for name in POD_QUESTIONS:
            fn = getattr(triage, name)
            a, b = fn(lean, pod), fn(whole, pod)
            same_answer(a, b, f"{name}({pod}) on {scenario}")
            found += a.found
        # the playbook's process-tree view (no kernel: text) reads the pod's events, not the table
        got, want = views.process_tree(lean, pod), views.process_tree(whole, pod)
        assert (got.title, got.text) == (want.title, want.text), f"process tree of {pod} on {scenario}"
        if not pod:  # no pod picked: said so, nothing read
            assert got.title.startswith("process tree: no pod picked") and got.text == ""
    assert found > 0
    assert lean._tables is None


@pytest.mark.parametrize("playbook, technique, entity", [("container-escape", "T1610", "user"),
                                                          ("stolen-credentials", "T1078", "ip"),
                                                          ("miner", "T1190", "pod")])
def test_seeded_runs(scenario_cases, hostile_case, playbook, technique, entity):
    """A seed (from the scenario's ground truth) changes which rows the pandas logic keeps; the slices
    still hold them."""
    module, questions = PLAYBOOKS[playbook]
    truth = scenario_cases(playbook)[1]
    seed = next(s for s in truth["steps"] if s["technique"] == technique)["entities"][entity]
    for scenario in (playbook, "hostile"):
        lean, whole = pair(case_of(scenario, scenario_cases, hostile_case), playbook, seed=seed)
        for name in questions:
            fn = getattr(module, name)
            same_answer(lean.ask(name, fn(lean)), whole.ask(name, fn(whole)), f"{playbook}.{name} on {scenario}")
        assert lean._tables is None


def test_slice_rows_and_dtypes_are_those_of_the_table(scenario_cases):
    case, _ = scenario_cases("container-escape")
    inv = start(case, playbook="adhoc")
    for table, where, params in (("audit", "verb = ?", ["create"]), ("processes", "event_type = 'exec'", []),
                                 ("flows", "TRUE", []), ("objects", "FALSE", [])):
        got = inv.slice(table, where, params)
        full = case.table(table)
        if table == "audit":
            expected = full[full["verb"] == "create"]
        elif table == "processes":
            expected = full[full["event_type"] == "exec"]
        else:
            expected = full.iloc[0:0] if where == "FALSE" else full
        assert table == "objects" or len(got) > 0
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    narrow = inv.slice("audit", "verb = ?", ["create"], columns=["time", "user"])
    assert list(narrow.columns) == ["time", "user"] and narrow["time"].dtype == full["time"].dtype
    with pytest.raises(ValueError, match="no column"):
        inv.slice("audit", columns=["user; DROP"])
    assert inv._tables is None
    # a window (or loaded tables) gives the loaded table itself
    windowed = start(case, playbook="adhoc", since="2000-01-01T00:00:00Z")
    assert windowed.slice("audit", "FALSE") is windowed.tables["audit"]


def test_attacker_text_is_bound_not_formatted(hostile_case):
    """Names carrying quotes and markup reach the SQL as parameters: the slice finds the pod by them."""
    inv = start(hostile_case, playbook="pod-deep-dive")
    name = hostile_case.table("audit")["name"].iloc[0]
    assert "<" in name
    got = triage.pod_touched(inv, f"default/{name}")
    assert got.found and got.facts["users"] == ["mallory@evil.example"]
    quote = triage.pod_touched(inv, "default/x' OR '1'='1")
    assert not quote.found
    assert inv._tables is None


def test_evidence_end_is_an_aggregate_equal_to_the_tables(scenario_cases):
    case, _ = scenario_cases("stolen-credentials")
    lean, whole = pair(case, "adhoc")
    assert lean.time_ends() == whole.time_ends() and len(lean.time_ends()) >= 5
    assert lean._tables is None


def _event(n: int, t: str, user: str, verb: str, resource: str, name: str, *, namespace: str = "",
           subresource: str = "", code: int = 200, ip: str = "45.148.24.199", body: dict | None = None) -> dict:
    ref = {"resource": resource, "name": name, "apiVersion": "v1", **({"namespace": namespace} if namespace else {}),
           **({"subresource": subresource} if subresource else {})}
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
          "auditID": f"00000000-0000-0000-0000-{n:012d}", "stage": "ResponseComplete",
          "requestReceivedTimestamp": t, "stageTimestamp": t, "verb": verb,
          "requestURI": f"/apis/x/{resource}/{name}", "user": {"username": user, "groups": ["system:authenticated"]},
          "sourceIPs": [ip], "userAgent": "kubectl/v1.30", "objectRef": ref, "responseStatus": {"code": code}}
    if body is not None:
        ev["requestObject"] = body
    return ev


@pytest.fixture(scope="module")
def rbac_writes_case(tmp_path_factory):
    """Persistence written with patch and update (the sample scenario only creates)."""
    import json

    import kubeforensics as kf

    root = tmp_path_factory.mktemp("rbac-writes")
    sa = "system:serviceaccount:ci:deployer"
    events = [
        _event(1, "2026-01-01T10:00:00Z", "mallory@evil.example", "patch", "clusterrolebindings", "pwn",
               body={"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}),
        _event(2, "2026-01-01T10:01:00Z", "mallory@evil.example", "create", "serviceaccounts", "deployer",
               namespace="ci", subresource="token", code=201),
        _event(3, "2026-01-01T10:02:00Z", sa, "list", "secrets", "", ip="45.148.24.200"),
        _event(4, "2026-01-01T10:03:00Z", sa, "create", "daemonsets", "node-agent", namespace="kube-system",
               code=201, ip="45.148.24.200", body={"spec": {"template": {"spec": {"containers": [{"args": ["45.148.24.201:4444"]}]}}}}),
        _event(5, "2026-01-01T10:04:00Z", "mallory@evil.example", "update", "roles", "reader", namespace="ci"),
    ]
    ev = root / "evidence"
    ev.mkdir()
    (ev / "audit.log").write_text("".join(json.dumps(e) + "\n" for e in events))
    case = kf.Case.create(root / "case")
    assert case.ingest([ev], progress=False).totals["ingested"] == len(events)
    return case


def test_rbac_patches_and_updates(rbac_writes_case):
    module, questions = PLAYBOOKS["rbac-persistence"]
    lean, whole = pair(rbac_writes_case, "rbac-persistence")
    for name in questions:
        fn = getattr(module, name)
        same_answer(lean.ask(name, fn(lean)), whole.ask(name, fn(whole)), f"rbac-persistence.{name}")
    assert lean._tables is None
    assert set(lean.answers["rbac_changes"].facts["objects"]) == {"clusterrolebindings pwn", "roles ci/reader"}
    assert lean.answers["rbac_changes"].facts["bound_roles"] == ["cluster-admin"]
    assert lean.answers["tokens_minted"].facts["used_from"] == ["45.148.24.200"]
    assert lean.answers["persistence_paths"].facts["daemonsets"] == ["kube-system/node-agent"]


def _flow(t: str, src: tuple[str, str, str], dst: tuple[str, str, str], port: int, *, l7: dict | None = None,
          udp: bool = False, verdict: str = "FORWARDED", direction: str = "EGRESS") -> dict:
    def ep(ns: str, pod: str) -> dict:
        return {"identity": 20000, "namespace": ns, "pod_name": pod, "labels": []} if pod else {
            "identity": 2, "labels": ["reserved:world"]}

    flow = {"time": t, "uuid": f"u-{t}-{port}", "verdict": verdict, "IP": {"source": src[2], "destination": dst[2],
                                                                            "ipVersion": "IPv4"},
            "l4": {"UDP" if udp else "TCP": {"source_port": 40000, "destination_port": port}},
            "source": ep(*src[:2]), "destination": ep(*dst[:2]), "Type": "L7" if l7 else "L3_L4",
            "node_name": "node-1", "is_reply": False, "traffic_direction": direction, "Summary": ""}
    if l7:
        flow["l7"] = l7
    return {"flow": flow, "node_name": "node-1", "time": t}


@pytest.fixture(scope="module")
def ssrf_case(tmp_path_factory):
    """The request that caused the metadata connection entered three minutes before it, its URL not naming
    the metadata address (the sample scenario's request names it, one second before)."""
    import json

    import kubeforensics as kf

    root = tmp_path_factory.mktemp("ssrf-slices")
    web, world = ("shop", "web", "10.1.0.5"), ("", "", "91.244.156.177")
    flows = [
        _flow("2026-01-01T10:00:00Z", world, web, 8080, direction="INGRESS",
              l7={"type": "REQUEST", "http": {"method": "POST", "url": "http://shop.example/upload"}}),
        _flow("2026-01-01T10:03:00Z", web, ("", "", "169.254.169.254"), 80),
        _flow("2026-01-01T10:03:01Z", web, ("", "", "8.8.8.8"), 53, udp=True,
              l7={"type": "REQUEST", "dns": {"query": "a1b2.exfil.example.", "rcode": 0}}),
        _flow("2026-01-01T10:03:02Z", web, ("data", "redis", "10.1.0.9"), 6379, verdict="DROPPED"),
    ]
    ev = root / "evidence"
    ev.mkdir()
    (ev / "flows.json").write_text("".join(json.dumps(f) + "\n" for f in flows))
    case = kf.Case.create(root / "case")
    assert case.ingest([ev], progress=False).totals["ingested"] == len(flows)
    return case


def test_ssrf_request_minutes_before(ssrf_case):
    module, questions = PLAYBOOKS["ssrf-dns-exfil"]
    lean, whole = pair(ssrf_case, "ssrf-dns-exfil")
    for name in questions:
        fn = getattr(module, name)
        same_answer(lean.ask(name, fn(lean)), whole.ask(name, fn(whole)), f"ssrf-dns-exfil.{name}")
    assert lean._tables is None
    got = lean.answers["metadata_access"].facts
    assert (got["pod"], got["attacker_ip"], got["url"]) == ("shop/web", "91.244.156.177", "http://shop.example/upload")
    assert lean.answers["enumeration"].facts["dropped"] == 1
