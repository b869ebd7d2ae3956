"""The Elasticsearch collector against noida-db (or KUBEFORENSICS_TEST_ES_URL)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from elasticsearch import Elasticsearch

from kubeforensics.case import Case
from kubeforensics.collect.common import Backoff
from kubeforensics.collect.es import EsCollector, IndexSpec, collect
from tests.collect import es_data as d
from tests.collect.es_server import REMOTE, NoidaServer

HALF = 25_000
SMALL = 12_000  # past the 10,000-hit window, kept small for speed (noida-db serves ~1,500 docs/s here)
WINDOW = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}


@pytest.fixture(scope="module")
def seeded(es_url):
    es = Elasticsearch(es_url, request_timeout=120)
    n = {"kf-raw-small": d.seed(es, "kf-raw-small", (d.raw_doc(i) for i in range(SMALL)), d.RAW_MAPPING),
         "kf-ecs-small": d.seed(es, "kf-ecs-small", (d.ecs_audit_doc(i) for i in range(SMALL)), d.ECS_MAPPING),
         "kf-ecs-falco": d.seed(es, "kf-ecs-falco", (d.ecs_falco_doc(i) for i in range(300)), d.ECS_MAPPING),
         "kf-raw-message": d.seed(es, "kf-raw-message", (d.raw_doc(i, in_message=True) for i in range(200)),
                                  d.RAW_MAPPING)}
    yield n
    es.options(ignore_status=404).indices.delete(index=",".join(n))


def _collector(url: str, **kw) -> EsCollector:
    return EsCollector.from_env(url, backoff=Backoff(attempts=3, base=0.05, cap=0.2), **kw)


def _hits(case: Case) -> list[dict]:
    e = next(e for e in case.manifest["evidence"] if e["format"] == "es-hit-index")
    return [orjson.loads(x) for x in (case.path / e["stored_as"]).read_bytes().splitlines()]


def test_past_10000_hits_with_overview(es_url, seeded, tmp_path):
    case = Case.create(tmp_path / "case")
    rec = collect(_collector(es_url), case, ["kf-raw-small"], progress=False, **WINDOW)
    (info,) = rec["indices"]
    assert (info["collected"], info["server_total"], info["difference"], info["pages"]) == (SMALL, SMALL, 0, 3)
    assert len(case.audit) == SMALL
    ov = rec["overview"]
    assert ov["totals"] == {"kf-raw-small": SMALL}
    assert ov["per_interval"]["kf-raw-small"] == [("2026-03-02T00:00:00.000Z", 3600), ("2026-03-02T01:00:00.000Z",
                                                  3600), ("2026-03-02T02:00:00.000Z", 3600),
                                                  ("2026-03-02T03:00:00.000Z", 1200)]
    assert dict(ov["top"]["namespace"]) == {ns: SMALL // 4 for ns in d.NAMESPACES}
    assert ov["top"]["user"][0] == ("system:serviceaccount:shop:default", SMALL * 2 // 3)


@pytest.mark.slow  # about 3 minutes: seeding and serving 50,000 documents is noida-db-bound
def test_50000_documents_through_pit_paging_in_both_shapes(es_url, tmp_path):
    es = Elasticsearch(es_url, request_timeout=120)
    assert d.seed(es, "kf-raw-audit", (d.raw_doc(i) for i in range(HALF)), d.RAW_MAPPING) == HALF
    assert d.seed(es, "kf-ecs-audit", (d.ecs_audit_doc(i) for i in range(HALF, 2 * HALF)), d.ECS_MAPPING) == HALF
    case = Case.create(tmp_path / "case")
    rec = collect(_collector(es_url), case, ["kf-raw-audit:raw", "kf-ecs-audit:ecs"], progress=False, **WINDOW)
    raw, ecs = rec["indices"]
    assert (raw["collected"], raw["server_total"], raw["difference"]) == (HALF, HALF, 0)
    assert (ecs["collected"], ecs["server_total"], ecs["difference"]) == (HALF, HALF, 0)
    assert raw["pages"] >= 5 and ecs["formats"] == {"audit": HALF}  # well past 10,000 hits per index
    assert rec["collected"] == rec["server_total"] == 50_000 and rec["complete"] and not rec["partial"]
    audit = case.table("audit", columns=["event_id", "verb", "namespace"])
    assert len(audit) == 50_000 and audit["event_id"].is_unique
    assert rec["ingest"]["totals"] == {"records": 50_000, "ingested": 50_000, "quarantined": 0}
    assert len({(h["index"], h["id"]) for h in _hits(case)}) == 50_000
    # overview from aggregations: per index per hour, top entities
    ov = rec["overview"]
    assert ov["totals"] == {"kf-raw-audit": HALF, "kf-ecs-audit": HALF}
    assert ov["per_interval"]["kf-raw-audit"][0] == ("2026-03-02T00:00:00.000Z", 3600)
    assert sum(c for _, c in ov["per_interval"]["kf-ecs-audit"]) == HALF
    assert dict(ov["top"]["namespace"]) == {ns: 12_500 for ns in d.NAMESPACES}
    es.indices.delete(index="kf-raw-audit,kf-ecs-audit")


def test_window_and_pod_filters_are_pushed_down(es_url, seeded, tmp_path):
    case = Case.create(tmp_path / "case")
    pod = d.pod_name(3)
    since, until = d.T0 + timedelta(hours=1), d.T0 + timedelta(hours=2)
    rec = collect(_collector(es_url), case, ["kf-raw-small"], since=d.iso(since), until=d.iso(until),
                  filters={"pod": [pod]}, progress=False)
    expected = [i for i in range(3600, 7200) if i % 20 == 3]
    (info,) = rec["indices"]
    assert info["collected"] == info["server_total"] == len(expected) == 180
    assert len(_hits(case)) == 180  # only the matching documents were transferred
    audit = case.audit
    assert len(audit) == 180 and set(audit["name"]) == {pod}
    assert audit["time"].min() >= since and audit["time"].max() < until
    # namespace and user filters on the ECS shape, over its own fields
    case2 = Case.create(tmp_path / "case2")
    rec2 = collect(_collector(es_url), case2, ["kf-ecs-small:ecs"], filters={
        "namespace": ["payments"], "user": ["alice@example.com"]}, progress=False, **WINDOW)
    want = sum(1 for i in range(SMALL) if i % 4 == 1 and i % 3 == 0)
    assert rec2["collected"] == want and set(case2.audit["namespace"]) == {"payments"}


def test_falco_integration_and_json_in_message_are_mapped(es_url, seeded, tmp_path):
    case = Case.create(tmp_path / "case")
    rec = collect(_collector(es_url), case, [IndexSpec("kf-ecs-falco", "ecs"),
                                             IndexSpec("kf-raw-message", "raw", raw_field="message")],
                  progress=False, **WINDOW)
    assert [i["formats"] for i in rec["indices"]] == [{"falco": 300}, {"raw": 200}]
    alerts = case.alerts
    assert len(alerts) == 300 and set(alerts["rule"]) == {"Terminal shell in container"}
    first = alerts.sort_values("time").iloc[0]
    assert first["namespace"] == "shop" and first["pod"] == d.pod_name(0)
    assert len(case.audit) == 200 and rec["ingest"]["totals"]["quarantined"] == 0


@pytest.mark.skipif(bool(REMOTE), reason="restarts the server: only with the local noida-db")
def test_server_restart_gives_partial_record_and_rerun_completes(tmp_path):
    srv = NoidaServer(tmp_path / "noida").start()
    try:
        es = Elasticsearch(srv.url, request_timeout=60)
        assert d.seed(es, "kf-restart", (d.raw_doc(i) for i in range(3000)), d.RAW_MAPPING) == 3000
        col = _collector(srv.url, page_size=500)
        pages = {"n": 0}
        real_search = col.es.search

        def search(**kw):
            # After exactly three answered PIT pages the server goes away (counting answered pages, not
            # calls, keeps this deterministic when a call is retried or the overview makes more searches).
            if "pit" in kw and pages["n"] == 3:
                srv.stop()
            out = real_search(**kw)
            if "pit" in kw:
                pages["n"] += 1
            return out

        col.es.search = search  # type: ignore[method-assign]
        case = Case.create(tmp_path / "case")
        rec = collect(col, case, ["kf-restart"], progress=False, **WINDOW)
        (info,) = rec["indices"]
        assert rec["partial"] is True and info["status"] == "partial"
        assert info["collected"] == 1500 and "ConnectionError" in info["error"]
        assert info["resume"]["ids_at_after"] and rec["partial_reasons"][0].startswith("kf-restart: partial, 1500 of")
        assert len(case.audit) == 1500

        srv.start()
        rec2 = collect(_collector(srv.url, page_size=500), case, ["kf-restart"], progress=False, **WINDOW)
        (info2,) = rec2["indices"]
        assert rec2["resumes"] == rec["id"] and rec2["complete"]
        assert (info2["collected"], info2["collected_total"], info2["server_total"], info2["difference"]) == (
            1500, 3000, 3000, 0)
        audit = case.table("audit", columns=["audit_id"])
        assert len(audit) == 3000 and audit["audit_id"].is_unique
    finally:
        srv.stop()


def test_cli_collect_es_with_credentials_from_the_environment(es_url, seeded, tmp_path, capsys, monkeypatch):
    from kubeforensics.cli import main

    monkeypatch.setenv("KUBEFORENSICS_ES_USER", "forensics")
    monkeypatch.setenv("KUBEFORENSICS_ES_PASSWORD", "pw-never-stored-7f3a")
    case_dir = tmp_path / "case"
    code = main(["collect", "es", "--case", str(case_dir), "--url", es_url, "--since", "2026-03-02T01:00:00Z",
                 "--until", "2026-03-02T02:00:00Z", "--index", "kf-raw-small:raw", "--query-filter", "namespace=payments",
                 "--query-filter", '{"term": {"verb": "create"}}', "--json"])
    rec = orjson.loads(capsys.readouterr().out)
    expected = sum(1 for i in range(3600, 7200) if i % 4 == 1 and i % 6 == 3)
    assert code == 0 and rec["collected"] == expected == 300 and rec["target"]["auth"] == "basic"
    for p in case_dir.rglob("*"):
        if p.is_file():
            assert b"pw-never-stored-7f3a" not in p.read_bytes(), p
    assert main(["collect", "es", "--case", str(case_dir), "--url", es_url, "--since", "x", "--until", "y",
                 "--index", "kf-raw-small", "--query-filter", "namespace"]) == 2
