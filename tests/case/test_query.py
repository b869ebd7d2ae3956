"""DuckDB under a case: memory capped, spilling to a private folder that does not outlive the connection."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kubeforensics.case.query import MEMORY_LIMIT, CaseQuery


def test_spill_folder_is_private_and_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # an in-memory DuckDB would otherwise spill into ./.tmp
    q = CaseQuery(tmp_path / "tables")
    folder, limit = q.con.execute("SELECT current_setting('temp_directory'), current_setting('memory_limit')").fetchall()[0]
    assert Path(folder).parent == Path(tempfile.gettempdir()) and Path(folder).name.startswith("kf-duckdb-")
    assert MEMORY_LIMIT == os.environ.get("KUBEFORENSICS_DUCKDB_MEMORY", "2GB") and "GiB" in limit
    q.con.execute("SET memory_limit = '50MB'")
    q.con.execute("CREATE TEMP TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(3000000)")
    n = q.con.execute("SELECT count(*) FROM (SELECT s, row_number() OVER (ORDER BY s) FROM t)").fetchall()[0][0]
    assert n == 3_000_000
    spilled = Path(folder).exists()
    q.close()
    assert not Path(folder).exists()
    assert not (tmp_path / ".tmp").exists()
    assert spilled  # the table and the sort did not fit in 50 MB: it went to the private folder


def _audit_line(audit_id: str, stage: str, t: str) -> str:
    import json

    return json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
                       "stage": stage, "requestURI": "/api/v1/namespaces/shop/secrets/db", "verb": "get",
                       "user": {"username": "jane@corp.example"}, "sourceIPs": ["203.0.113.7"],
                       "objectRef": {"resource": "secrets", "namespace": "shop", "name": "db", "apiVersion": "v1"},
                       "responseStatus": {"code": 200}, "requestReceivedTimestamp": t, "stageTimestamp": t})


def test_whole_audit_follows_evidence_added_later(tmp_path: Path) -> None:
    """The multi-stage request ids behind ``whole_sql`` are kept per connection, rebuilt when the case's
    audit files change: a request whose second stage arrives in a later file is merged then."""
    import kubeforensics as kf
    from kubeforensics.schema import TABLES

    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(_audit_line("req-1", "RequestReceived", "2026-10-26T06:00:00.000001Z") + "\n"
                     + _audit_line("req-2", "ResponseComplete", "2026-10-26T06:00:01.000001Z") + "\n")
    second.write_text(_audit_line("req-1", "ResponseComplete", "2026-10-26T06:00:00.200001Z") + "\n")
    case = kf.Case.create(tmp_path / "case")
    case.ingest([first], progress=False)
    q = case.query

    def whole() -> list[tuple[str, str, int]]:
        params: list = []
        df = q.to_frame(f"SELECT * FROM {q.whole_sql('audit', params)} ORDER BY audit_id", params, TABLES["audit"])
        return list(zip(df["audit_id"], df["stage"], df["stages"], strict=True))

    assert whole() == [("req-1", "RequestReceived", 1), ("req-2", "ResponseComplete", 1)]
    assert whole() == [("req-1", "RequestReceived", 1), ("req-2", "ResponseComplete", 1)]  # cached: same answer
    case.ingest([second], progress=False)
    assert case.query is q  # the same connection, whose cached ids are now stale
    assert whole() == [("req-1", "ResponseComplete", 2), ("req-2", "ResponseComplete", 1)]


def test_records_sharing_only_an_audit_id_stay_two_requests(tmp_path: Path) -> None:
    """Two files each holding a ResponseComplete record with one auditID (line 1 in both), by two users: two
    requests (a forged line reusing an id must not hide the other), in storage reads, in memory and in
    findings alike; the stages of one request still merge into one row."""
    import json

    import kubeforensics as kf
    from kubeforensics.correlate.frames import dedupe_audit
    from kubeforensics.detect.frames import dedup_audit

    rec = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "same-id",
           "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces", "verb": "create",
           "sourceIPs": ["192.0.2.1"], "objectRef": {"resource": "namespaces", "name": "foo", "apiVersion": "v1"},
           "responseStatus": {"code": 201}, "requestReceivedTimestamp": "2026-01-01T00:00:00.000000Z",
           "stageTimestamp": "2026-01-01T00:00:00.100000Z"}
    stages = [{**rec, "user": {"username": "jane"}, "stage": "RequestReceived", "auditID": "staged"},
              {**rec, "user": {"username": "jane"}, "auditID": "staged"}]
    for name, user in (("a.json", "system:anonymous"), ("b.json", "jane")):
        (tmp_path / name).write_text(json.dumps({**rec, "user": {"username": user}}) + "\n")
    (tmp_path / "c.json").write_text("".join(json.dumps(r) + "\n" for r in stages))
    case = kf.Case.create(tmp_path / "case")
    case.ingest([tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"], progress=False)
    stored = case.query.con.sql(f"SELECT count(*) FROM {case.query.source('audit')}").fetchall()
    assert stored == [(4,)]
    audit = case.audit
    assert sorted(audit["user"]) == ["jane", "jane", "system:anonymous"]
    assert audit.loc[audit["audit_id"] == "staged", "stage"].tolist() == ["ResponseComplete"]
    from kubeforensics.schema import AUDIT

    raw = case.query.to_frame(f"SELECT * FROM {case.query.source('audit')}", [], AUDIT)
    assert sorted(dedup_audit(raw)["user"]) == sorted(dedupe_audit(raw)["user"]) == sorted(audit["user"])
    found = case.findings(refresh=True)
    assert (found["rule_id"] == "KF-AUD-101").sum() == 1  # the anonymous create is not merged away
