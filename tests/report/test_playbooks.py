"""Every scenario playbook runs headless on its sample scenario; its recorded answers match the ground truth.

GROUND_TRUTH.json is read here, never by a playbook.  Each papermill run costs
tens of seconds, so each scenario runs once per module (``runs`` fixture).
"""

from __future__ import annotations

import pytest

from kubeforensics.report import PlaybookError, recorded_answers, run_playbook

pytest.importorskip("papermill", reason="playbooks need papermill")

SCENARIOS = ("container-escape", "miner", "stolen-credentials", "rbac-persistence", "ssrf-dns-exfil")


def step(truth: dict, technique: str) -> dict:
    return next(s for s in truth["steps"] if s["technique"] == technique)["entities"]


@pytest.fixture(scope="module")
def runs(scenario_cases):
    done: dict[str, tuple] = {}

    def get(name: str):
        if name not in done:
            case, truth = scenario_cases(name)
            res = run_playbook(name, case)
            done[name] = (res, truth, case)
        return done[name]

    return get


def facts(res, key: str) -> dict:
    assert key in res.answers, f"{res.playbook} recorded no answer {key!r}: {sorted(res.answers)}"
    return res.answers[key]["facts"]


def test_container_escape(runs):
    res, truth, case = runs("container-escape")
    s1, s2, s3 = step(truth, "T1610"), step(truth, "T1609"), step(truth, "T1611")
    created = facts(res, "pod_creation")
    assert (created["user"], created["source_ip"]) == (s1["user"], s1["ip"])
    assert created["pod"] == f"{s1['namespace']}/{s1['pod']}"
    assert "ClusterRoleBinding" in created["authorized_by"]
    ex = facts(res, "exec_session")
    assert (ex["user"], ex["pod"], ex["command"]) == (s2["user"], f"{s2['namespace']}/{s2['pod']}", s2["process"])
    esc = facts(res, "host_processes")
    assert esc["process"] == s3["process"] and esc["node"] == s3["node"]
    hidden_step = next(s for s in truth["steps"] if s["technique"] == "MS-TA9017")["entities"]
    hidden = facts(res, "hidden_pods")
    assert hidden["pods"] == [f"{hidden_step['namespace']}/{hidden_step['pod']}"]
    assert any(hidden_step["container_id"].startswith(c) for c in hidden["container_ids"])
    assert facts(res, "external_endpoints")["c2"] == step(truth, "T1071.001")["ip"]
    assert facts(res, "still_running")["running"] is True
    # the executed notebook is where the runner says, and the answers are in the case log
    assert res.notebook.is_file() and res.notebook.suffix == ".ipynb"
    assert recorded_answers(case.path, run_id=res.run_id) == res.answers
    marks = case.bookmarks()
    assert (marks["tags"].map(lambda t: "answer:pod_creation" in t)).sum() >= 1


def test_miner(runs):
    res, truth, _ = runs("miner")
    s1 = step(truth, "T1190")
    init = facts(res, "initial_access")
    assert init["pod"] == f"{s1['namespace']}/{s1['pod']}" and init["source_ip"] == s1["ip"]
    assert init["spawned"].startswith(step(truth, "T1059.004")["process"])
    tok = facts(res, "token_theft")
    assert tok["token_read"] is True and tok["service_account"] == step(truth, "T1613")["user"]
    sec = step(truth, "T1552.007")
    assert facts(res, "secrets_read")["secrets"] == [f"{sec['namespace']}/{sec['secret']}"]
    assert facts(res, "enumeration")["denied"] > 0
    m7, m8 = step(truth, "T1036.005"), step(truth, "T1496")
    miner = facts(res, "miner_workload")
    assert miner["creator"] == m7["user"] and miner["workload"] == f"{m7['namespace']}/{m7['workload']}"
    assert m7["image"] in miner["images"]
    assert miner["pool_ips"] == [m8["ip"]] and all(e.startswith(m8["ip"] + ":") for e in miner["pool_endpoints"])


