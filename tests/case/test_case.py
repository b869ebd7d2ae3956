"""The case store: ingest with full accounting, push-down queries, bookmarks, integrity."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import kubeforensics as kf
from kubeforensics.errors import CaseError


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubeforensics", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def conformance_case(tmp_path_factory: pytest.TempPathFactory) -> kf.Case:
    from tests.conftest import CONFORMANCE as conformance

    if not conformance.is_dir():
        pytest.skip(f"conformance corpus not found at {conformance}")
    case = kf.Case.create(tmp_path_factory.mktemp("conformance") / "case")
    case.ingest([conformance / d for d in ("audit", "hubble", "tetragon", "falco", "k8s-events", "pods")])
    return case


def test_conformance_corpus_full_accounting(conformance_case: kf.Case) -> None:
    m = conformance_case.manifest["evidence"]
    assert len(m) >= 60
    for e in m:
        assert e["records"] == e["ingested"] + e["quarantined"], e
        if e["stored_as"].endswith("fal_01_003.json"):
            # {"kind": 0}: no reader recognises it; its record is quarantined, not guessed
            assert e["format"] is None and "unknown format" in e["error"]
            assert e["records"] == e["quarantined"] == 1
        else:
            assert e["format"] is not None, e
            assert e["quarantined"] == 0, (e["stored_as"], conformance_case.quarantine())
    q = conformance_case.quarantine()
    assert set(q["evidence"].map(lambda p: Path(p).name)) == {"fal_01_003.json"}
    assert q["reason"].str.len().min() > 5
    counts = conformance_case.counts()
    assert counts["flows"] == 698
    assert counts["processes"] == 3
    assert counts["audit"] > 40 and counts["alerts"] >= 1 and counts["k8s_events"] > 0 and counts["objects"] > 0


def test_tables_have_canonical_dtypes_and_stage_dedup(conformance_case: kf.Case) -> None:
    audit = conformance_case.audit
    assert str(audit["time"].dtype) == "datetime64[ns, UTC]"
    # stages of one request merged: one row per audit id, user, verb and URI
    assert not audit.dropna(subset=["audit_id"]).duplicated(["audit_id", "user", "verb", "request_uri"]).any()
    # two of the corpus's trace files reuse one audit id for requests by two users: both stay
    shared = audit[audit["audit_id"] == "841d3e6d-90d2-43df-8da4-684738bee3d5"]
    assert sorted(shared["user"]) == ["some-user", "system:anonymous"]
    assert audit["event_id"].is_unique
    flows = conformance_case.flows
    assert str(flows["time"].dtype) == "datetime64[ns, UTC]"
    assert str(flows["dst_port"].dtype) == "Int32"


def test_push_down_filters(conformance_case: kf.Case) -> None:
    flows = conformance_case.flows
    ns = flows["src_namespace"].dropna().iloc[0]
    sub = conformance_case.table("flows", namespace=ns)
    assert 0 < len(sub) < len(flows)
    assert ((sub["src_namespace"] == ns) | (sub["dst_namespace"] == ns)).all()
    t0, t1 = flows["time"].min(), flows["time"].max()
    mid = t0 + (t1 - t0) / 2
    early = conformance_case.table("flows", until=mid)
    late = conformance_case.table("flows", since=mid)
    assert len(early) + len(late) == len(flows)
    assert (early["time"] < mid).all() and (late["time"] >= mid).all()


def test_timeline_exec_summary_and_filters(conformance_case: kf.Case) -> None:
    tl = conformance_case.timeline()
    assert list(tl.columns) == [c.name for c in kf.schema.TIMELINE.columns]
    assert tl["time"].is_monotonic_increasing
    assert set(tl["source"]) >= {"audit", "tetragon", "hubble", "falco", "k8s-events"}
    execs = tl[(tl["source"] == "audit") & tl["action"].str.endswith("pods/exec")]
    row = execs[execs["pod"] == "nginx-deployment-7998647bdf-phvq7"].iloc[0]
    assert row["summary"].startswith("minikube-user exec'd `bash` in default/nginx-deployment-7998647bdf-phvq7")
    assert "192.168.99.1" in row["summary"]
    only = conformance_case.timeline(pod="tiefighter")
    assert len(only) and set(only["pod"]) == {"tiefighter"}
    assert tl["event_id"].is_unique


def test_event_id_leads_back_to_raw_record(conformance_case: kf.Case) -> None:
    row = conformance_case.table("processes").iloc[0]
    raw = conformance_case.raw(row["event_id"])
    assert raw["process_exec"]["process"]["exec_id"] == row["exec_id"]


def test_reingest_same_file_is_skipped(conformance_case: kf.Case, conformance: Path) -> None:
    before = conformance_case.counts()
    rep = conformance_case.ingest(conformance / "tetragon")
    assert rep.totals["ingested"] == 0
    assert rep.files[0]["skipped"]
    assert conformance_case.counts() == before


def test_bookmarks_persist_and_log_is_append_only(tmp_path: Path, conformance: Path) -> None:
    case = kf.Case.create(tmp_path / "c")
    case.ingest(conformance / "tetragon")
    eid = case.processes["event_id"].iloc[0]
    case.bookmark(eid, "first exec in tiefighter", tags=["recon"])
    case.note("looked at the tiefighter pod")
    reopened = kf.open_case(tmp_path / "c")
    marks = reopened.bookmarks()
    assert marks["target"].tolist() == [eid]
    assert marks["tags"].iloc[0] == ("recon",)
    lines = (tmp_path / "c" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == list(range(1, len(lines) + 1))


def test_verify_detects_altered_missing_extra_and_manifest(tmp_path: Path, conformance: Path) -> None:
    case = kf.Case.create(tmp_path / "c")
    case.ingest(conformance / "falco")
    case.ingest(conformance / "tetragon")
    assert case.verify().ok
    assert run_cli("verify", "--case", str(case.path)).returncode == 0

    stored = [case.path / e["stored_as"] for e in case.manifest["evidence"]]
    victim = stored[0]
    os.chmod(victim, stat.S_IWUSR | stat.S_IRUSR)
    data = bytearray(victim.read_bytes())
    data[10] ^= 0x01
    victim.write_bytes(bytes(data))
    r = run_cli("verify", "--case", str(case.path))
    assert r.returncode != 0
    assert f"ALTERED  {victim.relative_to(case.path).as_posix()}" in r.stdout

    stored[1].unlink()
    (case.path / "evidence" / "planted.json").write_text("{}")
    rep = case.verify()
    assert rep.missing == [stored[1].relative_to(case.path).as_posix()]
    assert rep.extra == ["evidence/planted.json"]

    manifest = json.loads((case.path / "manifest.json").read_text())
    manifest["evidence"][0]["sha256"] = "0" * 64
    (case.path / "manifest.json").write_text(json.dumps(manifest))
    assert "manifest.json was changed" in (case.verify().manifest_problem or "")


def test_cli_ingest_json_contract_and_exit_codes(tmp_path: Path, conformance: Path) -> None:
    r = run_cli("ingest", str(conformance / "hubble"), "--case", str(tmp_path / "c"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"files", "totals"}
    assert set(out["totals"]) == {"records", "ingested", "quarantined"}
    assert out["totals"]["ingested"] == 698
    for f in out["files"]:
        assert {"path", "format", "records", "ingested", "quarantined"} <= set(f)
        assert f["format"] == "hubble"

    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    unknown = tmp_path / "notes.json"
    unknown.write_text('{"hello": "world"}\n')
    r = run_cli("ingest", str(empty), str(unknown), "--case", str(tmp_path / "c2"), "--json")
    assert r.returncode != 0
    assert "no record was ingested" in r.stderr
    files = {Path(f["path"]).name: f for f in json.loads(r.stdout)["files"]}
    assert "unknown format" in files["notes.json"]["error"]
    assert "Traceback" not in r.stderr

    r = run_cli("ingest", str(tmp_path / "does-not-exist"), "--case", str(tmp_path / "c3"))
    assert r.returncode != 0 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_cli_timeline_formats(tmp_path: Path, conformance: Path) -> None:
    case_dir = tmp_path / "c"
    assert run_cli("ingest", str(conformance / "audit"), "--case", str(case_dir)).returncode == 0
    r = run_cli("timeline", "--case", str(case_dir), "--format", "jsonl", "--namespace", "default")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert rows and all(x["namespace"] == "default" for x in rows)
    assert {"time", "source", "action", "actor", "summary", "event_id"} <= set(rows[0])
    t = pd.Timestamp(rows[0]["time"])
    assert t.tzinfo is not None
    r = run_cli("timeline", "--case", str(case_dir), "--format", "csv", "--since", "2018-10-26T13:38:00Z",
                "--until", "2018-10-26T13:39:00Z")
    assert r.returncode == 0 and r.stdout.startswith("time,source,action")
    r = run_cli("timeline", "--case", str(case_dir), "--format", "table", "--limit", "5")
    assert r.returncode == 0 and "5 events" in r.stdout


def test_case_html_escapes_attacker_text(tmp_path: Path) -> None:
    case = kf.Case.create(tmp_path / "<script>alert(1)</script>")
    html = case._repr_html_()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_open_non_case_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="not a kubeforensics case"):
        kf.open_case(tmp_path)


@pytest.fixture(scope="module")
def escape_case(tmp_path_factory: pytest.TempPathFactory) -> kf.Case:
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "container-escape"
    case = kf.Case.create(tmp_path_factory.mktemp("escape") / "case")
    case.ingest(sample)
    return case


def test_timeline_carries_findings_severity_and_techniques(escape_case: kf.Case) -> None:
    findings = escape_case.findings()
    assert len(findings) and (escape_case.path / "derived" / "findings.parquet").is_file()
    tl = escape_case.timeline()
    flagged = tl[tl["techniques"].notna()]
    ids = set(findings.explode("event_ids")["event_ids"])
    assert set(flagged["event_id"]) <= ids | set(tl.loc[tl["source"] == "falco", "event_id"])
    nsenter = tl[(tl["source"] == "tetragon") & tl["process"].eq("/usr/bin/nsenter")]
    assert len(nsenter) and any("T1611" in (t or []) for t in nsenter["techniques"])
    assert set(nsenter["severity"].dropna()) & {"high", "critical"}


def test_timeline_merges_sources_and_collapses_noise(escape_case: kf.Case) -> None:
    tl = escape_case.timeline()
    merged = escape_case.timeline(merge_sources=True)
    links = escape_case.links(kinds=["connect_flow"])
    folded = set(links["to_event_id"]) & set(tl["event_id"])
    assert folded and not folded & set(merged["event_id"])  # the Hubble rows a tcp_connect made are folded in
    assert len(tl) - len(merged) >= len(folded)  # plus Falco alerts folded into their process rows
    keep = links.loc[links["to_event_id"].isin(folded), "from_event_id"].iloc[0]
    assert "also seen by hubble" in merged.set_index("event_id").loc[keep, "summary"]

    quiet = escape_case.timeline(collapse=True, hide_baseline=True)
    assert len(quiet) < len(tl) / 2
    assert {"count", "first_seen", "last_seen"} <= set(quiet.columns)
    assert quiet["count"].max() >= 100  # probes and leases become one row each
    # the attack survives: the nsenter exec is still there
    assert quiet["process"].eq("/usr/bin/nsenter").any()


def test_story_cli_json_contract(escape_case: kf.Case) -> None:
    r = run_cli("story", "--case", str(escape_case.path), "--format", "json")
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)["steps"]
    assert steps
    for s in steps:
        assert {"time", "tactic", "techniques", "summary", "namespace", "pod", "actor", "process", "dst_ip",
                "event_ids"} <= set(s)
    assert any(s["process"] and "nsenter" in s["process"] for s in steps)
    assert pd.Series([s["time"] for s in steps]).is_monotonic_increasing


def test_pod_process_tree_is_pushed_down_and_exact(escape_case: kf.Case) -> None:
    """The pod's tree read from storage (pod filter + ancestors by exec_id) equals the whole-case tree."""
    fresh = kf.open_case(escape_case.path)
    pushed = fresh.process_tree(pod="diag-dclws")
    assert not hasattr(fresh, "_context_cache")  # the whole case was not loaded for it
    whole = kf.open_case(escape_case.path)
    whole._context()
    full = whole.process_tree(pod="diag-dclws")
    a, b = pushed.to_frame(), full.to_frame()
    assert sorted(zip(a["exec_id"], a["parent_exec_id"].fillna(""))) == sorted(zip(b["exec_id"], b["parent_exec_id"].fillna("")))
    chain = [n.split("/")[-1] for n in a.sort_values("start")["binary"]]
    text = pushed.render_text()
    assert text.index("runc") < text.index("/bin/bash") < text.index("nsenter") < text.index("/usr/bin/bash")
    assert "ENTERED-HOST-NS" in text and "nsenter" in chain


