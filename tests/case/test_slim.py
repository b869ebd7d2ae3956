"""The story read from trimmed baseline equals the story read from every row.

``Case.story`` builds its correlation context from :func:`kubeforensics.case.slim.slim_frames`
(the head and tail of each repeated shape, pods of interest whole).  These tests check on every
shipped scenario that the story is the very same as from the full tables, that trimming really
happened, and that it keeps process trees whole and pods of interest whole.
"""

from __future__ import annotations

import pandas as pd
import pytest

from kubeforensics.case.slim import KEEP, SHAPES, interest_of, slim_frames
from kubeforensics.correlate import Context, build_story
from tests.case.scenario_cases import SCENARIOS, scenario_cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return scenario_cases(tmp_path_factory)


@pytest.mark.parametrize("name", SCENARIOS)
def test_story_from_trimmed_tables_is_the_full_story(cases, name):
    case = cases[name]
    findings = case.findings()
    full = Context(case.frames())
    seeds = [None, "KF-COR-003", *findings["pod"].dropna().unique()[:2]]
    for seed in seeds:
        expected = build_story(full, findings, seed=seed).to_json()
        assert case.story(seed).to_json() == expected, f"{name}, seed {seed}"
    assert len(case.story()) > 0


def test_story_context_is_public_cached_and_what_the_story_is_built_on(cases):
    case = cases["container-escape"]
    ctx = case.story_context()  # findings default to the case's
    assert ctx is case.story_context(case.findings())  # cached per case state and pods of interest
    assert build_story(ctx, case.findings()).to_json() == case.story().to_json()
    trimmed = sum(len(ctx.t[t]) for t in ("audit", "processes", "flows"))
    assert 0 < trimmed < sum(case.counts()[t] for t in ("audit", "processes", "flows"))
    assert not ctx.links.empty


@pytest.mark.parametrize("name", ["container-escape", "stolen-credentials"])
def test_trimming_happens_and_keeps_head_and_tail(cases, name):
    case = cases[name]
    frames, counts = slim_frames(case.query, interest_of(case.findings()))
    for table in ("audit", "processes", "flows"):
        assert counts[table]["read"] < counts[table]["rows"], table  # the samples repeat their probes
        assert counts[table]["read"] == len(frames[table])
    # A shape's first and last KEEP events are read: compare with the full audit table.
    full = case.table("audit")
    key = [c for c in SHAPES["audit"] if c in full.columns]
    kept = set(frames["audit"]["event_id"])
    for _, g in full.fillna({c: "" for c in key if full[c].dtype == object}).groupby(key, dropna=False, sort=False):
        g = g.sort_values(["time", "event_id"])
        ends = set(g["event_id"].head(KEEP)) | set(g["event_id"].tail(KEEP))
        assert ends <= kept
    assert set(frames["objects"]["event_id"]) == set(case.table("objects")["event_id"])  # small tables whole


@pytest.mark.parametrize("keep", [1, KEEP])
def test_process_trees_stay_whole(cases, keep, monkeypatch):
    from kubeforensics.case import slim

    monkeypatch.setattr(slim, "KEEP", keep)
    case = cases["container-escape"]
    frames, _ = slim_frames(case.query, [])
    full = case.table("processes")
    slim = frames["processes"]
    known_full = set(full["exec_id"].dropna())
    kept = set(slim["exec_id"].dropna())
    parents = set(slim["parent_exec_id"].dropna())
    assert (parents & known_full) <= kept  # every parent the case knows is read with its child
    # a kept process keeps all its events (exec and exit)
    per_proc_full = full[full["exec_id"].isin(kept)].groupby("exec_id").size()
    per_proc_slim = slim[slim["exec_id"].notna()].groupby("exec_id").size()
    assert per_proc_slim.sort_index().equals(per_proc_full.sort_index())


