"""Every attack step of every simulated scenario is found; the benign scenario stays quiet."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kubeforensics.detect import run_rules

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = ["container-escape", "miner", "stolen-credentials", "rbac-persistence", "ssrf-dns-exfil"]
# Native ids the ground truth uses as evidence, per table.
NATIVE = {"audit": "audit_id", "flows": "uuid", "processes": "exec_id", "k8s_events": "event_uid", "objects": "uid"}
WINDOW = pd.Timedelta("15min")


def scenario_dir(name: str, tmp_root: Path) -> Path:
    shipped = ROOT / "sample_data" / name
    if (shipped / "GROUND_TRUTH.json").is_file():
        return shipped
    from kubeforensics.simulate import simulate

    return simulate(name, tmp_root / name, seed=7)


def frames_of(folder: Path) -> dict[str, pd.DataFrame]:
    from kubeforensics.sources import read_frames

    return read_frames(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenarios")
    out = {}
    for name in [*ATTACKS, "benign"]:
        d = scenario_dir(name, tmp)
        frames = frames_of(d)
        out[name] = (frames, run_rules(frames), json.loads((d / "GROUND_TRUTH.json").read_text()))
    return out


def _evidence_event_ids(frames: dict[str, pd.DataFrame], step: dict) -> set[str]:
    ids: set[str] = set()
    for src, native in step.get("evidence", {}).items():
        table = {"audit": "audit", "hubble": "flows", "tetragon": "processes", "k8s-events": "k8s_events"}.get(src)
        if table in frames and table in NATIVE:
            df = frames[table]
            ids |= set(df.loc[df[NATIVE[table]].isin(native), "event_id"])
    return ids


def covering(frames, findings, step) -> pd.DataFrame:
    """Medium+ findings with the step's technique that hold its evidence, or overlap it in time and entity."""
    tech = step["technique"]
    cand = findings[(findings["severity"] >= "medium") & findings["techniques"].map(lambda ts: tech in ts)]
    evidence = _evidence_event_ids(frames, step)
    by_evidence = cand["event_ids"].map(lambda ids: bool(evidence & set(ids)))
    t = pd.Timestamp(step["time"])
    near = (cand["first_seen"] <= t + WINDOW) & (cand["last_seen"] >= t - WINDOW)
    values = {str(v) for v in step.get("entities", {}).values() if v}
    text = cand["summary"] + " " + cand["namespace"].fillna("") + " " + cand["pod"].fillna("") + " " + cand["actor"].fillna("")
    by_entity = text.map(lambda s: any(v in s for v in values))
    return cand[by_evidence | (near & by_entity)]


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_step_is_covered(runs, name):
    frames, findings, truth = runs[name]
    assert truth["steps"], "the ground truth has steps"
    missed = [f"{s['step']} {s['technique']} {s['summary']}" for s in truth["steps"] if covering(frames, findings, s).empty]
    assert missed == []


@pytest.mark.parametrize("name", ATTACKS)
def test_findings_point_at_real_rows(runs, name):
    frames, findings, _ = runs[name]
    assert findings.attrs["errors"] == {}
    known = set().union(*(set(df["event_id"]) for df in frames.values() if "event_id" in df))
    assert set(findings["event_ids"].explode()) <= known
    assert (findings["count"] == findings["event_ids"].map(len)).all()
    assert (findings["first_seen"] <= findings["last_seen"]).all()


def test_benign_is_quiet(runs):
    _, findings, truth = runs["benign"]
    assert not [s for s in truth.get("steps", [])]
    loud = findings[findings["severity"] >= "high"]
    # The two that remain are the `kubectl debug node/...` look-alike: an SRE attaches to a
    # node-debugger pod and runs `chroot /host`.  That *is* an exec followed by entering the
    # host (KF-COR-003) and a chroot into a pod with the host's / mounted (KF-COR-005); the
    # pod-spec rules are tuned quiet for node-debugger pods, but these correlations keep firing
    # on purpose, because a pod name proves nothing: the analyst confirms with the SRE.
    assert len(loud) <= 2, loud[["rule_id", "summary"]].to_string()
    assert set(loud["rule_id"]) <= {"KF-COR-003", "KF-COR-005"}
    assert loud["pod"].fillna("").str.startswith("node-debugger-").all()
