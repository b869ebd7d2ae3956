"""The hostile sample case (tests/hardening/hostile_case.py) is complete and keeps its payloads verbatim.

The XSS browser tests of the report and notebook rely on it: every record must be
ingested, and the payloads must reach the tables unchanged (escaping happens where
text becomes HTML, never in the data), else those tests would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforensics.case import Case
from tests.hardening.hostile_case import DNS, IMG, POD, SCRIPT, URL, USER_AGENT, make_hostile_case


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return make_hostile_case(tmp_path_factory.mktemp("xss") / "case")


def test_every_record_is_ingested(hostile: Case) -> None:
    files = {Path(e["path"]).name: e for e in hostile.manifest["evidence"]}
    assert {n: (e["format"], e["quarantined"]) for n, e in files.items()} == {
        "audit.log": ("audit", 0), "tetragon.json": ("tetragon", 0), "hubble.json": ("hubble", 0),
        "falco.json": ("falco", 0), "k8s-events.json": ("k8s-events", 0), "k8s-objects.json": ("k8s-objects", 0)}
    assert hostile.counts() == {"audit": 2, "processes": 3, "flows": 2, "flow_aux": 0, "alerts": 1,
                                "k8s_events": 1, "objects": 1}


def test_payloads_reach_the_tables_verbatim(hostile: Case) -> None:
    assert hostile.processes["pod"].tolist() == [POD] * 3
    assert SCRIPT in hostile.processes["args"].iloc[0] and IMG in hostile.processes["args"].iloc[0]
    flows = hostile.flows.sort_values("time")
    assert flows["dns_query"].iloc[0] == DNS
    assert flows["http_url"].iloc[1] == URL
    assert hostile.audit["user_agent"].tolist() == [USER_AGENT] * 2
    assert hostile.alerts["pod"].tolist() == [POD]
    assert hostile.objects["name"].tolist() == [POD]
    timeline = hostile.timeline()
    assert len(timeline) >= 8 and timeline["summary"].str.contains(SCRIPT, regex=False).any()


def test_case_summary_html_escapes_the_path(tmp_path: Path) -> None:
    case = make_hostile_case(tmp_path / f"case-{IMG}")
    html = case._repr_html_()
    assert IMG not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
