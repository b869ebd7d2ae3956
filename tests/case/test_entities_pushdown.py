"""``Case.entities`` built from storage (:mod:`kubeforensics.case.entities_pushdown`) is the resolver of the
whole tables, exactly, in memory that does not follow the row count.

Differential: on every shipped scenario, on a simulated 200k-record case, in time windows and with entity
filters, and on synthetic tables full of edge cases (stages of one request with different times, null
times and strings, '' next to null, identical pod updates, deletes, ties of the connect mode, missing tables,
all-null columns), the pushed-down resolver's ``pods``, ``containers``, ``node_ips``, ``tokens`` and
``_procs`` equal those of ``EntityResolver.from_tables(case.frames())``, row order and dtypes included
(order matters: ``pods`` gives ``ip_bindings`` and the latest lifetime of a name, ``containers`` the
last match, ``node_ips`` the first node of an IP, ``_procs`` the first row of an exec id).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeforensics import Case
from kubeforensics.case.entities_pushdown import entities_from_storage
from kubeforensics.case.query import CaseQuery, Filters
from kubeforensics.case.store import SOURCE_TABLES
from kubeforensics.correlate import EntityResolver
from kubeforensics.schema import TABLES
from tests.case.scenario_cases import ROOT, SCENARIOS, scenario_cases

FRAMES = ("pods", "containers", "node_ips", "tokens", "_procs")


def assert_same_resolver(new: EntityResolver, ref: EntityResolver, *, spot: bool = True) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(new, name), getattr(ref, name), obj=name)
    pd.testing.assert_frame_equal(new.ip_bindings, ref.ip_bindings, obj="ip_bindings")
    if spot:
        assert_same_answers(new, ref)


def assert_same_answers(new: EntityResolver, ref: EntityResolver, n: int = 12) -> None:
    """``ip``, ``container``, ``exec_id`` and ``pod`` give the same answers on a sample of what the case knows."""
    p = ref.pods
    some = p.iloc[np.unique(np.linspace(0, len(p) - 1, n).astype(int))] if len(p) else p
    for ip, start in zip(some["ip"], some["start"]):
        if pd.notna(start):
            assert new.ip(ip, start + pd.Timedelta(seconds=30)) == ref.ip(ip, start + pd.Timedelta(seconds=30)), ip
    at = p["start"].min() if p["start"].notna().any() else pd.Timestamp("2026-01-01", tz="UTC")
    for ip in list(ref.node_ips["ip"])[:4]:
        assert new.ip(ip, at) == ref.ip(ip, at), ip
    c = ref.containers
    for cid, first in list(zip(c["container_id"], c["first_seen"]))[:: max(1, len(c) // n)]:
        assert new.container(cid[:12]) == ref.container(cid[:12]), cid
        if pd.notna(first):
            assert new.container(cid, first) == ref.container(cid, first), cid
    ids = list(ref._procs.index)
    for e in ids[:3] + ids[-3:] + ids[:: max(1, len(ids) // n)] + ["no-such-exec-id"]:
        assert new.exec_id(e) == ref.exec_id(e), e
    for ns, pod in zip(some["namespace"], some["pod"]):
        assert new.pod(ns, pod) == ref.pod(ns, pod)


def full_resolver(case: Case, **filters: Any) -> EntityResolver:
    return EntityResolver.from_tables(case.frames(**filters))


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return scenario_cases(tmp_path_factory)


def simulated_case(root: Path, scenario: str, scale: int) -> Case:
    from kubeforensics.simulate import simulate

    case = Case.create(root / "case")
    case.ingest([simulate(scenario, root / "data", scale=scale)], progress=False)
    return case


@pytest.mark.parametrize("name", SCENARIOS)
def test_pushed_down_resolver_is_the_full_one(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ref = full_resolver(case)
    assert len(ref.pods) and len(ref.containers) and len(ref.tokens) and len(ref._procs)  # something to compare
    assert_same_resolver(entities_from_storage(case.query), ref)


@pytest.mark.parametrize("name", ["stolen-credentials"])
def test_windows_and_filters(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    lo, hi = case.extent()
    span = hi - lo
    windows: list[dict[str, Any]] = [
        {"since": lo + span * 0.3, "until": lo + span * 0.7},
        {"since": lo + span * 0.5},
        {"until": lo + span * 0.2},
        {"namespace": "default"},
        {"since": hi + pd.Timedelta(days=1)},  # nothing in the window: every table empty
    ]
    for i, f in enumerate(windows):
        ref = full_resolver(case, **f)
        assert_same_resolver(entities_from_storage(case.query, Filters(**f)), ref, spot=i == 0)


def test_case_entities_uses_storage_then_the_context(cases: dict[str, Case]) -> None:
    case = Case(cases["miner"].path)  # fresh object: nothing cached
    r = case.entities
    assert getattr(case, "_context_cache", None) is None  # the whole tables were not loaded
    assert case.entities is r  # cached per case state
    assert_same_resolver(r, full_resolver(case), spot=False)
    ctx = case._context()
    assert case.entities is ctx.resolver  # a loaded context's resolver is used, as process_tree does


def test_simulated_case(tmp_path: Path) -> None:
    case = simulated_case(tmp_path, "container-escape", 200_000)
    assert sum(case.counts().values()) > 150_000
    ref = full_resolver(case)
    assert_same_resolver(entities_from_storage(case.query), ref)
    # the reduction happened: far fewer process rows reached pandas than the table has
    from kubeforensics.case import entities_pushdown as ep

    procs = ep._processes(ep._Reader(case.query, Filters()))
    assert len(procs) < case.counts()["processes"] / 20


# --------------------------------------------------------------------------- synthetic edge cases

T0 = pd.Timestamp("2026-03-01T10:00:00Z")


def _pick(rng: np.random.Generator, pool: list[Any]) -> Any:
    return pool[int(rng.integers(len(pool)))]


def _time(rng: np.random.Generator, null: float = 0.05) -> Any:
    if rng.random() < null:
        return None
    return (T0 + pd.Timedelta(seconds=int(rng.integers(0, 40)) * 15)).to_pydatetime()


def _pod_json(rng: np.random.Generator) -> str | None:
    import json

    if rng.random() < 0.2:
        return _pick(rng, [None, "", "not json", "[1, 2]", '{"metadata": "x"}'])
    doc: dict[str, Any] = {"metadata": {}, "spec": {}, "status": {}}
    if rng.random() < 0.8:
        doc["metadata"]["name"] = _pick(rng, ["p1", "p2", "p3", "p7", ""])
    if rng.random() < 0.6:
        doc["metadata"]["uid"] = _pick(rng, ["u1", "u2", "u3"])
    if rng.random() < 0.6:
        doc["spec"]["nodeName"] = _pick(rng, ["node-a", "node-b"])
    if rng.random() < 0.5:
        doc["spec"]["serviceAccountName"] = _pick(rng, ["sa1", "default"])
    if rng.random() < 0.05:
        doc["spec"]["hostNetwork"] = _pick(rng, [True, False])
    if rng.random() < 0.6:
        doc["status"]["podIP"] = _pick(rng, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.0.10"])
    if rng.random() < 0.5:
        doc["status"]["hostIP"] = _pick(rng, ["192.168.0.10", "192.168.0.11"])
    if rng.random() < 0.4:
        doc["status"]["containerStatuses"] = [{"containerID": _pick(rng, CIDS)}]
    return json.dumps(doc)


CIDS = ["containerd://" + "ab" * 32, "containerd://" + "cd" * 32, "docker://" + "EF" * 32, "ab" * 6, "", "abc"]
NS = ["ns1", "ns2", "", None]
PODS = ["p1", "p2", "p3", "p4", "p5", "p6", "", None]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "", None]


def _audit(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    rows = []
    users = ["system:serviceaccount:ns1:sa1", "system:serviceaccount:ns2:default", "alice", "", None]
    for i in range(n):
        stages = int(rng.integers(1, 4)) if rng.random() < 0.4 else 1
        audit_id = _pick(rng, [f"a{i}", f"a{i}", None, ""])
        base = {
            "user": _pick(rng, users), "verb": _pick(rng, ["create", "update", "update", "patch", "delete", "get", None]),
            "resource": _pick(rng, ["pods", "pods", "secrets", None]),
            "subresource": _pick(rng, [None, "", "status", "exec"]), "code": _pick(rng, [None, 200, 201, 404]),
            "namespace": _pick(rng, NS), "name": _pick(rng, PODS), "object_uid": _pick(rng, ["u1", "u9", None]),
            "pod_node_name": _pick(rng, ["node-a", "", None]), "pod_service_account": _pick(rng, ["sa1", None]),
            "pod_host_network": _pick(rng, [None, None, None, False, False, True]),
            "sa_pod_name": _pick(rng, PODS), "sa_pod_uid": _pick(rng, ["u1", "", None]),
            "sa_node_name": _pick(rng, ["node-a", None]), "sa_credential_id": _pick(rng, ["c1", "c2", "", None]),
            "source_ip": _pick(rng, IPS),
        }
        body = _pod_json(rng)
        for s in range(stages):
            row = dict(base) if rng.random() < 0.8 else {**base, "resource": _pick(rng, ["pods", "secrets"])}
            t = _time(rng)
            # lines are unique, as in real evidence: stages of one request tied on (rank, line) would make
            # the stage merge pick either row (on both sides), so no exact reference would exist
            row.update(event_id=f"ev:{i}:{s}", line=int(rng.integers(0, 10**9)), audit_id=audit_id,
                       stage=_pick(rng, ["ResponseComplete", "RequestReceived", "ResponseStarted", "Panic"]),
                       time=t, request_time=None if rng.random() < 0.4 else _time(rng),
                       request_object=body if rng.random() < 0.7 else _pod_json(rng),
                       response_object=body if rng.random() < 0.5 else None)
            rows.append(row)
    return rows


def _processes(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [{
        "event_id": f"pr:{i}", "time": _time(rng), "exec_id": _pick(rng, [f"x{int(rng.integers(0, 40))}", "", None]),
        "node": _pick(rng, ["node-a", "node-b", "", None]), "namespace": _pick(rng, NS), "pod": _pick(rng, PODS),
        "pod_uid": _pick(rng, ["u1", "u2", "", None]), "container_id": _pick(rng, CIDS + [None]),
        "function_name": _pick(rng, ["tcp_connect", "__x64_sys_connect", "sys_openat", "", None]),
        "saddr": _pick(rng, IPS),  # ties of the mode are frequent with so few values
    } for i in range(n)]


def _flows(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [{
        "event_id": f"fl:{i}", "time": _time(rng), "node": _pick(rng, ["node-a", None]),
        "src_namespace": _pick(rng, NS), "src_pod": _pick(rng, PODS), "src_ip": _pick(rng, IPS),
        "dst_namespace": _pick(rng, NS), "dst_pod": _pick(rng, PODS), "dst_ip": _pick(rng, IPS),
    } for i in range(n)]


def _alerts(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [{"event_id": f"al:{i}", "time": _time(rng), "container_id": _pick(rng, CIDS + [None]),
             "namespace": _pick(rng, NS), "pod": _pick(rng, PODS), "hostname": _pick(rng, ["node-a", "node-b", None])}
            for i in range(n)]


def _events(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [{"event_id": f"ke:{i}", "time": _time(rng), "kind": _pick(rng, ["Pod", "Pod", "Node", None]),
             "namespace": _pick(rng, NS), "name": _pick(rng, PODS), "object_uid": _pick(rng, ["u1", "u2", None]),
             "message": _pick(rng, ["Successfully assigned ns1/p1 to node-b", "Pulled image", None]),
             "host": _pick(rng, ["node-a", "", None]), "first_time": _time(rng, null=0.5)} for i in range(n)]


def _objects(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [{"event_id": f"ob:{i}", "time": _time(rng), "kind": _pick(rng, ["Pod", "Pod", "Service"]),
             "namespace": _pick(rng, NS), "name": _pick(rng, PODS), "uid": _pick(rng, ["u1", "u2", None]),
             "node": _pick(rng, ["node-a", None]), "service_account": _pick(rng, ["sa1", None]),
             "pod_ip": _pick(rng, IPS), "pod_ips": _pick(rng, [None, [], ["10.0.0.7"], ["10.0.0.8", "x"]]),
             "host_ip": _pick(rng, ["192.168.0.10", "", None]), "host_network": _pick(rng, [None, None, False, False, True]),
             "created": _time(rng, null=0.5), "deleted": _time(rng, null=0.9),
             "container_ids": _pick(rng, [None, [], [CIDS[0]], [CIDS[1], ""]])} for i in range(n)]


MAKERS = {"audit": _audit, "processes": _processes, "flows": _flows, "alerts": _alerts, "k8s_events": _events,
          "objects": _objects}


def write_tables(root: Path, seed: int) -> CaseQuery:
    """Random tables (two Parquet files each, some tables missing, some columns all null) under ``root``."""
    rng = np.random.default_rng(seed)
    for table, make in MAKERS.items():
        if seed % 3 and rng.random() < 0.25:
            continue  # a missing table
        rows = make(rng, int(rng.integers(40, 250)))
        if rng.random() < 0.2:  # a column null everywhere
            col = _pick(rng, sorted({k for r in rows for k in r} - {"event_id"}))
            for r in rows:
                r[col] = None
        spec = TABLES[table]
        d = root / table
        d.mkdir(parents=True)
        half = len(rows) // 2
        for i, part in enumerate((rows[:half], rows[half:])):
            pq.write_table(pa.Table.from_pylist(part, schema=spec.arrow_schema), d / f"{i}.parquet")
    return CaseQuery(root)


@pytest.mark.parametrize("seed", range(8))
def test_synthetic_edge_cases(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 2:
        # as on large tables: list and JSON columns stay as read (None, NaN), on both sides
        monkeypatch.setattr("kubeforensics.correlate.frames.LIST_NORMALISE_MAX", 3)
    q = write_tables(tmp_path / "tables", seed)
    try:
        ref = EntityResolver.from_tables({t: q.frame(t) for t in SOURCE_TABLES})
        assert_same_resolver(entities_from_storage(q), ref)
        lo = T0 + pd.Timedelta(minutes=2)
        f = Filters(since=lo, until=lo + pd.Timedelta(minutes=4))
        ref = EntityResolver.from_tables({t: q.frame(t, f) for t in SOURCE_TABLES})
        assert_same_resolver(entities_from_storage(q, f), ref)
    finally:
        q.close()


def test_an_empty_case(tmp_path: Path) -> None:
    case = Case.create(tmp_path / "case")
    assert_same_resolver(case.entities, full_resolver(case))
    assert case.entities.ip("10.0.0.1", T0) is None


# --------------------------------------------------------------------------- memory

_CHILD = """
import sys
from kubeforensics import Case
case = Case(sys.argv[1])
r = case.entities if sys.argv[2] == "pushdown" else case._context().resolver
print(len(r.pods), len(r._procs))
"""


def entities_peak_mb(case: Path, how: str) -> int:
    from tests.conftest import run_measured

    out, rss = run_measured([sys.executable, "-c", _CHILD, str(case), how], cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return rss // 2**20


def test_memory_follows_variety_not_rows(tmp_path: Path) -> None:
    small = simulated_case(tmp_path / "small", "miner", 100_000)
    large = simulated_case(tmp_path / "large", "miner", 400_000)
    assert sum(large.counts().values()) > 3.5 * sum(small.counts().values())
    push = {c: entities_peak_mb(c.path, "pushdown") for c in (small, large)}
    full = {c: entities_peak_mb(c.path, "full") for c in (small, large)}
    push_growth, full_growth = push[large] - push[small], full[large] - full[small]
    print(f"entities peak MB: pushdown {push[small]} -> {push[large]}, full tables {full[small]} -> {full[large]}")
    assert full_growth > 300  # the whole tables do follow the rows
    assert push_growth < full_growth / 5
    assert push[large] < full[large] / 3
