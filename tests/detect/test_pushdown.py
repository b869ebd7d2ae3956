"""Detection pushed down to the case's storage gives exactly the in-memory findings.

Three angles: every shipped scenario as a real case; every rule's own positive and
negative examples written as a case; and a fuzz of the SQL translation of every YAML
condition against the pandas evaluation, with hostile text (Unicode digits and
spaces, a Kelvin sign, newlines, control characters) that Python ``re`` and RE2
read differently.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kubeforensics import Case
from kubeforensics.case.query import CaseQuery
from kubeforensics.detect import RULES, run_rules
from kubeforensics.detect.conditions import EAGER, derive
from kubeforensics.detect.declarative import YamlRule
from kubeforensics.detect.frames import make_frame, make_table
from kubeforensics.detect.pushdown import case_findings, condition_sql, plan
from kubeforensics.detect.pyrule import PyRule
from kubeforensics.detect.tuning import TuningConfig
from kubeforensics.schema import TABLES

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["container-escape", "miner", "stolen-credentials", "rbac-persistence", "ssrf-dns-exfil", "benign"]
CFG = TuningConfig.defaults()


def _comparable(df: pd.DataFrame) -> list[tuple]:
    return sorted(tuple(str(v) for v in row) for row in df.itertuples(index=False))


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_case_findings_equal_in_memory(name, tmp_path, caplog):
    case = Case.create(tmp_path / "case")
    case.ingest([ROOT / "sample_data" / name])
    expected = run_rules(case.frames())
    with caplog.at_level(logging.WARNING, logger="kubeforensics.detect.pushdown"):
        got = case.findings(refresh=True)
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # no rule fell back to whole tables
    assert len(expected) > 0 and got.attrs["errors"] == {} == expected.attrs["errors"]
    assert list(got.columns) == list(expected.columns)
    assert _comparable(got) == _comparable(expected)


def test_sigma_rules_share_one_narrow_read(conformance, tmp_path, caplog):
    """Sigma rules read the audit table once, only the columns they use, and find what they find on
    the whole tables: the shipped scenarios and the conformance audit records, with the Sigma corpus."""
    import shutil

    from kubeforensics.detect.sigma import load_sigma

    sigma = tmp_path / "sigma"
    shutil.copytree(conformance / "sigma-kubernetes", sigma)
    head = "logsource: {product: kubernetes, service: audit}\nlevel: high\nstatus: test\n"
    (sigma / "x_keyword.yml").write_text(  # a keyword search: the keyword columns
        f"title: secrets anywhere\nid: 11111111-1111-4111-8111-111111111111\n{head}"
        "detection:\n  keywords: ['secrets']\n  condition: keywords\n")
    (sigma / "x_request_object.yml").write_text(  # a field of the request object: its JSON column
        f"title: hostNetwork pod\nid: 22222222-2222-4222-8222-222222222222\n{head}"
        "detection:\n  sel:\n    verb: create\n    requestObject.spec.hostNetwork: true\n  condition: sel\n")
    case = Case.create(tmp_path / "case")
    case.ingest([ROOT / "sample_data" / n for n in SCENARIOS] + [conformance / "audit"], progress=False)
    rules = list(load_sigma(sigma).values())
    groups = [g for g in plan(rules, CFG) if g[0][0] in rules]
    assert len(groups) == 1 and len(groups[0][0]) == len(rules) > 10
    read = groups[0][1]["audit"].columns
    assert {"request_object", "pod_host_paths", "user_agent", "verb", "event_id"} <= set(read)
    assert set(read) < set(TABLES["audit"].names)
    expected = run_rules(case.frames(), sigma=sigma, config=CFG)
    with caplog.at_level(logging.WARNING, logger="kubeforensics.detect.pushdown"):
        got = case.findings(sigma=sigma, config=CFG)
    fell_back = [r.getMessage() for r in caplog.records if r.name == "kubeforensics.detect.pushdown"]
    assert not fell_back  # no rule fell back to whole tables
    assert expected["rule_id"].str.startswith("SIGMA-").sum() >= 5
    assert {"SIGMA-11111111-1111-4111-8111-111111111111", "SIGMA-22222222-2222-4222-8222-222222222222"} <= set(
        expected["rule_id"])
    assert got.attrs["errors"] == {} == expected.attrs["errors"]
    assert _comparable(got) == _comparable(expected)


def _as_case(tmp: Path, frames: dict[str, list[dict]]) -> CaseQuery:
    for table, rows in frames.items():
        d = tmp / "tables" / table
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(make_table(table, rows), d / "0.parquet")
    return CaseQuery(tmp / "tables")


@pytest.mark.parametrize("rid", sorted(RULES))
def test_rule_examples_pushed_down(rid, tmp_path, caplog):
    rule = RULES[rid]
    ex = rule.examples()
    for kind in ("positive", "negative"):
        for i, case in enumerate(ex[kind]):
            frames = {t: make_frame(t, rows) for t, rows in case.items()}
            expected = run_rules(frames, rules=[rule], config=CFG)
            q = _as_case(tmp_path / f"{kind}{i}", case)
            with caplog.at_level(logging.WARNING, logger="kubeforensics.detect.pushdown"):
                got = case_findings(q, rules=[rule], config=CFG)
            q.close()
            assert not caplog.records, f"{rid} {kind} {i}: {[r.getMessage() for r in caplog.records]}"
            assert _comparable(got) == _comparable(expected), f"{rid} {kind} case {i}"
            if kind == "positive":
                assert len(got) >= 1


def test_python_rules_declare_what_they_read():
    for rule in RULES.values():
        if isinstance(rule, PyRule):
            loads = rule.plan(CFG)
            assert loads, f"{rule.id} declares no loads: it would read whole tables"
            for table, load in loads.items():
                assert table in TABLES, (rule.id, table)
                assert load.distinct or load.columns, (rule.id, table)


def test_every_rule_reads_a_slice():
    """No built-in rule needs whole tables, and only the rules over small tables read every row."""
    groups = plan(list(RULES.values()), CFG)
    assert all(loads is not None for _, loads in groups)
    every_row = {(t, rs[0].meta.id) for rs, loads in groups for t, ld in (loads or {}).items() if ld.where is None}
    assert every_row == {("flows", "KF-COR-001")}  # distinct (namespace, pod, ip): aggregated in DuckDB
    for rs, loads in groups:
        for t, ld in (loads or {}).items():
            assert len(ld.columns) < len(TABLES[t].names) / 2, (t, [r.meta.id for r in rs])


# --------------------------------------------------------------------------- translation fuzz
_RARELY_HIT: set[str] = set()
HOSTILE = ["\u0663", "\u212a", "K", "\n", "\x0b", "\x1c", "\u00a0", "\u2028", "\u0130", "\u017f", "é", "\t", "\r", " ", ""]


def _literals(cond, out):
    if isinstance(cond, dict):
        for k, v in cond.items():
            if k in ("all", "any"):
                for c in v:
                    _literals(c, out)
            elif k == "not":
                _literals(v, out)
            elif k not in ("field", "isnull"):
                vals = v if isinstance(v, list) else [v]
                if k == "in_config":
                    vals = CFG.list(v)
                out.setdefault(cond["field"], []).extend(vals)
    return out


def _mutate(rnd: random.Random, v):
    if isinstance(v, str):
        s = v.replace("*", rnd.choice(["", "x", "\u0663"])).replace("\\", "")
        ops = rnd.randrange(6)
        if ops == 0:
            return s
        if ops == 1:
            return s + rnd.choice(HOSTILE)
        if ops == 2:
            return rnd.choice(HOSTILE) + s
        if ops == 3:
            i = rnd.randrange(len(s) + 1)
            return s[:i] + rnd.choice(HOSTILE) + s[i:]
        if ops == 4:
            return s.upper() if rnd.random() < 0.5 else s.lower()
        return "".join(rnd.choice("ab/.-_ 09:%$;|`(xmr\u0663\u212a") for _ in range(rnd.randrange(12)))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v + rnd.choice([-1, 0, 0, 1])
    return v


def _value(rnd: random.Random, kind: str, pool: list):
    if rnd.random() < 0.12:
        return None
    if kind in ("int64", "int32", "float64"):
        nums = [v for v in pool if isinstance(v, (int, float)) and not isinstance(v, bool)] or [0, 200, 403]
        return _mutate(rnd, rnd.choice(nums))
    if kind == "bool":
        return rnd.random() < 0.5
    strs = [v for v in pool if isinstance(v, str)] or ["x"]
    if kind == "list<str>":
        return [_mutate(rnd, rnd.choice(strs)) for _ in range(rnd.randrange(3))]
    return _mutate(rnd, rnd.choice(strs))


def _fuzz_rows(rule: YamlRule, n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    lits = _literals(rule.condition, {})
    source = {"binary_name": "binary", "parent_name": "parent_binary"}
    spec = TABLES[rule.table]
    examples = [dict(r) for case in rule.examples()["positive"] + rule.examples()["negative"]
                for r in case.get(rule.table, [])]
    for r in examples:
        for col, v in r.items():
            lits.setdefault(col, []).extend(v if isinstance(v, list) else [v])
    rows = []
    for _ in range(n):
        if examples and rnd.random() < 0.4:  # an example row with one or two cells mutated
            row = {k: v for k, v in rnd.choice(examples).items() if k in spec.names and k not in ("time", "event_id")}
            for col in rnd.sample(sorted(row), min(len(row), rnd.randrange(3))):
                row[col] = _value(rnd, spec.column(col).type, [row[col]] + lits.get(col, []))
            rows.append(row)
            continue
        row = {}
        for col, pool in lits.items():
            base = source.get(col, col)
            if base not in spec.names or base in ("time", "event_id"):
                continue
            v = _value(rnd, spec.column(base).type, pool)
            if base != col and isinstance(v, str):
                v = rnd.choice(["/usr/bin/", "/", "", "/x\u0663/"]) + v
            row[base] = v
        rows.append(row)
    return rows


@pytest.mark.parametrize("rid", sorted(r for r, v in RULES.items() if isinstance(v, YamlRule)))
def test_condition_translation_lets_every_match_through(rid):
    """pos ⊇ rows the pandas mask matches, neg ⊇ rows it does not, on hostile generated rows."""
    rule = RULES[rid]
    rows = _fuzz_rows(rule, 600, seed=sum(map(ord, rid)))
    table = make_table(rule.table, rows)
    df = table.to_pandas()
    if rule.table in EAGER:
        df = derive(rule.table, df, EAGER[rule.table])
    mask = rule.mask(df, CFG).to_numpy()
    pos, neg = condition_sql(rule.condition, rule.table, CFG)
    con = duckdb.connect()
    con.register("t", table)
    got = con.execute(f"SELECT {pos or 'TRUE'}, {neg or 'TRUE'} FROM t").fetchall()
    assert len(got) == len(rows)
    missed_pos = [rows[i] for i, (p, _) in enumerate(got) if mask[i] and not p]
    missed_neg = [rows[i] for i, (_, q) in enumerate(got) if not mask[i] and not q]
    assert not missed_pos, f"{rid}: pos drops matching rows, e.g. {missed_pos[:2]}"
    assert not missed_neg, f"{rid}: neg drops non-matching rows, e.g. {missed_neg[:2]}"
    assert mask.any() or rid in _RARELY_HIT  # the generator reaches the matching side
