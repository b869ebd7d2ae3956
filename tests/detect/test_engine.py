"""Engine behaviour: aggregation, audit stage de-duplication, tuning, the findings contract, the CLI."""

from __future__ import annotations

import argparse
import io
import json

import pandas as pd
import pytest

from kubeforensics.detect import FINDING_COLUMNS, RULES, Severity, TuningConfig, make_frame, run_rules
from kubeforensics.detect.cli import configure, to_jsonl, to_table
from kubeforensics.detect.conditions import ConditionError, compile_condition
from kubeforensics.detect.engine import load_rule_file
from kubeforensics.errors import InputError

EXEC = {"verb": "create", "resource": "pods", "subresource": "exec", "namespace": "default", "name": "nginx-1",
        "user": "minikube-user", "exec_command": "bash", "code": 101, "source_ip": "192.168.99.1"}


def test_severity_order_and_parse():
    assert Severity.INFO < Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert Severity.parse("informational") is Severity.INFO and Severity.parse("HIGH") is Severity.HIGH
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        Severity.parse("urgent")


def test_contract_columns_and_empty_input():
    f = run_rules({})
    assert list(f.columns) == list(FINDING_COLUMNS) and f.empty
    assert str(f["first_seen"].dtype) == "datetime64[ns, UTC]"


def test_repeated_hits_aggregate_into_one_finding():
    rows = [dict(EXEC, time=f"2024-05-01T10:00:0{i}Z", event_id=f"e{i}") for i in range(3)]
    rows.append(dict(EXEC, name="other", time="2024-05-01T10:05:00Z", event_id="e9"))
    f = run_rules({"audit": make_frame("audit", rows)}, rules=["KF-AUD-005"])
    assert len(f) == 2
    one = f[f["pod"] == "nginx-1"].iloc[0]
    assert one["count"] == 3 and one["event_ids"] == ["e0", "e1", "e2"]
    assert one["first_seen"] == pd.Timestamp("2024-05-01T10:00:00Z") and one["last_seen"] == pd.Timestamp("2024-05-01T10:00:02Z")
    assert one["summary"].startswith("minikube-user exec'd `bash` in default/nginx-1 from 192.168.99.1 (3 events")
    assert one["techniques"] == ["T1609"] and one["tactic"] == "execution" and one["actor"] == "minikube-user"


def test_audit_stages_are_deduplicated():
    base = dict(EXEC, audit_id="a1")
    rows = [dict(base, stage="RequestReceived", code=None, time="2024-05-01T10:00:00Z", request_time="2024-05-01T10:00:00Z", event_id="s1"),
            dict(base, stage="ResponseStarted", time="2024-05-01T10:00:01Z", request_time="2024-05-01T10:00:00Z", event_id="s2")]
    f = run_rules({"audit": make_frame("audit", rows)}, rules=["KF-AUD-005"])
    assert f.iloc[0]["count"] == 1 and f.iloc[0]["event_ids"] == ["s2"]
    assert f.iloc[0]["first_seen"] == pd.Timestamp("2024-05-01T10:00:00Z")


def test_tuning_override_suppress_and_disable(tmp_path):
    cfg_file = tmp_path / "tuning.yaml"
    cfg_file.write_text("extend:\n  exec_allowed_targets: ['default/nginx-*']\nthresholds: {forbidden_burst: 3}\n")
    cfg = TuningConfig.load(cfg_file)
    assert "default/nginx-*" in cfg.list("exec_allowed_targets") and cfg.threshold("forbidden_burst", 10) == 3
    assert "system:node:*" in cfg.list("system_identities")  # defaults kept
    audit = make_frame("audit", [EXEC])
    assert run_rules({"audit": audit}, rules=["KF-AUD-005"], config=cfg).empty
    off = TuningConfig.defaults().merged({"disabled_rules": ["KF-AUD-005"]}, "t")
    assert run_rules({"audit": audit}, rules=["KF-AUD-005"], config=off).empty
    sup = TuningConfig.defaults().merged({"suppress": {"KF-AUD-005": [{"actor": "minikube-*"}]}}, "t")
    assert run_rules({"audit": audit}, rules=["KF-AUD-005"], config=sup).empty
    bad = tmp_path / "bad.yaml"
    bad.write_text("system_identities: nope\n")
    with pytest.raises(InputError, match="'system_identities' must be a list"):
        TuningConfig.load(bad)


