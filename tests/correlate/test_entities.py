"""Entity resolution at a point in time on hand-built frames."""

from __future__ import annotations

import json

import pandas as pd

from kubeforensics.correlate import EntityResolver, dedupe_audit
from kubeforensics.correlate.frames import table
from tests.correlate.cases import HIDDEN_CID, NODE, NODE_IP, PRIV_CID, escape_case
from tests.correlate.conftest import T0, frame, ts


def test_audit_stages_deduplicated_to_most_complete_at_request_time():
    a = dedupe_audit(table(escape_case(), "audit"))
    create = a[a["audit_id"] == "a-create"]
    assert len(create) == 1
    assert create["stage"].iloc[0] == "ResponseComplete"
    assert create["time"].iloc[0] == T0 + pd.Timedelta(seconds=10)
    assert create["code"].iloc[0] == 201


def test_pod_ip_reused_after_pod_dies():
    obj = [
        {
            "time": ts(0),
            "kind": "Pod",
            "namespace": "shop",
            "name": "old",
            "uid": "u1",
            "created": ts(0),
            "deleted": ts(100),
            "pod_ip": "10.244.2.9",
            "node": NODE,
            "service_account": "old-sa",
        },
        {
            "time": ts(200),
            "kind": "Pod",
            "namespace": "shop",
            "name": "new",
            "uid": "u2",
            "created": ts(200),
            "pod_ip": "10.244.2.9",
            "node": NODE,
            "service_account": "new-sa",
        },
    ]
    r = EntityResolver.from_tables({"objects": frame("objects", obj)})
    assert r.ip("10.244.2.9", T0 + pd.Timedelta(seconds=50)).pod == "old"
    assert r.ip("10.244.2.9", T0 + pd.Timedelta(seconds=250)).pod == "new"
    assert r.ip("10.244.2.9", T0 + pd.Timedelta(seconds=250)).service_account == "new-sa"
    assert r.ip("10.244.2.9", T0 + pd.Timedelta(seconds=150)) is None  # between the two lives
    assert r.ip("10.244.7.7", T0) is None


def test_pod_ip_from_audit_status_and_host_network_pod_shares_node_ip():
    r = EntityResolver.from_tables(escape_case())
    web = r.ip("10.244.1.5", T0 + pd.Timedelta(minutes=3))
    assert (web.namespace, web.pod, web.pod_uid, web.service_account, web.node) == (
        "shop",
        "web-1",
        "uid-web",
        "web",
        NODE,
    )
    host = r.ip(NODE_IP, T0 + pd.Timedelta(minutes=3))
    assert host.node == NODE and host.host_network
    assert host.candidates == ("default/priv",)


def test_container_prefixes_resolve_and_hidden_container_has_no_api_object():
    r = EntityResolver.from_tables(escape_case())
    for n in (64, 31, 24, 12):
        e = r.container(PRIV_CID[:n], T0 + pd.Timedelta(seconds=70))
        assert (e.namespace, e.pod, e.owned_by_api) == ("default", "priv", True), n
        assert e.container_id == PRIV_CID
    assert r.container("containerd://" + PRIV_CID).pod == "priv"
    hidden = r.container(HIDDEN_CID[:12])
    assert hidden.owned_by_api is False and hidden.pod == "" and hidden.node == NODE
    assert r.container("abc") is None


def test_exec_id_and_pod_lookup():
    from tests.correlate.cases import xid

    r = EntityResolver.from_tables(escape_case())
    assert r.exec_id(xid(202)).pod == "priv"
    assert r.exec_id(xid(300)).owned_by_api is False
    assert r.exec_id("nope") is None
    p = r.pod("default", "priv")
    assert p.host_network and p.valid_to == T0 + pd.Timedelta(seconds=900)


def test_service_account_tokens_carry_pod_and_credential_id():
    r = EntityResolver.from_tables(escape_case())
    tok = r.tokens.set_index("token").loc["JTI=tok-web"]
    assert tok["sa_pod_name"] == "web-1"
    assert tok["requests"] == 2
    assert tok["source_ips"] == ["10.244.1.5", "198.51.100.7"]


def test_hubble_endpoints_name_pods_and_empty_tables_are_fine():
    flows = [
        {
            "time": ts(5),
            "src_ip": "10.8.0.3",
            "src_namespace": "bookinfo",
            "src_pod": "reviews-1",
            "dst_ip": "10.8.0.4",
            "dst_namespace": "bookinfo",
            "dst_pod": "ratings-1",
        }
    ]
    r = EntityResolver.from_tables({"flows": frame("flows", flows)})
    assert r.ip("10.8.0.4", T0 + pd.Timedelta(seconds=6)).pod == "ratings-1"
    assert r.ip("10.8.0.3", T0 + pd.Timedelta(seconds=4)).pod == "reviews-1"  # just before first seen
    empty = EntityResolver.from_tables({})
    assert empty.ip("10.0.0.1", T0) is None and empty.container(PRIV_CID) is None and len(empty.pods) == 0


def test_pod_name_from_response_object_when_object_ref_has_none():
    obj = {
        "metadata": {"name": "gen-abc12", "namespace": "ci", "uid": "u9"},
        "spec": {"nodeName": "n2"},
        "status": {"podIP": "10.244.9.9"},
    }
    a = [
        {
            "time": ts(1),
            "audit_id": "x",
            "stage": "ResponseComplete",
            "verb": "create",
            "resource": "pods",
            "namespace": "ci",
            "code": 201,
            "response_object": json.dumps(obj),
        }
    ]
    r = EntityResolver.from_tables({"audit": frame("audit", a)})
    assert r.ip("10.244.9.9", T0 + pd.Timedelta(seconds=2)).pod == "gen-abc12"
