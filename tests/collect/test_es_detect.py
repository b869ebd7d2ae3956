"""Push-down of detections into Elasticsearch (noida-db, or KUBEFORENSICS_TEST_ES_URL).

The corpus: the real audit events of ../shared/conformance/audit/falco-trace-files re-timed
into the window (2026-03-02 00:00-01:00 UTC), the same events re-timed to the day before (out
of the window), and benign API traffic, indexed in both document shapes.  The pushed-down
findings must equal what ``run_rules`` finds in a case collected from the same index."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch, helpers

from kubeforensics.case import Case
from kubeforensics.collect.common import Backoff
from kubeforensics.collect.es import EsCollector, collect
from kubeforensics.collect.es_detect import es_findings
from kubeforensics.detect.engine import run_rules
from tests.collect import es_data as d
from tests.conftest import CONFORMANCE, conformance_files

SIGMA = CONFORMANCE / "sigma-kubernetes"
T_IN = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
T_OUT = T_IN - timedelta(days=1)
WINDOW = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-02T01:00:00Z"}
NOISE = 400
EXEC_RULE = "SIGMA-a1b0ca4e-7835-413e-8471-3ff2b8a66be6"  # kubernetes_audit_exec_into_container.yml
# Request/response objects are not indexed (as many clusters do, to bound the mapping); rules on
# them are then only partly pushed down and finished locally.
MAPPING = {"properties": {"@timestamp": {"type": "date"},
                          "requestObject": {"type": "object", "enabled": False},
                          "responseObject": {"type": "object", "enabled": False},
                          "kubernetes": {"properties": {"audit": {"properties": {
                              "requestObject": {"type": "object", "enabled": False},
                              "responseObject": {"type": "object", "enabled": False}}}}}}}


def _events() -> list[dict]:
    out = []
    for p in conformance_files("audit/falco-trace-files"):
        for line in p.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def _retime(ev: dict, t: datetime) -> dict:
    ev = dict(ev, requestReceivedTimestamp=d.iso(t), stageTimestamp=d.iso(t + timedelta(milliseconds=5)))
    return {"@timestamp": d.iso(t), **ev}


def _docs() -> list[tuple[str, dict]]:
    """``(id, raw document)``: attacks in and out of the window, benign noise in it."""
    docs = []
    for n, ev in enumerate(_events()):
        docs.append((f"in-{n}", _retime(ev, T_IN + timedelta(seconds=10 * n + 5))))
        docs.append((f"out-{n}", _retime(ev, T_OUT + timedelta(seconds=10 * n + 5))))
    for i in range(NOISE):
        ev = d.audit_event(i)
        docs.append((f"noise-{i}", _retime(ev, T_IN + timedelta(seconds=5 * i + 2))))
    return docs


def _ecs(doc: dict) -> dict:
    audit = {k: v for k, v in doc.items() if k not in ("kind", "apiVersion", "@timestamp")}
    return {"@timestamp": doc["@timestamp"], "event": {"dataset": "kubernetes.audit_logs"},
            "kubernetes": {"audit": audit}}


@pytest.fixture(scope="module")
def seeded(es_url):
    if not conformance_files("audit/falco-trace-files") or not SIGMA.is_dir():
        pytest.skip(f"conformance corpus not found at {CONFORMANCE}")
    es = Elasticsearch(es_url, request_timeout=120)
    docs = _docs()
    for index, shape in (("kfd-raw", lambda x: x), ("kfd-ecs", _ecs)):
        es.options(ignore_status=404).indices.delete(index=index)
        es.indices.create(index=index, mappings=MAPPING)
        ok, errors = helpers.bulk(es, ({"_index": index, "_id": i, "_source": shape(x)} for i, x in docs),
                                  refresh=True, raise_on_error=False)
        assert (ok, errors) == (len(docs), [])
    yield {"raw": "kfd-raw:raw", "ecs": "kfd-ecs:ecs", "docs": len(docs), "attacks": len(_events())}
    es.options(ignore_status=404).indices.delete(index="kfd-raw,kfd-ecs")


def _collector(url: str) -> EsCollector:
    return EsCollector.from_env(url, backoff=Backoff(attempts=3, base=0.05, cap=0.2))


def _summary(findings) -> set[tuple[str, int, frozenset]]:
    return {(r["rule_id"], int(r["count"]), frozenset(r["event_ids"])) for r in findings.to_dict("records")}


def _reference(es_url: str, index: str, tmp_path: Path, sigma: Path = SIGMA):
    """``run_rules`` over a case collected from the same index, event ids translated to ``index/_id``."""
    case = Case.create(tmp_path / "case")
    collect(_collector(es_url), case, [index], progress=False, overview=False, **WINDOW)
    by_name = {Path(e["stored_as"]).name: e for e in case.manifest["evidence"]}
    hit_log = next(e for e in case.manifest["evidence"] if e["format"] == "es-hit-index")
    ids = {}
    for line in (case.path / hit_log["stored_as"]).read_bytes().splitlines():
        h = orjson.loads(line)
        ids[f"{by_name[h['file']]['sha256'][:12]}:{h['line']}"] = f"{h['index']}/{h['id']}"
    f = run_rules(case.frames(), sigma=sigma)
    f["event_ids"] = [[ids[str(e)] for e in evs] for evs in f["event_ids"]]
    return f


@pytest.mark.parametrize("shape", ["raw", "ecs"])
def test_pushed_down_findings_equal_run_rules_on_a_case(es_url, seeded, tmp_path, shape):
    got = es_findings(_collector(es_url), [seeded[shape]], sigma=SIGMA, **WINDOW)
    pushed = got.attrs["pushdown"]
    ref = _reference(es_url, seeded[shape], tmp_path)
    ref = ref[ref["rule_id"].isin(list(pushed))]
    assert got.attrs["errors"] == {}
    assert _summary(got) == _summary(ref)
    sigma_found = {r for r in got["rule_id"] if r.startswith("SIGMA-")}
    assert len(sigma_found) >= 5, sigma_found
    assert len(set(got["rule_id"]) - sigma_found) >= 5
    # Findings come from the window only: the attack copies (and the noise's deletes), never the day before.
    assert {e.split("/")[1].split("-")[0] for evs in got["event_ids"] for e in evs} <= {"in", "noise"}
    assert sum(len(evs) for evs in got["event_ids"]) > 0
    # Statistical and correlation rules are not pushed down, and say so.
    assert "statistical/correlation rule" in got.attrs["not_pushed_down"].values()
    # The queries narrow: the Sigma exec rule (create pods/exec) reads its one document, not the window's 452.
    per_rule = {rid: s["hits"] for rid, s in pushed.items()}
    assert per_rule[EXEC_RULE] == 1 and got[got["rule_id"] == EXEC_RULE]["count"].tolist() == [1]
    assert sum(1 for h in per_rule.values() if h <= seeded["attacks"]) >= len(per_rule) // 2


def test_the_window_excludes_out_of_window_hits(es_url, seeded):
    col = _collector(es_url)
    one = es_findings(col, [seeded["raw"]], sigma=SIGMA, **WINDOW).attrs["pushdown"]
    two = es_findings(col, [seeded["raw"]], sigma=SIGMA, since="2026-03-01T00:00:00Z",
                      until=WINDOW["until"]).attrs["pushdown"]
    assert set(one) == set(two)
    for rid, st in one.items():
        assert st["hits"] == st["server_total"], rid
    # Attack documents appear once per day: a rule that hits only attack documents hits twice as many
    # across both days; noise hits (in the window only) are counted in both runs alike.
    doubled = [rid for rid in one if two[rid]["hits"] > one[rid]["hits"]]
    assert len(doubled) >= 5
    assert sum(two[r]["hits"] for r in one) > sum(one[r]["hits"] for r in one)


def test_cli_jsonl_contract(es_url, seeded):
    cmd = [sys.executable, "-m", "kubeforensics", "findings", "--es", es_url, "--index", "kfd-ecs", "--shape", "ecs",
           *("--since", WINDOW["since"], "--until", WINDOW["until"]), "--sigma", str(SIGMA), "--format", "jsonl"]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert rows and all(list(r) == ["rule_id", "title", "severity", "techniques", "first_seen", "last_seen",
                                    "namespace", "pod", "actor", "event_ids", "summary", "count"] for r in rows)
    assert all(r["count"] == len(r["event_ids"]) and r["first_seen"].startswith("2026-03-02T00:") for r in rows)
    assert "not pushed down: statistical/correlation rule" in p.stderr
    direct = es_findings(_collector(es_url), [seeded["ecs"]], sigma=SIGMA, **WINDOW)
    assert {(r["rule_id"], r["count"]) for r in rows} == {(r["rule_id"], int(r["count"]))
                                                          for r in direct.to_dict("records")}
    bad = subprocess.run([sys.executable, "-m", "kubeforensics", "findings", "--es", es_url],
                         check=False, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--since" in bad.stderr


STAGE_RULE = """
title: Pod created, not forbidden
id: 6f0c2a9e-0000-4000-8000-00000000beef
status: test
logsource: {product: kubernetes, service: audit}
detection:
  selection: {verb: create, objectRef.resource: pods}
  forbidden: {responseStatus.code: 403}
  condition: selection and not forbidden
