"""The Kubernetes collector against the API test server (tests/collect/k8s_test_server.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from kubernetes import client as k8s_client

from kubeforensics.case import Case
from kubeforensics.collect.common import Backoff
from kubeforensics.collect.k8s import K8sCollector, collect
from kubeforensics.collect.k8s_api import RESOURCES, ReadOnlyApi, ReadOnlyApiClient
from kubeforensics.errors import CollectorError
from tests.collect.k8s_seed import seed
from tests.collect.k8s_test_server import TOKEN, FakeCluster, K8sTestServer

FAST = Backoff(attempts=4, base=0.01, cap=0.05)


@pytest.fixture
def cluster():
    c = FakeCluster(forbidden={"certificatesigningrequests"})
    c.seeded = seed(c)  # type: ignore[attr-defined]
    return c


@pytest.fixture
def server(cluster):
    srv = K8sTestServer(cluster).start()
    yield srv
    srv.stop()


@pytest.fixture
def collector(server, tmp_path):
    return K8sCollector.from_config(kubeconfig=server.kubeconfig(tmp_path / "kubeconfig"), page_size=7,
                                    backoff=FAST, watch_chunk=1)


def _record(case: Case) -> dict:
    entry = next(e for e in case.manifest["evidence"] if e["format"] == "collection-record")
    return orjson.loads((case.path / entry["stored_as"]).read_bytes())


def test_snapshot_pages_records_403_and_feeds_the_case(cluster, collector, tmp_path):
    cluster.fail_next = 2  # two transient 503s: retried with backoff, nothing lost
    case = Case.create(tmp_path / "case")
    rec = collect(collector, case, progress=False, pod_logs=["default/node-debugger-x7k2p"])

    seeded = cluster.seeded
    assert rec["counts"]["pods"] == seeded["v1/Pod"] == 61
    assert rec["counts"]["events"] == seeded["v1/Event"] == 60
    assert rec["counts"]["events.events.k8s.io"] == seeded["events.k8s.io/v1/Event"] == 60
    assert rec["counts"]["clusterrolebindings"] == 1 and rec["counts"]["nodes"] == 3
    # 61 pods at 7 per page: 9 pages, every page requested with its continue token
    assert rec["resources"]["pods"]["pages"] == 9
    assert sum("/api/v1/pods?" in r and "continue=" in r for r in cluster.requests) == 8
    # the forbidden resource is recorded, and the collection went on
    assert rec["forbidden"] == ["certificatesigningrequests"]
    (err,) = rec["errors"]
    assert err["status"] == 403 and err["resource"] == "certificatesigningrequests"
    assert "cannot list resource" in err["message"]
    assert rec["partial"] is True and rec["resources"]["certificatesigningrequests"]["status"] == "forbidden"
    assert rec["target"] == {"source": "kubeconfig", "kubeconfig": str(tmp_path / "kubeconfig"),
                             "context": "test-cluster-admin", "cluster": "test-cluster", "user": "forensics-reader",
                             "server": collector.target["server"]}
    assert rec["server_version"] == "v1.31.4-test-server"
    assert rec["pod_logs"] == [{"namespace": "default", "pod": "node-debugger-x7k2p", "container": None,
                                "bytes": 93}]

    # the case: same readers, same tables; the rest of the toolkit analyses it
    objects = case.objects
    pods = objects[objects["kind"] == "Pod"]
    assert len(pods) == 61
    dbg = pods[pods["name"] == "node-debugger-x7k2p"].iloc[0]
    assert bool(dbg["privileged"]) and bool(dbg["host_pid"]) and list(dbg["host_paths"]) == ["/"]
    assert len(case.k8s_events) == 120
    tl = case.timeline()
    assert len(tl) >= 120
    assert case.verify().ok
    # the record is evidence too, and no credential is written anywhere in the case
    assert _record(case)["id"] == rec["id"]
    for p in case.path.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p
    entries = case.manifest["evidence"]
    assert {e["collected_by"] for e in entries} == {"k8s-api"}
    assert {e["format"] for e in entries} >= {"k8s-objects", "k8s-events", "pod-log", "collection-record"}
    # read-only: never a write request; secrets are not collected by default
    assert cluster.writes == []
    assert not any("/secrets" in r for r in cluster.requests)
    assert "Secret" not in set(objects["kind"])


def test_namespaces_and_label_selector_are_pushed_down(cluster, collector, tmp_path):
    case = Case.create(tmp_path / "case")
    rec = collect(collector, case, namespaces=["shop", "payments"], resources=["pods", "nodes"],
                  label_selector="app!=cart", progress=False)
    # shop: 6 web + 6 cart pods, payments: 12 api pods; cart excluded by the selector
    assert rec["counts"] == {"objects": 18 + 3, "pods": 18, "nodes": 3}
    assert any(r.startswith("/api/v1/namespaces/shop/pods?") and "labelSelector=app%21%3Dcart" in r
               for r in cluster.requests)
    assert set(case.objects.query("kind == 'Pod'")["namespace"]) == {"shop", "payments"}
    assert rec["complete"] is True and rec["errors"] == []


def test_secrets_opt_in_never_keeps_values(cluster, collector, tmp_path):
    case = Case.create(tmp_path / "case")
    collect(collector, case, resources=["secrets"], progress=False)
    (row,) = case.objects.itertuples()
    assert row.kind == "Secret" and row.name == "db-password"
    (evidence,) = (case.path / "evidence").rglob("secrets.jsonl")
    kept = orjson.loads(evidence.read_bytes())
    assert "data" not in kept and kept["data_keys"] == ["password"]
    assert b"aHVudGVyMg==" not in evidence.read_bytes() and "aHVudGVyMg==" not in row.spec


def test_watch_across_410_gone_loses_no_event(cluster, collector, tmp_path):
    case = Case.create(tmp_path / "case")
    pods = {o["metadata"]["name"]: o for o in cluster.items(("v1", "pods"))}
    modified = dict(pods["web-7d9f8c6b5d-00000"], status={**pods["web-7d9f8c6b5d-00000"]["status"],
                                                            "phase": "Failed"})
    deleted = pods["cart-7d9f8c6b5d-00001"]
    template = pods["node-debugger-x7k2p"]

    def new_pod(name: str) -> dict:
        return {**template, "metadata": {**template["metadata"], "name": name, "uid": f"uid-{name}"}}

    result: dict = {}
    t = threading.Thread(target=lambda: result.update(rec=collect(
        collector, case, resources=["pods", "events"], watch="4s", progress=False)))
    t.start()
    deadline = time.monotonic() + 20
    while not any("watch=true" in r for r in cluster.requests):
        assert time.monotonic() < deadline, "the collector never started watching"
        time.sleep(0.02)
    cluster.add(new_pod("live-before-gap"))  # delivered by the open stream
    time.sleep(0.3)
    cluster.paused = True  # the streams stall: what follows is only recoverable by a re-list
    cluster.add(new_pod("added-during-gap"))
    cluster.modify(modified)
    cluster.delete(deleted)
    from tests.collect.k8s_seed import core_event

    cluster.add(core_event(999, "shop", "added-during-gap", "Pulled", "Pulled image during the gap"))
    cluster.compact()  # the history the streams would resume from is gone: 410
    cluster.paused = False
    time.sleep(1.5)
    cluster.add(new_pod("live-after-gap"))
    t.join(30)
    rec = result["rec"]
    w = rec["watch"]
    assert w["gone"] >= 2 and w["relists"] >= 2  # both watched resources hit 410 and re-listed

    elog = next(e for e in case.manifest["evidence"] if e["format"] == "k8s-watch-events")
    events = [orjson.loads(line) for line in (case.path / elog["stored_as"]).read_bytes().splitlines()]
    seen = {(e["type"], e["name"], e["via"]) for e in events}
    assert ("ADDED", "live-before-gap", "watch") in seen
    assert ("ADDED", "added-during-gap", "relist") in seen
    assert ("MODIFIED", "web-7d9f8c6b5d-00000", "relist") in seen
    assert ("DELETED", "cart-7d9f8c6b5d-00001", "relist") in seen
    assert ("ADDED", "added-during-gap.00000000000003e7", "relist") in seen
    assert ("ADDED", "live-after-gap", "watch") in seen, (rec["errors"], w, sorted(seen))
    names = set(case.objects["name"])
    assert {"live-before-gap", "added-during-gap", "live-after-gap"} <= names
    assert "Pulled image during the gap" in set(case.k8s_events["message"])
    failed = case.objects.query("name == 'web-7d9f8c6b5d-00000'")["phase"]
    assert set(failed) == {"Running", "Failed"}  # snapshot and watched versions both kept


def test_collector_is_read_only(server, tmp_path):
    col = K8sCollector.from_config(kubeconfig=server.kubeconfig(tmp_path / "kc"))
    core = ReadOnlyApi(k8s_client.CoreV1Api(col._client))
    with pytest.raises(CollectorError, match="read-only"):
        core.delete_namespaced_pod("x", "default")
    with pytest.raises(CollectorError, match="read-only"):
        core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="x")))
    # even a generated API used directly over the collector's client cannot write
    with pytest.raises(CollectorError, match="refusing POST"):
        k8s_client.CoreV1Api(col._client).create_namespace(
            k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="x")))
    assert server.cluster.writes == []
    assert not any(n.startswith(("create", "delete", "patch")) for n in dir(col) if not n.startswith("_"))
    with pytest.raises(CollectorError):
        K8sCollector(k8s_client.ApiClient(), {})  # type: ignore[arg-type]
    assert isinstance(col._client, ReadOnlyApiClient)


def test_served_objects_are_complete_for_the_typed_client(server, tmp_path):
    """The test server's objects deserialize into the client's models (v37 validates required fields)."""
    from kubernetes import config

    cfg = k8s_client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig(tmp_path / "kc")), client_configuration=cfg)
    api = k8s_client.ApiClient(cfg)
    assert len(k8s_client.CoreV1Api(api).list_pod_for_all_namespaces().items) == 61
    assert len(k8s_client.EventsV1Api(api).list_event_for_all_namespaces().items) == 60
    assert len(k8s_client.AppsV1Api(api).list_deployment_for_all_namespaces().items) == 6
    assert k8s_client.RbacAuthorizationV1Api(api).list_cluster_role_binding().items[0].role_ref.name == "cluster-admin"


def test_bad_kubeconfig_and_unknown_resource_are_clear(tmp_path, server):
    with pytest.raises(CollectorError, match="cannot load kubeconfig"):
        K8sCollector.from_config(kubeconfig=tmp_path / "missing")
    col = K8sCollector.from_config(kubeconfig=server.kubeconfig(tmp_path / "kc"))
    with pytest.raises(CollectorError, match="unknown resource 'pod'"):
        collect(col, Case.create(tmp_path / "c"), resources=["pod"])
    assert "secrets" in RESOURCES and RESOURCES["secrets"].opt_in


def test_rbac_manifest_grants_only_reads_of_collected_resources():
    import yaml

    root = Path(__file__).resolve().parents[2]
    docs = [d for d in yaml.safe_load_all((root / "deploy" / "rbac-readonly.yaml").read_text()) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                granted.add((g, r))
    expected = {(r.group, r.name.split(".")[0]) for r in RESOURCES.values() if not r.opt_in}
    assert expected | {("", "pods/log")} == granted
    assert not any(r == "secrets" for _, r in granted)


def test_cli_collect_k8s(server, tmp_path, capsys):
    from kubeforensics.cli import main

    kc = server.kubeconfig(tmp_path / "kc")
    code = main(["collect", "k8s", "--case", str(tmp_path / "case"), "--kubeconfig", str(kc), "--namespace", "shop",
                 "--resource", "pods", "--resource", "certificatesigningrequests", "--json"])
    rec = orjson.loads(capsys.readouterr().out)
    assert code == 1  # partial: the CSRs are forbidden
    assert rec["counts"]["pods"] == 12 and rec["forbidden"] == ["certificatesigningrequests"]
    assert rec["target"]["context"] == "test-cluster-admin"
    assert main(["collect", "k8s", "--case", str(tmp_path / "case2"), "--kubeconfig", str(kc),
                 "--resource", "nodes"]) == 0
    assert "nodes" in capsys.readouterr().out