def test_stolen_credentials(runs):
    res, truth, _ = runs("stolen-credentials")
    s1 = step(truth, "T1078")
    first = facts(res, "first_abnormal")
    assert (first["user"], first["source_ip"], first["credential_id"]) == (s1["user"], s1["ip"], s1["credential_id"])
    assert s1["ip"] not in facts(res, "legitimate_use")["other_ips"]
    ex = facts(res, "exec_sessions")
    s3 = step(truth, "T1609")
    assert ex["pods"] == [f"{s3['namespace']}/{s3['pod']}"] and ex["matched"] is True
    pf = step(truth, "T1572")
    assert ex["portforward"] == [f"{pf['namespace']}/{pf['pod']}"]
    theft = facts(res, "data_theft")
    assert {"T1041", "T1005"} <= set(theft["techniques"]) and step(truth, "T1041")["file"] in theft["files"]
    assert facts(res, "evidence_deleted")["deleted"] == [f"deletecollection events {step(truth, 'T1070')['namespace']}"]


def test_rbac_persistence(runs):
    res, truth, _ = runs("rbac-persistence")
    s1 = step(truth, "T1098.006")
    ch = facts(res, "rbac_changes")
    assert ch["actors"] == [s1["user"]] and ch["source_ips"] == [s1["ip"]] and "cluster-admin" in ch["bound_roles"]
    assert f"serviceaccounts {s1['namespace']}/{s1['serviceaccount']}" in ch["objects"]
    s2, s5 = step(truth, "T1528"), step(truth, "T1078")
    tok = facts(res, "tokens_minted")
    assert tok["serviceaccounts"] == [f"kube-system/{s2['serviceaccount']}"]
    assert tok["credential_ids"] == [s2["credential_id"]] and tok["used_from"] == [s5["ip"]]
    assert tok["csrs"] and all(c.startswith("csr-") for c in tok["csrs"])
    paths = facts(res, "persistence_paths")
    cj, ds = step(truth, "T1053.007"), step(truth, "T1610")
    assert paths["cronjobs"] == [f"{cj['namespace']}/{cj['workload']}"]
    assert paths["daemonsets"] == [f"{ds['namespace']}/{ds['workload']}"]
    assert cj["ip"] in paths["contacted"] and paths["webhooks"]
    assert any(s2["credential_id"] in r for r in facts(res, "revoke")["revoke"])


def test_ssrf_dns_exfil(runs):
    res, truth, _ = runs("ssrf-dns-exfil")
    s1, s2 = step(truth, "T1190"), step(truth, "T1552.005")
    md = facts(res, "metadata_access")
    assert md["pod"] == f"{s2['namespace']}/{s2['pod']}" and md["process"] == s2["process"]
    assert md["ip"] == s2["ip"] and md["attacker_ip"] == s1["ip"] and md["verdicts"] == ["DROPPED"]
    assert facts(res, "enumeration")["targets"] > 50
    s5 = step(truth, "T1071.004")
    dns = facts(res, "dns_exfiltration")
    assert dns["processes"] == [s5["process"]] and dns["resolvers"] == [s5["ip"]]
    assert s5["domain"].endswith(dns["domain"]) and dns["queries"] > 20


def test_triage_and_deep_dive_run_on_any_case(runs, scenario_cases):
    case, truth = scenario_cases("container-escape")
    res = run_playbook("triage", case, min_severity="critical")
    assert facts(res, "suspicious")["by_severity"]["critical"] >= 1
    assert "T1611" in facts(res, "suspicious")["techniques"]
    pod = f"{step(truth, 'T1610')['namespace']}/{step(truth, 'T1610')['pod']}"
    dive = run_playbook("pod-deep-dive", case, seed=pod)
    spec = facts(dive, "spec")
    assert spec["privileged"] and spec["host_pid"]
    assert step(truth, "T1610")["user"] in facts(dive, "touched")["users"]
    assert "/usr/bin/nsenter" in facts(dive, "processes")["binaries"]


def test_failed_cell_names_playbook_cell_and_exception(tmp_path, scenario_cases):
    import nbformat

    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('case = "x"\nrun_id = None')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("# the broken step\n{}['missing-key']")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, str(path))
    case, _ = scenario_cases("container-escape")
    with pytest.raises(PlaybookError) as err:
        run_playbook(path, case)
    msg = str(err.value)
    assert "playbook 'broken'" in msg and "code cell 3" in msg and "KeyError" in msg and "missing-key" in msg
    assert "Traceback" not in msg and "\x1b[" not in msg


def test_unknown_playbook_lists_the_known_ones(scenario_cases):
    case, _ = scenario_cases("container-escape")
    with pytest.raises(PlaybookError, match="unknown playbook 'nope'.*triage"):
        run_playbook("nope", case)