def test_pods_of_interest_are_read_whole_near_their_findings(cases):
    case = cases["container-escape"]
    findings = case.findings()
    pods = interest_of(findings)
    assert pods
    frames, _ = slim_frames(case.query, pods)
    full = case.table("processes")
    for ns, pod, lo, hi in pods:
        near = full[(full["namespace"] == ns) & (full["pod"] == pod) & (full["time"] >= lo) & (full["time"] <= hi)]
        assert set(near["event_id"]) <= set(frames["processes"]["event_id"]), (ns, pod)
    assert pods[0][2] == pd.Timestamp(findings.dropna(subset=["pod"]).iloc[0]["first_seen"]) - pd.Timedelta(minutes=10)


def test_ancestors_of_kept_processes_are_read(tmp_path):
    """Thirty identical probe shells (one shape: trimmed), each with a child of its own (all kept):
    every child's shell is read back, so no tree loses its parent."""
    import pyarrow.parquet as pq

    from kubeforensics.case.query import CaseQuery
    from kubeforensics.detect.frames import make_table

    rows = []
    for i in range(30):
        common = {"node": "n1", "namespace": "shop", "pod": "web-1", "container_id": "c1"}
        rows.append({**common, "time": i * 10**10, "event_type": "exec", "binary": "/bin/sh", "args": "-c probe",
                     "exec_id": f"sh{i}", "parent_exec_id": "shim"})
        rows.append({**common, "time": i * 10**10 + 1, "event_type": "exec", "binary": "/bin/cat",
                     "args": f"/tmp/file-{i}", "exec_id": f"cat{i}", "parent_exec_id": f"sh{i}"})
    rows.append({"node": "n1", "time": 0, "event_type": "exec", "binary": "/usr/bin/containerd-shim-runc-v2",
                 "exec_id": "shim"})
    (tmp_path / "tables" / "processes").mkdir(parents=True)
    pq.write_table(make_table("processes", rows), tmp_path / "tables" / "processes" / "0.parquet")
    frames, counts = slim_frames(CaseQuery(tmp_path / "tables"), [])
    got = set(frames["processes"]["exec_id"])
    assert {f"cat{i}" for i in range(30)} <= got
    assert {f"sh{i}" for i in range(30)} <= got and "shim" in got
    assert counts["processes"] == {"rows": 61, "read": 61}


def test_whole_audit_merges_stages_like_the_case_queries(cases):
    """``whole_sql`` windows only the requests logged at several stages: the same rows as ``relation_sql``."""
    from kubeforensics.case.query import Filters
    from kubeforensics.schema import TABLES

    case = cases["container-escape"]
    q = case.query
    repeated = q.con.execute(f"SELECT count(*) FROM (SELECT audit_id FROM {q.source('audit')} "
                             "WHERE audit_id IS NOT NULL GROUP BY audit_id HAVING count(*) > 1)").fetchall()[0][0]
    assert repeated > 0  # the sample logs some requests at two stages
    p1: list = []
    p2: list = []
    a = q.to_frame(f"SELECT * FROM {q.whole_sql('audit', p1)} ORDER BY time, event_id", p1, TABLES["audit"])
    b = q.to_frame(f"SELECT * FROM ({q.relation_sql('audit', Filters(), p2)}) ORDER BY time, event_id", p2,
                   TABLES["audit"])
    pd.testing.assert_frame_equal(a[list(b.columns)], b)


@pytest.mark.parametrize("name", ["container-escape", "miner"])
def test_cached_findings_are_the_fresh_findings(cases, name):
    """``case.findings()`` gives the same frame computed and read back from the case's cache: list
    columns as lists, a finding without a pod as None (not NaN, which is truthy)."""
    case = cases[name]
    fresh = case.findings(refresh=True)
    cached = case.findings()
    assert (case.path / "derived" / "findings.parquet").is_file()
    pd.testing.assert_frame_equal(fresh, cached)
    assert fresh["pod"].isna().any() and all(v is None or isinstance(v, str) for v in cached["pod"])
    assert all(isinstance(v, list) for v in cached["event_ids"])