def test_condition_language_rejects_bad_rules():
    with pytest.raises(ConditionError, match="no column 'nope'"):
        compile_condition({"field": "nope", "equals": 1}, "audit")
    with pytest.raises(ConditionError, match="unknown operator 'eval'"):
        compile_condition({"field": "verb", "eval": "__import__('os')"}, "audit")
    with pytest.raises(ConditionError, match="rule X-1: missing"):
        load_rule_file("x.yaml", "rules:\n  - {id: X-1, title: t}\n")
    with pytest.raises(ConditionError, match="not valid YAML"):
        load_rule_file("x.yaml", "rules: [\n")
    with pytest.raises(ConditionError, match="could not determine a constructor"):  # safe_load only
        load_rule_file("x.yaml", "!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConditionError, match="expected a mapping with a 'rules' list"):
        load_rule_file("x.yaml", "- 1\n")


def test_list_columns_and_derived_columns():
    f = run_rules({"processes": make_frame("processes", [
        {"event_type": "exec", "namespace": "default", "pod": "p", "binary": "/usr/bin/nsenter", "args": "-t 1 -m", "parent_binary": "/bin/bash", "node": "n1"}])},
        rules=["KF-PROC-007"])
    assert f.iloc[0]["summary"] == "`/usr/bin/nsenter -t 1 -m` switched namespaces from default/p on n1"


def test_jsonl_and_table_output():
    f = run_rules({"audit": make_frame("audit", [EXEC])}, rules=["KF-AUD-005"])
    buf = io.StringIO()
    to_jsonl(f, buf)
    rec = json.loads(buf.getvalue().splitlines()[0])
    assert list(rec) == ["rule_id", "title", "severity", "techniques", "first_seen", "last_seen", "namespace", "pod", "actor", "event_ids", "summary", "count"]
    assert rec["first_seen"] == "2024-01-01T00:00:00.000000Z" and rec["severity"] == "medium" and rec["count"] == 1
    tab = io.StringIO()
    to_table(f, tab)
    assert "KF-AUD-005" in tab.getvalue() and "0 critical, 0 high, 1 medium" in tab.getvalue()


def test_cli_options():
    p = argparse.ArgumentParser()
    configure(p)
    a = p.parse_args(["--case", "c", "--format", "jsonl", "--min-severity", "high", "--sigma", "s", "--config", "t.yaml"])
    assert (a.case, a.format, a.min_severity, a.sigma, a.config) == ("c", "jsonl", "high", "s", "t.yaml")
    assert p.parse_args(["--case", "c"]).format == "table"


def test_cli_run_on_a_case(tmp_path, conformance):
    from kubeforensics.case import Case
    from kubeforensics.detect.cli import run

    case_dir = tmp_path / "case"
    Case.create(case_dir).ingest([conformance / "audit" / "falco-trace-files" / "exec_pod.json"], progress=False)
    p = argparse.ArgumentParser()
    configure(p)
    out = io.StringIO()
    assert run(p.parse_args(["--case", str(case_dir), "--format", "jsonl", "--min-severity", "medium"]), out) == 0
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert any(r["rule_id"] == "KF-AUD-005" and r["pod"] == "nginx-deployment-7998647bdf-phvq7" for r in recs)


def test_cli_sigma_and_tuning_read_the_case_by_slices(tmp_path, conformance, monkeypatch):
    """``findings --sigma DIR --config FILE`` runs like the default: storage slices, never the whole case."""
    from pathlib import Path

    from kubeforensics.case import Case
    from kubeforensics.detect.cli import run

    root = Path(__file__).resolve().parents[2]
    case = Case.create(tmp_path / "case")
    case.ingest([root / "sample_data" / "container-escape",
                 conformance / "audit" / "falco-trace-files" / "exec_pod.json"], progress=False)
    cfg_file = tmp_path / "tuning.yaml"
    cfg_file.write_text("disabled_rules: [KF-AUD-005]\n")
    sigma = conformance / "sigma-kubernetes"
    whole = run_rules(case.frames(), sigma=sigma, config=TuningConfig.load(cfg_file))
    assert len(whole) and not (whole["rule_id"] == "KF-AUD-005").any()
    assert whole["rule_id"].str.startswith("SIGMA-").any()

    def whole_case(*a, **k):
        raise AssertionError("findings --sigma/--config loaded the whole case")

    monkeypatch.setattr(Case, "frames", whole_case)
    p = argparse.ArgumentParser()
    configure(p)
    out = io.StringIO()
    args = ["--case", str(case.path), "--format", "jsonl", "--min-severity", "info", "--sigma", str(sigma),
            "--config", str(cfg_file)]
    assert run(p.parse_args(args), out) == 0
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted((r["rule_id"], r["pod"] or "", r["count"]) for r in got) == sorted(
        (r.rule_id, r.pod or "", r.count) for r in whole.itertuples())


def test_rule_failure_is_reported_not_raised():
    class Broken:
        meta = RULES["KF-AUD-005"].meta

        def evaluate(self, tables, config):
            raise RuntimeError("boom")

        def examples(self):
            return {"positive": [], "negative": []}

    f = run_rules({"audit": make_frame("audit", [EXEC])}, rules=[Broken(), RULES["KF-AUD-006"]])
    assert f.attrs["errors"] == {"KF-AUD-005": "RuntimeError: boom"}
