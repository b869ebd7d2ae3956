"""``timeline(merge_sources=True)`` reads its links around the rows shown, not from the whole case.

Differential: on every shipped scenario and on a simulated case, whole and in windows and with entity
filters, the merged timeline equals the one folded with ``case.links()`` of the whole case; and the
links the rows shown can fold by are exactly the whole case's.  A case whose tables may not be loaded
whole (``Case.frames`` forbidden) still merges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeforensics import Case, open_case
from kubeforensics.schema import TABLES
from kubeforensics.timeline.merge import KINDS, merge_links
from kubeforensics.timeline.unified import merge_same_event
from tests.case.scenario_cases import SCENARIOS, scenario_cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return scenario_cases(tmp_path_factory)


def _views(case: Case) -> list[dict[str, Any]]:
    """The whole case, its middle third, a 10-minute slice, and the busiest pod's and namespace's rows."""
    lo, hi = case.extent()
    assert lo is not None and hi is not None
    span = hi - lo
    tl = case.timeline(sources=["tetragon"])
    views: list[dict[str, Any]] = [{}, {"since": lo + span / 3, "until": lo + 2 * span / 3},
                                   {"since": lo + span / 2, "until": lo + span / 2 + pd.Timedelta(minutes=10)}]
    pods = tl.dropna(subset=["pod"])
    if len(pods):
        top = pods.groupby(["namespace", "pod"]).size().idxmax()
        views += [{"namespace": top[0], "pod": top[1]}, {"namespace": top[0]}]
    return views


def _pairs(links: pd.DataFrame, shown: set[str]) -> set[tuple[str, str, str]]:
    keep = links["from_event_id"].isin(shown) & links["to_event_id"].isin(shown)
    return set(links.loc[keep, ["kind", "from_event_id", "to_event_id"]].itertuples(index=False, name=None))


def assert_same_merge(case: Case, **view: Any) -> int:
    fresh = open_case(case.path)  # no correlation context loaded: the storage path
    df = fresh.timeline(**view)
    whole = open_case(case.path).links(kinds=KINDS)
    near = merge_links(fresh, df)
    shown = set(df["event_id"])
    assert _pairs(near, shown) == _pairs(whole, shown), view
    merged = fresh.timeline(merge_sources=True, **view)
    expected = merge_same_event(df.copy(), whole)
    pd.testing.assert_frame_equal(merged.reset_index(drop=True), expected.reset_index(drop=True))
    return len(df) - len(merged)


@pytest.mark.parametrize("name", SCENARIOS)
def test_merge_reads_around_the_rows_shown(cases: dict[str, Case], name: str) -> None:
    folded = [assert_same_merge(cases[name], **view) for view in _views(cases[name])]
    if name == "container-escape":
        assert folded[0] > 0  # the scenario has connect -> flow and alert -> process pairs to fold


def test_simulated_case_and_no_whole_case_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeforensics.simulate import simulate

    case = Case.create(tmp_path / "case")
    case.ingest([simulate("container-escape", tmp_path / "data", scale=60_000)], progress=False)
    lo, hi = case.extent()
    assert lo is not None and hi is not None
    views = [{}, {"since": hi - (hi - lo) / 4, "until": hi}]
    assert sum(assert_same_merge(case, **v) for v in views) > 0

    def whole_case(*a: Any, **k: Any) -> Any:
        raise AssertionError("merge_sources loaded every table of the case")

    monkeypatch.setattr(Case, "frames", whole_case)
    fresh = open_case(case.path)
    merged = fresh.timeline(merge_sources=True, since=views[1]["since"], until=hi)
    assert merged["summary"].str.contains("also seen by", regex=False).any()


def _add_rows(case: Case, table: str, template: str, rows: list[dict[str, Any]]) -> None:
    """Copies of the row ``template`` of ``table`` with the given changes, as one more Parquet file."""
    src = case.query.source(table)
    base = case.query.con.sql(f"SELECT * FROM {src} WHERE event_id = ?", params=[template]).to_arrow_table()
    assert base.num_rows == 1
    df = pd.concat([base.to_pandas().assign(**row) for row in rows], ignore_index=True)
    spec = TABLES[table].arrow_schema
    pq.write_table(pa.Table.from_pandas(df[spec.names], schema=spec, preserve_index=False),
                   case.path / "tables" / table / f"zz-synthetic-{template.replace(':', '-')}.parquet")


def test_links_from_beyond_the_rows_shown(tmp_path: Path) -> None:
    """What the window must reach: a flow 4 s after its connect; a connect outside the window that claims
    a flow shown first; an alert tied by pid to a process that started a day before the window."""
    case = Case.create(tmp_path / "case")
    case.ingest([Path(__file__).resolve().parents[2] / "sample_data" / "container-escape"], progress=False)
    whole = case.links(kinds=KINDS)
    cf = whole[whole["kind"] == "connect_flow"].iloc[0]
    ap = whole[whole["kind"] == "alert_process"].iloc[0]
    t = case.extent()[1] + pd.Timedelta(minutes=5)  # after every real event
    s = pd.Timedelta(seconds=1)
    box = "abcdef012345" + "0" * 52
    tup = {"saddr": "10.99.0.1", "daddr": "10.99.0.2", "dport": 8443}
    conn = [{"event_id": "synth-p:1", "time": t + 150 * s, "exec_id": "synth-a", "sport": 40001, **tup},
            {"event_id": "synth-p:2", "time": t + 100 * s, "exec_id": "synth-b", "sport": 40002, **tup},
            {"event_id": "synth-p:3", "time": t + 92 * s, "exec_id": "synth-c", "sport": 40002, **tup},
            # a connect outside the window whose own nearest flow is outside too: the flow shown is not its
            {"event_id": "synth-p:6", "time": t + 101 * s, "exec_id": "synth-d", "sport": 40003, **tup},
            {"event_id": "synth-p:7", "time": t + 93 * s, "exec_id": "synth-e", "sport": 40003, **tup}]
    execs = [{"event_id": "synth-p:4", "time": t - pd.Timedelta(days=1), "start_time": t - pd.Timedelta(days=1),
              "exec_id": "synth-old", "pid": 4242, "binary": "/bin/sh", "container_id": box},
             {"event_id": "synth-p:5", "time": t + 170 * s, "start_time": t + 170 * s,
              "exec_id": "synth-new", "pid": 5555, "binary": "/bin/sh", "container_id": box}]
    flow = {"src_ip": "10.99.0.1", "dst_ip": "10.99.0.2", "dst_port": 8443}
    flows = [{"event_id": "synth-f:1", "time": t + 154 * s, "src_port": 40001, **flow},
             {"event_id": "synth-f:2", "time": t + 96.5 * s, "src_port": 40002, **flow},
             {"event_id": "synth-f:3", "time": t + 97.5 * s, "src_port": 40003, **flow},
             {"event_id": "synth-f:4", "time": t + 89 * s, "src_port": 40003, **flow}]
    _add_rows(case, "processes", cf["from_event_id"], conn)
    _add_rows(case, "processes", ap["to_event_id"], execs)
    _add_rows(case, "flows", cf["to_event_id"], flows)
    _add_rows(case, "alerts", ap["from_event_id"],
              [{"event_id": "synth-a:1", "time": t + 172 * s, "container_id": box[:12], "proc_pid": 4242,
                "proc_name": "sh"}])
    truth = set(open_case(case.path).links(kinds=KINDS)[["from_event_id", "to_event_id"]].itertuples(
        index=False, name=None))
    assert {("synth-p:1", "synth-f:1"), ("synth-p:3", "synth-f:2"), ("synth-a:1", "synth-p:4"),
            ("synth-p:6", "synth-f:3"), ("synth-p:7", "synth-f:4")} <= truth
    view = {"since": t + 96 * s, "until": t + 200 * s}
    assert assert_same_merge(case, **view) == 2  # the far flow and synth-f:3 fold; the others' partners are hidden
    merged = open_case(case.path).timeline(merge_sources=True, **view).set_index("event_id")
    assert {"synth-f:2", "synth-a:1", "synth-p:2"} <= set(merged.index)
    assert not {"synth-f:1", "synth-f:3"} & set(merged.index)
