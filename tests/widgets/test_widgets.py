"""Widget behaviour without a browser: filters drive every view, selection shows details,
bookmarks persist, attacker-controlled text is escaped in every HTML output."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from kubeforensics import open_case
from kubeforensics.widgets import (
    BookmarkPanel,
    EventTable,
    FilterState,
    FlowMapView,
    PivotView,
    ProcessTreeView,
    TimelineView,
    in_live_kernel,
    investigate,
)
from kubeforensics.widgets.static import bundle
from kubeforensics.widgets.table import event_details_html
from tests.widgets.conftest import T0, XSS_ARG, XSS_POD

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RAW_XSS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def binaries(tree: ProcessTreeView) -> list[str]:
    return tree.nodes["binary"].tolist()


def test_time_range_updates_table_tree_and_timeline(case):
    state = FilterState()
    table, tree, tl = EventTable(case, state, page_size=500), ProcessTreeView(case, state), TimelineView(case, state)
    assert table.total == 126 and tl.data.total == 126 and tl.data.mode == "events"
    assert "/usr/bin/python3" in binaries(tree) and "/tmp/agent" in binaries(tree)

    state.update(since=at(60), until=at(90))
    # exec audit (60), bash exec (61), falco (61.5), nsenter exec+setns (70, 70.5), host bash (71),
    # tee exec/file/exit (80, 80.1, 81), leases at 60/70/80, DNS at 60..85 (6): 18
    assert table.total == 18 == tl.data.total == len(tl.data.events)
    assert table.rows["time"].between(at(60), at(90), inclusive="left").all()
    assert set(table.rows["source"]) == {"audit", "tetragon", "falco", "hubble"}
    assert tl.data.events["time"].min() >= at(60) and tl.data.events["time"].max() < at(90)
    got = binaries(tree)
    assert {"/bin/bash", "/usr/bin/nsenter", "/usr/bin/tee"} <= set(got)
    assert "/usr/bin/python3" not in got and "/tmp/agent" not in got
    flags = tree.nodes.set_index("binary")
    assert bool(flags.loc["/usr/bin/nsenter", "entered_host_ns"]) is True
    assert bool(flags.loc["/usr/bin/tee", "host_namespace"]) is True


def test_selecting_an_entity_updates_every_view(case):
    state = FilterState()
    table, tree, flows = EventTable(case, state, page_size=500), ProcessTreeView(case, state), FlowMapView(case, state)
    tl = TimelineView(case, state, lane_by="pod")
    assert len(flows.edges) == 3
    pivot = PivotView(case, state, kind="pod", value="shop/web-1")
    assert dict(zip(pivot.counts["source"], pivot.counts["events"])) == {"hubble": 31, "tetragon": 1}
    pivot.apply()
    assert (state.namespace, state.pod) == ("shop", "web-1")
    assert table.total == 32 and set(table.rows["pod"]) == {"web-1"}
    assert tl.data.lanes == ["shop/web-1"]
    assert "/tmp/agent" not in binaries(tree)
    assert "/usr/bin/python3" in binaries(tree) and "/bin/sh" in binaries(tree)
    assert sorted(flows.edges["dst"]) == ["ip 198.51.100.9", "pod kube-system/coredns-1"]
    drop = flows.edges[flows.edges["verdict"] == "DROPPED"].iloc[0]
    assert bool(drop["external"]) and drop["ports"] == "22" and drop["count"] == 1


def test_timeline_aggregates_above_the_point_budget_and_zoom_requeries(case):
    state = FilterState()
    tl = TimelineView(case, state, budget=20, bins=50)
    assert tl.data.mode == "density" and int(tl.data.density["n"].sum()) == 126
    # only notable events are drawn as points in density mode
    assert len(tl.data.events) and set(tl.data.events["sev"]) <= {"medium", "high", "critical"}
    fw = tl.widget
    assert fw.data[0].type == "heatmap"
    tl._on_relayout(None, [str(at(119).tz_localize(None)), str(at(130).tz_localize(None))])  # what a zoom sends
    assert state.since == at(119) and state.until == at(130)
    assert tl.data.mode == "events"
    assert tl.data.total == 6  # agent exec, first connect (tetragon + hubble), lease at 120, DNS at 120 and 125
    assert fw.data[0].type == "scatter" and sum(len(t.x) for t in fw.data if t.type == "scatter") == 6
    assert len(fw.to_json() if hasattr(fw, "to_json") else json.dumps(fw.to_plotly_json(), default=str)) < 5_000_000


def test_clicking_an_event_shows_redacted_details(case):
    inv = investigate(case)
    agent = case.sql("SELECT event_id FROM {processes} WHERE \"binary\" = '/tmp/agent' AND event_type = 'exec'")
    eid = agent["event_id"].iloc[0]
    html = inv.show(eid)
    assert "/tmp/agent" in html and "raw record (redacted)" in html
    assert "s3cr3tvalue" not in html and "[REDACTED]" in html
    assert inv.bookmarks.target == eid and inv.bookmarks.kind == "event"
    step = inv.show("story:1")
    assert "story step 1" in step and inv.state.since is not None


def test_event_table_pages_sorts_and_searches_in_storage(case):
    t = EventTable(case, page_size=10)
    assert (t.total, t.pages, len(t.rows)) == (126, 13, 10)
    t.goto(12)
    assert len(t.rows) == 6
    t.sort("time", desc=True)
    assert t.page == 0 and t.rows["time"].iloc[0] == at(590) and t.rows["time"].is_monotonic_decreasing
    t.filter_text("nsenter")
    assert t.total == 3 and t.rows["summary"].str.contains("nsenter").all()
    with pytest.raises(ValueError, match="cannot sort by"):
        t.sort("summary; DROP TABLE x")


def test_process_selection_shows_args_credentials_connections_and_files(case):
    tree = ProcessTreeView(case, FilterState(pod="priv", namespace="default"))
    nodes = tree.nodes.set_index("binary")
    agent = nodes.loc["/tmp/agent"]
    assert bool(agent["new_binary"]) and bool(agent["network_active"]) and bool(agent["host_namespace"])
    html = tree.select(agent["exec_id"])
    assert "connections (10)" in html and "198.51.100.9" in html and "uid=0" in html and "cwd" in html
    assert "--token=[REDACTED]" in html
    tee = tree.select(nodes.loc["/usr/bin/tee", "exec_id"])
    assert "files (1)" in tee and "/etc/kubernetes/manifests/kube-proxy-x.yaml" in tee
    labels = {n["label"]: [f["text"] for f in n["flags"]] for n in tree.tree_nodes()}
    assert labels["/usr/bin/nsenter -t 1 -m -u -n -i -p bash"] == ["HOST-NS", "ENTERED-HOST"]


def test_bookmark_lands_in_the_case_log_and_survives_reopening(case):
    panel = BookmarkPanel(case)
    with pytest.raises(ValueError, match="nothing selected"):
        panel.add("no target")
    panel.set_target("story:3", "story-step")
    mark = panel.add("nsenter into the host", "escape, T1611")
    assert mark.target == "story:3" and mark.tags == ("escape", "T1611")
    again = open_case(case.path).bookmarks()
    assert again[["target_kind", "target", "note"]].values.tolist() == [["story-step", "story:3", "nsenter into the host"]]
    assert list(again["tags"].iloc[0]) == ["escape", "T1611"]
    entries = [json.loads(line) for line in (case.path / "log.jsonl").read_text().splitlines()]
    assert entries[-1]["kind"] == "bookmark" and entries[-1]["note"] == "nsenter into the host"


def test_attacker_text_is_escaped_in_every_html_output(case):
    inv = investigate(case)
    inv.bookmarks.add(f"note {XSS_ARG}", [XSS_POD], target=XSS_POD, kind="entity")
    xss_event = case.sql("SELECT event_id FROM {processes} WHERE pod = ?", [XSS_POD])["event_id"].iloc[0]
    pivot = PivotView(case, kind="pod", value=f"shop/{XSS_POD}")
    outputs = {
        "dashboard": bundle(inv.static(), "x")["text/html"],
        "details": event_details_html(case, xss_event),
        "pivot": pivot.summary_html(),
        "pivot-figure": pivot.figure().to_json(),
        "timeline-figure": TimelineView(case).figure().to_json(),
        "timeline-density": TimelineView(case, budget=5).figure().to_json(),
        "flows": bundle(FlowMapView(case).static(), "x")["text/html"],
        "table-cells-html": EventTable(case, FilterState(pod=XSS_POD)).static(),
        "tree": ProcessTreeView(case, FilterState(namespace="shop")).static(),
        "process-details": ProcessTreeView(case).select(
            case.sql("SELECT exec_id FROM {processes} WHERE pod = ?", [XSS_POD])["exec_id"].iloc[0]),
        "finding": inv.show(f"finding:{inv.findings[inv.findings['pod'] == XSS_POD]['rule_id'].iloc[0]}"),
    }
    for name, out in outputs.items():
        for raw in RAW_XSS:
            assert raw not in out, f"{name} contains unescaped {raw}"
    # and the text is there, escaped (not silently dropped)
    for name in ("dashboard", "details", "pivot", "table-cells-html", "tree", "process-details"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in outputs[name] or "&lt;img src=x" in outputs[name], name
    assert "&lt;img src=x onerror=alert(1)&gt;" in outputs["timeline-figure"] or \
        "\\u0026lt;img" in outputs["timeline-figure"] or "&lt;script&gt;" in outputs["timeline-figure"]


def test_static_fallback_outside_a_live_kernel(case, monkeypatch):
    assert in_live_kernel() is False
    monkeypatch.setenv("KUBEFORENSICS_WIDGETS", "live")
    assert in_live_kernel() is True
    monkeypatch.setenv("KUBEFORENSICS_WIDGETS", "static")
    tl = TimelineView(case)
    b = tl._repr_mimebundle_()
    assert set(b) == {"text/html", "text/plain"} and "plotly" in b["text/html"]
    t = EventTable(case)._repr_mimebundle_()
    assert "<table class='kf-table'>" in t["text/html"] and "126 events" in t["text/html"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setenv("KUBEFORENSICS_WIDGETS", "live")
        live = EventTable(case)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in live


def test_filter_state_rejects_unknown_values():
    s = FilterState()
    with pytest.raises(TypeError, match="unknown filter"):
        s.update(colour="red")
    with pytest.raises(ValueError, match="unknown severity"):
        s.update(min_severity="urgent")
    calls = []
    s.on_change(calls.append)
    assert s.update(pod="a", namespace="b") == {"pod", "namespace"} and calls == [{"pod", "namespace"}]
    assert s.update(pod="a") == set() and len(calls) == 1


def test_minimum_severity_filter_keeps_finding_events(case):
    inv = investigate(case)
    inv.state.update(min_severity="high")
    assert 0 < inv.table.total < 126
    assert set(inv.table.rows["sev"]) <= {"high", "critical"}
    assert "/tmp/agent" in " ".join(inv.table.rows["summary"])


def test_process_tree_asks_to_narrow_the_filters_on_huge_selections(case):
    state = FilterState()
    tree = ProcessTreeView(case, state, max_rows=10)
    assert tree.nodes.empty and tree.too_many == 21
    assert "narrow the filters" in tree.static()
    state.update(pod="priv", namespace="default", since=at(60), until=at(90))
    assert tree.too_many == 0 and "/usr/bin/nsenter" in binaries(tree)
