"""Rule-pack completeness: every rule loads, is registered, is documented, and its cases pass."""

from __future__ import annotations

import re

import pytest

from kubeforensics.detect import RULES, Severity, TuningConfig, load_rules, make_frame, run_rules
from kubeforensics.detect.engine import builtin_rule_files, load_rule_file
from kubeforensics.detect.pyrule import PyRule
from kubeforensics.schema import TABLES

TECHNIQUE = re.compile(r"^(T\d{4}(\.\d{3})?|MS-TA\d{4})$")
CFG = TuningConfig.defaults()


def frames_of(case: dict) -> dict:
    return {table: make_frame(table, rows) for table, rows in case.items()}


def test_pack_size_and_sources():
    assert len(RULES) >= 40
    sources = {s for r in RULES.values() for s in r.meta.sources}
    assert {"audit", "processes", "flows", "alerts", "k8s_events"} <= sources


def test_every_rule_file_loads_and_is_registered():
    files = builtin_rule_files()
    assert len(files) >= 5
    ids = [r.meta.id for name, text in files for r in load_rule_file(name, text)]
    assert len(ids) == len(set(ids))
    assert set(ids) <= set(RULES)
    assert load_rules().keys() == RULES.keys()


def test_every_python_rule_class_is_registered():
    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)

    registered = {type(r) for r in RULES.values()}
    missing = [c.__name__ for c in subclasses(PyRule) if c.__module__.startswith("kubeforensics.") and c not in registered]
    assert missing == []


@pytest.mark.parametrize("rid", sorted(RULES))
def test_rule_metadata(rid):
    m = RULES[rid].meta
    assert m.id == rid
    assert m.title and len(m.description) > 30
    assert isinstance(m.severity, Severity)
    assert m.techniques and all(TECHNIQUE.match(t) for t in m.techniques), m.techniques
    assert m.tactic and m.false_positives
    assert m.fields, "a rule declares the fields it reads"
    for f in m.fields:
        table, col = f.split(".", 1)
        assert col in TABLES[table].names, f


@pytest.mark.parametrize("rid", sorted(RULES))
def test_rule_cases(rid):
    rule = RULES[rid]
    ex = rule.examples()
    assert ex["positive"], f"{rid} has no positive case"
    assert ex["negative"], f"{rid} has no negative case"
    for i, case in enumerate(ex["positive"]):
        f = run_rules(frames_of(case), rules=[rule], config=CFG)
        assert len(f) >= 1, f"{rid}: positive case {i} did not fire"
        assert set(f["rule_id"]) == {rid}
        row = f.iloc[0]
        assert row["count"] >= 1 and row["event_ids"]
        assert "?" not in row["summary"].split()[0], row["summary"]
    for i, case in enumerate(ex["negative"]):
        f = run_rules(frames_of(case), rules=[rule], config=CFG)
        assert f.empty, f"{rid}: negative case {i} fired: {f['summary'].tolist()}"
        assert f.attrs["errors"] == {}
