"""Sigma: the 16 SigmaHQ Kubernetes audit rules load, and fire on the records they key on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kubeforensics.detect import make_frame, run_rules
from kubeforensics.detect.sigma import load_sigma, sigma_from_yaml
from tests.conftest import conformance_files

pytest.importorskip("sigma", reason="pySigma is not installed (pip install pysigma)")

SIGMA_FILES = conformance_files("sigma-kubernetes", "*.yml")
AUDIT_DIR = "audit/falco-trace-files"

# Sigma rule file -> conformance audit file(s) it must fire on.
FIRES_ON = {
    "kubernetes_audit_exec_into_container.yml": ["exec_pod.json"],
    "kubernetes_audit_privileged_pod_creation.yml": ["create_nginx_pod_privileged.json", "create_nginx_pod_privileged_2nd_container.json"],
    "kubernetes_audit_hostpath_mount.yml": ["create_nginx_pod_sensitive_mount.json", "create_nginx_pod_sensitive_mount_2nd_container.json"],
    "kubernetes_audit_pod_in_system_namespace.yml": ["create_pod_kube_system_namespace.json"],
    "kubernetes_audit_deployment_deleted.yml": ["delete_deployment.json"],
    "kubernetes_audit_rolebinding_modification.yml": ["create_clusterrolebinding.json", "delete_clusterrolebinding.json"],
    "kubernetes_audit_secrets_modified_or_deleted.yml": ["create_secret.json", "delete_secret.json"],
    "kubernetes_audit_serviceaccount_creation.yml": ["create_serviceaccount.json"],
}
# Rules no conformance record matches: synthetic audit rows with the fields they key on.
SYNTHETIC = {
    "kubernetes_audit_change_admission_controller.yml": {"verb": "create", "resource": "mutatingwebhookconfigurations", "api_group": "admissionregistration.k8s.io", "name": "x", "user": "eve", "code": 201},
    "kubernetes_audit_cronjob_modification.yml": {"verb": "create", "resource": "cronjobs", "api_group": "batch", "namespace": "kube-system", "name": "x", "user": "eve", "code": 201},
    "kubernetes_audit_events_deleted.yml": {"verb": "delete", "resource": "events", "namespace": "shop", "user": "eve", "code": 200},
    "kubernetes_audit_potential_enumeration_activity.yml": None,  # keys on responseStatus.code 'ALLOW', which no audit record has
    "kubernetes_audit_rbac_permisions_listing.yml": {"verb": "create", "resource": "selfsubjectrulesreviews", "api_group": "authorization.k8s.io", "user": "eve", "code": 201},
    "kubernetes_audit_secrets_enumeration.yml": {"verb": "list", "resource": "secrets", "user": "eve", "code": 200},
    "kubernetes_audit_sidecar_injection.yml": {"verb": "patch", "resource": "deployments", "api_group": "apps", "namespace": "shop", "name": "web", "user": "eve", "code": 200},
    "kubernetes_audit_unauthorized_unauthenticated_actions.yml": {"verb": "list", "resource": "pods", "user": "system:anonymous", "code": 403},
}


def audit_of(conformance: Path, name: str) -> pd.DataFrame:
    from kubeforensics.sources import read_file

    return read_file(conformance / AUDIT_DIR / name).tables["audit"].to_pandas()


def test_all_sixteen_load(conformance):
    rules = load_sigma(conformance / "sigma-kubernetes", strict=True)
    assert len(SIGMA_FILES) == 16
    assert len(rules) == 16
    assert set(FIRES_ON) | set(SYNTHETIC) == {p.name for p in SIGMA_FILES}
    for r in rules.values():
        assert r.meta.description.count("Sigma rule by") == 1  # attribution kept
        assert r.meta.origin.startswith("sigma:")


@pytest.mark.parametrize("sigma_file", sorted(FIRES_ON))
def test_fires_on_conformance_record(conformance, sigma_file):
    path = conformance / "sigma-kubernetes" / sigma_file
    for audit_file in FIRES_ON[sigma_file]:
        audit = audit_of(conformance, audit_file)
        f = run_rules({"audit": audit}, rules=[], sigma=path)
        assert len(f) >= 1, f"{sigma_file} did not fire on {audit_file}"
        assert set(f["event_ids"].explode()) <= set(audit["event_id"])
        assert f.iloc[0]["source"] == f"sigma:{sigma_file}"


def test_exec_rule_on_exec_pod(conformance):
    audit = audit_of(conformance, "exec_pod.json")
    f = run_rules({"audit": audit}, rules=[], sigma=conformance / "sigma-kubernetes" / "kubernetes_audit_exec_into_container.yml")
    row = f.iloc[0]
    assert row["title"] == "Potential Remote Command Execution In Pod Container"
    assert row["techniques"] == ["T1609"]
    assert row["severity"] == "medium"
    assert (row["namespace"], row["pod"], row["actor"]) == ("default", "nginx-deployment-7998647bdf-phvq7", "minikube-user")
    assert "Leo Tsaousis" in row["description"]
    assert row["summary"].startswith("minikube-user create pods/exec default/nginx-deployment-7998647bdf-phvq7 from 192.168.99.1")


def test_privileged_rule_not_on_unprivileged_pod(conformance):
    path = conformance / "sigma-kubernetes" / "kubernetes_audit_privileged_pod_creation.yml"
    for name in ("create_nginx_pod_unprivileged.json", "create_nginx_pod_nohostnetwork.json", "exec_pod.json"):
        assert run_rules({"audit": audit_of(conformance, name)}, rules=[], sigma=path).empty, name


def test_exec_rule_not_on_pod_create(conformance):
    path = conformance / "sigma-kubernetes" / "kubernetes_audit_exec_into_container.yml"
    assert run_rules({"audit": audit_of(conformance, "create_nginx_pod_privileged.json")}, rules=[], sigma=path).empty


@pytest.mark.parametrize("sigma_file", sorted(SYNTHETIC))
def test_synthetic_records(conformance, sigma_file):
    path = conformance / "sigma-kubernetes" / sigma_file
    row = SYNTHETIC[sigma_file]
    other = {"verb": "get", "resource": "configmaps", "namespace": "shop", "name": "cfg", "user": "eve", "code": 200}
    if row is None:  # never matches a real record; still must evaluate without error
        f = run_rules({"audit": make_frame("audit", [other])}, rules=[], sigma=path)
        assert f.empty and f.attrs["errors"] == {}
        return
    f = run_rules({"audit": make_frame("audit", [row, other])}, rules=[], sigma=path)
    assert list(f["event_ids"].explode()) == ["audit-1"]


def test_modifiers_and_json_fields():
    text = """
