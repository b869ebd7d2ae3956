"""``simulate --scale N --span D``: the routine background covers D, the attack keeps its records and times."""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubeforensics.simulate import SpanError, cli, simulate
from kubeforensics.simulate.clock import NS, parse_duration

SCENARIO, SEED, N, SPAN = "container-escape", 7, 60_000, "2d"
BIG = {"audit": ("audit/audit.log.1.gz", "audit/audit.log"), "tetragon": ("tetragon/tetragon.log",),
       "hubble": ("hubble/flows.json",)}
TIME_KEY = {"audit": "stageTimestamp", "tetragon": "time", "hubble": "time"}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(argv)


def raw_lines(folder: Path, source: str) -> Iterator[bytes]:
    for rel in BIG[source]:
        p = folder / rel
        with (gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")) as f:
            yield from f


def times(folder: Path, source: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(json.loads(line)[TIME_KEY[source]]) for line in raw_lines(folder, source)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same seed and scale written without and with a span."""
    root = tmp_path_factory.mktemp("span")
    plain = simulate(SCENARIO, root / "plain", seed=SEED, scale=N)
    args = parse(SCENARIO, "--out", str(root / "spanned"), "--seed", str(SEED), "--scale", str(N), "--span", SPAN)
    assert cli.run(args) == 0
    return plain, root / "spanned"


def test_parse_duration_is_strict() -> None:
    assert parse_duration("7d") == 7 * 86400 * NS
    assert parse_duration("36h") == 36 * 3600 * NS
    assert parse_duration("90m") == 90 * 60 * NS
    assert parse_duration("2w") == 14 * 86400 * NS
    assert parse_duration("600s") == 600 * NS
    for bad in ("", "7", "d", "7days", "1.5d", "-1d", "0d", "7 d", " 7d", "1d12h", "7D", "1e3s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_span_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(SCENARIO, "--out", str(tmp_path), "--scale", "1000", "--span", "1week")
    assert exc.value.code == 2
    assert "'1week' is not a duration" in capsys.readouterr().err
    # a span without --scale is refused: the default dataset is the scenario's window only
    assert cli.run(parse(SCENARIO, "--out", str(tmp_path / "a"), "--span", "7d")) == 2
    assert "--span needs --scale" in capsys.readouterr().err
    # shorter than the scenario's window (62-75 min): refused before anything is written
    assert cli.run(parse(SCENARIO, "--out", str(tmp_path / "b"), "--scale", "1000", "--span", "30m")) == 2
    assert "shorter than the scenario's window" in capsys.readouterr().err
    assert cli.run(parse(SCENARIO, "--out", str(tmp_path / "c"), "--scale", "1000", "--span", "400d")) == 2
    assert "too long" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SpanError, match="needs a scale"):
        simulate(SCENARIO, tmp_path / "d", span="7d")
    with pytest.raises(SpanError, match="not a duration"):
        simulate(SCENARIO, tmp_path / "d", scale=1000, span="7")


def test_span_is_honoured_in_time_order_with_about_n_records(pair: tuple[Path, Path]) -> None:
    plain, spanned = pair
    span = pd.Timedelta(parse_duration(SPAN), unit="ns")
    total = 0
    for source in BIG:
        ts, ps = times(spanned, source), times(plain, source)
        assert ts == sorted(ts), f"{source} is not in time order"
        total += len(ts)
        # the span ends with the scenario's window (as without a span) and reaches back the whole span
        assert abs(ts[-1] - ps[-1]) < pd.Timedelta("2min"), source
        assert abs((ts[-1] - ts[0]) - span) < pd.Timedelta("5min"), f"{source}: extent {ts[-1] - ts[0]}"
        assert ps[-1] - ps[0] < pd.Timedelta("80min")
        # the background is spread evenly: each of the first two half-days holds about a quarter of
        # what lies before the window, and an hour of it about 1/48
        window_start = ps[0]
        before = [t for t in ts if t < window_start]
        assert len(before) > 0.8 * len(ts) - len(ps), source
        for k in range(2):
            lo = ts[0] + k * pd.Timedelta("12h")
            share = sum(lo <= t < lo + pd.Timedelta("12h") for t in before) / len(before)
            assert 0.23 < share < 0.27, f"{source}: half-day {k} holds {share:.2%}"
        hour = sum(window_start - pd.Timedelta("1h") <= t < window_start for t in before)
        assert 0.7 < hour * 47 / len(before) < 1.3, f"{source}: {hour} records in the hour before the window"
    for rel in ("falco/falco.json",):
        total += (spanned / rel).read_bytes().count(b"\n")
    for rel in ("k8s/events.json", "k8s/objects.json"):
        total += len(json.loads((spanned / rel).read_text())["items"])
    assert 0.97 * N < total <= N


def test_the_attack_and_the_scenario_records_are_unchanged(pair: tuple[Path, Path]) -> None:
    plain, spanned = pair
    for rel in ("GROUND_TRUTH.json", "falco/falco.json", "k8s/events.json", "k8s/objects.json"):
        assert (plain / rel).read_bytes() == (spanned / rel).read_bytes(), rel
    truth = json.loads((spanned / "GROUND_TRUTH.json").read_text())
    assert truth["steps"] and truth["benign_lookalikes"]
    for entry in truth["steps"] + truth["benign_lookalikes"]:
        for source in BIG:
            ids = [i.encode() for i in entry["evidence"].get(source, [])]
            if not ids:
                continue

            def evidence(folder: Path, ids: list[bytes] = ids, source: str = source) -> list[bytes]:
                return sorted(line for line in raw_lines(folder, source) if any(i in line for i in ids))

            got = evidence(spanned)
            assert got, f"{entry['summary']}: no {source} evidence"
            assert got == evidence(plain), f"{entry['summary']}: {source} evidence differs with a span"


def _body(rec: dict[str, Any]) -> dict[str, Any]:
    return next(v for k, v in rec.items() if k.startswith("process_"))


def test_before_the_window_only_what_existed_makes_records(pair: tuple[Path, Path]) -> None:
    plain, spanned = pair
    window_start = times(plain, "tetragon")[0]
    execs: dict[str, pd.Timestamp] = {}
    n_pod = n_host = 0
    for line in raw_lines(spanned, "tetragon"):
        rec = json.loads(line)
        t = pd.Timestamp(rec["time"])
        if t >= window_start:
            break
        body = _body(rec)
        proc = body["process"]
        assert pd.Timestamp(proc["start_time"]) <= t
        assert pd.Timestamp(body["parent"]["start_time"]) <= pd.Timestamp(proc["start_time"])
        if "pod" in proc:
            n_pod += 1
            assert pd.Timestamp(proc["pod"]["container"]["start_time"]) <= t, proc["pod"]["name"]
        else:
            n_host += 1
            assert proc["binary"] == "/usr/sbin/iptables" and body["parent"]["binary"] == "/usr/bin/kubelet"
        if "process_exec" in rec:
            execs[proc["exec_id"]] = t
        else:  # a probe ends within milliseconds of its start
            assert pd.Timedelta(0) < t - execs.pop(proc["exec_id"]) <= pd.Timedelta("40ms")
    assert n_pod and n_host
    created = {(o["metadata"].get("namespace"), o["metadata"]["name"]): pd.Timestamp(o["metadata"]["creationTimestamp"])
               for o in json.loads((spanned / "k8s/objects.json").read_text())["items"] if o["kind"] == "Pod"}
    seen = set()
    for line in raw_lines(spanned, "hubble"):
        rec = json.loads(line)
        t = pd.Timestamp(rec["time"])
        if t >= window_start:
            break
        for end in ("source", "destination"):
            ep = rec["flow"][end]
            key = (ep.get("namespace"), ep.get("pod_name"))
            if key in created:  # pods deleted during the window are not in the final object list
                assert created[key] <= t, f"{key} has flows before it was created"
                seen.add(key)
    assert len(seen) > 1


def test_detections_still_find_the_attack_in_a_spanned_case(pair: tuple[Path, Path], tmp_path: Path) -> None:
    import kubeforensics as kf

    _, spanned = pair
    case = kf.Case.create(tmp_path / "case")
    totals = case.ingest([spanned], progress=False).totals
    assert totals["quarantined"] == 0 and totals["records"] == totals["ingested"]
    lo, hi = case.extent()
    assert lo is not None and hi is not None and hi - lo > pd.Timedelta("47h")
    findings = case.findings()
    truth = json.loads((spanned / "GROUND_TRUTH.json").read_text())
    serious = findings[findings["severity"] >= "medium"]
    found = {t for ts in serious["techniques"] for t in ts}
    missed = [f"{s['step']} {s['technique']}" for s in truth["steps"] if s["technique"] not in found]
    assert missed == []
    assert {"KF-PROC-007", "KF-COR-003", "KF-AUD-001"} <= set(findings["rule_id"])  # nsenter, escape, privileged pod
    # the routine background before the window raises nothing
    first_step = pd.Timestamp(truth["steps"][0]["time"])
    assert findings["first_seen"].min() > first_step - pd.Timedelta("2h")


def test_a_spanned_case_is_reproducible_in_one_process(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from kubeforensics.simulate import build
    from kubeforensics.simulate.scale import write_scaled

    _, spanned = pair
    write_scaled(build(SCENARIO, SEED), tmp_path, N, processes=1, span=parse_duration(SPAN))
    for p in sorted(spanned.rglob("*")):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / p.relative_to(spanned)).read_bytes(), p.name