def test_findings_cli_from_the_cache_in_both_formats(escape_case: kf.Case) -> None:
    escape_case.findings()  # make sure the cache exists: the CLI then reads it
    assert (escape_case.path / "derived" / "findings.parquet").is_file()
    cached = escape_case.findings()
    assert all(isinstance(v, list) for v in cached["techniques"]) and all(isinstance(v, list) for v in cached["event_ids"])
    for fmt in ("table", "jsonl"):
        r = run_cli("findings", "--case", str(escape_case.path), "--format", fmt)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert {"rule_id", "title", "severity", "techniques", "first_seen", "last_seen", "namespace", "pod", "actor",
            "event_ids", "summary"} <= set(rows[0])
    assert any("T1611" in row["techniques"] for row in rows)


@pytest.mark.parametrize("scenario", ["container-escape", "miner", "stolen-credentials"])
def test_other_process_trees_read_only_the_processes(tmp_path: Path, scenario: str) -> None:
    """The whole-case tree and the trees by container id or exec id: built from the processes table and the
    resolver from storage (no other table loaded), equal to the trees of the whole correlation context."""
    from kubeforensics.correlate import Context, process_tree

    case = kf.Case.create(tmp_path / "case")
    case.ingest([Path(__file__).resolve().parents[2] / "sample_data" / scenario], progress=False)
    ctx = Context(case.frames())
    procs = ctx.t["processes"]
    execs = procs.loc[procs["pod"] != "", "exec_id"]
    cids = procs.loc[procs["container_id"] != "", "container_id"]
    selectors = [{}, {"container_id": cids.iloc[0]}, {"container_id": cids.iloc[-1][:12]},
                 {"exec_id": execs.iloc[len(execs) // 2]}, {"namespace": procs.loc[procs["pod"] != "", "namespace"].iloc[0]}]
    for sel in selectors:
        fresh = kf.open_case(case.path)
        got = fresh.process_tree(**sel)
        assert not hasattr(fresh, "_context_cache") and not hasattr(fresh, "_frames_cache"), sel
        want = process_tree(ctx.t["processes"], resolver=ctx.resolver, **sel)
        pd.testing.assert_frame_equal(got.to_frame(), want.to_frame(), obj=str(sel))
        assert got.render_text() == want.render_text(), sel
        assert len(got) > 0, sel