title: Test rule
id: 11111111-2222-3333-4444-555555555555
author: test
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    requestURI|contains: 'command=tar'
    sourceIPs|cidr: '203.0.113.0/24'
    requestObject.spec.containers.image|startswith: 'evil/'
  flt:
    user.username|re: '^system:'
  condition: sel and not flt
level: high
tags: [attack.execution, attack.t1609]
"""
    rule = sigma_from_yaml(text, "test.yml")[0]
    rows = [
        {"user": "eve", "request_uri": "/x?command=tar&command=cf", "source_ips": ["203.0.113.4"], "request_object": {"spec": {"containers": [{"image": "evil/x"}]}}},
        {"user": "system:node:n1", "request_uri": "/x?command=tar", "source_ips": ["203.0.113.4"], "request_object": {"spec": {"containers": [{"image": "evil/x"}]}}},
        {"user": "eve", "request_uri": "/x?command=tar", "source_ips": ["10.0.0.4"], "request_object": {"spec": {"containers": [{"image": "evil/x"}]}}},
        {"user": "eve", "request_uri": "/x?command=tar", "source_ips": ["203.0.113.4"], "request_object": {"spec": {"containers": [{"image": "nginx"}]}}},
    ]
    f = run_rules({"audit": make_frame("audit", rows)}, rules=[rule])
    assert list(f["event_ids"].explode()) == ["audit-1"]
    assert f.iloc[0]["techniques"] == ["T1609"] and f.iloc[0]["severity"] == "high"


def test_missing_folder_is_a_clear_error(tmp_path):
    from kubeforensics.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        load_sigma(tmp_path / "nope")