level: low
"""


def test_the_most_complete_stage_decides_as_in_a_case(es_url, seeded, tmp_path):
    """A request's RequestReceived stage (no response code) matches; its ResponseComplete (403) does not."""
    es = Elasticsearch(es_url, request_timeout=60)
    base = d.audit_event(3)  # alice creates a pod in kube-system
    docs = []
    for n, code in enumerate((403, 201)):
        ev = dict(base, auditID=f"stage-test-{n}")
        docs.append((f"stage-{n}-rr", _retime(dict(ev, stage="RequestReceived", responseStatus=None), T_IN)))
        docs.append((f"stage-{n}-rc", _retime(dict(ev, responseStatus={"code": code}), T_IN + timedelta(seconds=1))))
    for doc in (x for _, x in docs):
        if doc["responseStatus"] is None:
            del doc["responseStatus"]
    es.options(ignore_status=404).indices.delete(index="kfd-stages")
    es.indices.create(index="kfd-stages", mappings=MAPPING)
    helpers.bulk(es, ({"_index": "kfd-stages", "_id": i, "_source": x} for i, x in docs), refresh=True)
    rule = tmp_path / "stage.yml"
    rule.write_text(STAGE_RULE)
    got = es_findings(_collector(es_url), ["kfd-stages:raw"], sigma=rule, builtin=False, **WINDOW)
    st = got.attrs["pushdown"]["SIGMA-6f0c2a9e-0000-4000-8000-00000000beef"]
    assert (st["hits"], st["other_stages"]) == (3, 1)  # both RequestReceived, the 201; then the 403
    assert [(r["count"], r["event_ids"]) for r in got.to_dict("records")] == [(1, ["kfd-stages/stage-1-rc"])]
    ref = _reference(es_url, "kfd-stages:raw", tmp_path, sigma=rule)
    ref = ref[ref["rule_id"] == "SIGMA-6f0c2a9e-0000-4000-8000-00000000beef"]
    assert _summary(got) == _summary(ref)
