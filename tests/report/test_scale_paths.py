"""A whole-case triage reads by push-down (story trimmed, indicators by event id, destinations by
pod) and answers exactly what it answers with every table loaded."""

from __future__ import annotations

import pandas as pd
import pytest

from kubeforensics.report import start
from kubeforensics.report.indicators import indicators
from kubeforensics.report.questions import triage as q


@pytest.mark.parametrize("name", ["container-escape", "ssrf-dns-exfil", "miner"])
def test_pushed_down_triage_answers_as_with_whole_tables(scenario_cases, name):
    case, _ = scenario_cases(name)
    case.findings()  # cached: both investigations read the same findings
    lean = start(case, playbook="triage")
    whole = start(case, playbook="triage")
    whole.tables  # noqa: B018 - load every table: the reference path
    assert lean._tables is None
    for question in (q.suspicious, q.story_so_far, q.where_next):
        a, b = question(lean), question(whole)
        assert a.facts == b.facts and a.text == b.text and a.evidence == b.evidence, question.__name__
        assert (a.table is None) == (b.table is None)
        if a.table is not None:
            pd.testing.assert_frame_equal(a.table.reset_index(drop=True), b.table.reset_index(drop=True))
    assert lean.story.to_json() == whole.story.to_json()
    assert lean._tables is None  # none of it loaded whole tables
    ids = [e for lst in lean.findings["event_ids"] for e in lst]
    got = indicators(lean.evidence_tables(ids), lean.findings)
    expected = indicators(whole.tables, whole.findings)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert lean._tables is None


def test_evidence_rows_by_id_are_the_table_rows(scenario_cases):
    case, _ = scenario_cases("container-escape")
    audit = case.table("audit")
    ids = list(audit["event_id"].iloc[::97])
    got = case.query.rows("audit", ids + ["no-such-id"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), audit[audit["event_id"].isin(ids)].reset_index(drop=True))
