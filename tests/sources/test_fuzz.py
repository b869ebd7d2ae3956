"""Fuzzing every reader with mutated real and realistic records (hypothesis).

Seeds are the real upstream records of ../shared/conformance (through the
``conformance`` fixture; that half skips when the corpus is absent) and the
realistic records of ``tests/hardening/corpus.py``.  Each example writes a file of
mutated records (keys dropped, types changed, huge or odd strings, unicode, lone
surrogates, deep nesting, numbers beyond 64 bits, JSON damage) and runs the reader
through :func:`kubeforensics.sources.read_file` with the format forced.

Properties: no exception escapes; records = ingested + quarantined; each quarantined
record has a reason; every stored row has a non-null ``time`` and ``event_id``.

Iterations: ``KUBEFORENSICS_FUZZ_EXAMPLES`` examples per reader and seed source
(default 100 + 100 = 200 per reader, well under a minute in all).  For a long run::

    KUBEFORENSICS_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/sources/test_fuzz.py -q

Hypothesis prints the failing file content as the falsifying example; re-running
replays it from the example database.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeforensics.sources import READERS, read_file
from kubeforensics.sources.records import Record, iter_records
from tests.hardening.corpus import FORMATS, RECORDS

EXAMPLES = int(os.environ.get("KUBEFORENSICS_FUZZ_EXAMPLES", "100"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="KUBEFORENSICS_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
#: Conformance folder and file pattern of each format.
CONFORMANCE = {
    "audit": ("audit/falco-trace-files", "*.json"), "tetragon": ("tetragon", "*.json"),
    "hubble": ("hubble", "*.json"), "falco": ("falco", "*.json"), "k8s-events": ("k8s-events", "*.json"),
    "k8s-objects": ("pods", "*.json"),
}

ODD_STRINGS = [
    "", " ", "\u0000", "\ud800", "\udfff\ud800", "\ufeff", "\u202e\u2066", "é" * 3, "😀" * 5, "\r\n\t",
    "9" * 40, "-0", "1e400", "NaN", "null", "true", "[]", "{}", "<script>alert(1)</script>",
    "2026-03-02T12:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "--token=abc", "Bearer x" * 3,
    "containerd://", "docker://" + "f" * 64, "x" * 5000,
]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40), st.sampled_from(ODD_STRINGS),
    st.integers(min_value=10_000, max_value=200_000).map(lambda n: "A" * n),
)
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                      max_leaves=12)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (dict keys and list indexes) inside a record."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutate(rec: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    rec = copy.deepcopy(rec)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = _paths(rec)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent: Any = rec
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        op = data.draw(st.sampled_from(["drop", "replace", "replace", "wrap", "nest", "dup-type"]), label="op")
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = data.draw(values, label="value")
        elif op == "wrap":
            parent[key] = [parent[key]] if data.draw(st.booleans()) else {"value": parent[key]}
        elif op == "nest":
            deep: Any = parent[key]
            for _ in range(data.draw(st.integers(50, 400), label="depth")):
                deep = {"a": deep}
            parent[key] = deep
        else:  # the value as another JSON type: string <-> number, object -> its JSON text
            v = parent[key]
            parent[key] = json.dumps(v) if isinstance(v, (dict, list)) else str(v) if not isinstance(v, str) else (
                int(v) if v.isdigit() else len(v))
    return rec


def _encode(rec: dict[str, Any], data: st.DataObject) -> bytes:
    try:
        raw = json.dumps(rec, ensure_ascii=data.draw(st.booleans(), label="ascii"))
    except RecursionError:
        return b'{"a":' * 3000 + b"1" + b"}" * 3000
    b = raw.encode("utf-8", "surrogatepass")
    damage = data.draw(st.sampled_from(["none"] * 6 + ["truncate", "bad-utf8", "crlf"]), label="damage")
    if damage == "truncate":
        b = b[: data.draw(st.integers(0, max(0, len(b) - 1)), label="cut")]
    elif damage == "bad-utf8":
        at = data.draw(st.integers(0, len(b)), label="at")
        b = b[:at] + b"\xc3\x28\xff" + b[at:]
    elif damage == "crlf":
        b += b"\r"
    return b


def check(fmt: str, payload: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.json"
        p.write_bytes(payload)
        res = read_file(p, fmt)
    acc = res.account
    assert acc.records == acc.ingested + acc.quarantined, acc
    assert len(res.quarantine) == acc.quarantined
    assert all(isinstance(q.reason, str) and q.reason for q in res.quarantine)
    for name, table in res.tables.items():
        assert table.num_rows == acc.rows.get(name, 0)
        if table.num_rows:
            assert table.column("time").null_count == 0, name
            assert table.column("event_id").null_count == 0, name


def _run(fmt: str, seeds: list[dict[str, Any]], data: st.DataObject) -> None:
    recs = [_mutate(data.draw(st.sampled_from(seeds), label="seed"), data)
            for _ in range(data.draw(st.integers(1, 4), label="records"))]
    good = seeds[0]
    payload = b"\n".join([json.dumps(good).encode(), *(_encode(r, data) for r in recs)]) + b"\n"
    check(fmt, payload)


@functools.cache
def _conformance_seeds(root: str, fmt: str) -> tuple[dict[str, Any], ...]:
    sub, pattern = CONFORMANCE[fmt]
    seeds: list[dict[str, Any]] = []
    for f in sorted((Path(root) / sub).glob(pattern)):
        for rec in iter_records(f):
            if isinstance(rec, Record):
                try:
                    if READERS[fmt].sniff(rec.obj) or fmt == "audit":
                        seeds.append(rec.obj)
                except Exception:  # noqa: BLE001,S112 - a seed a reader cannot sniff is just not a seed
                    continue
            if len(seeds) >= 60:
                break
    return tuple(seeds)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_fuzz_realistic_records(fmt: str, data: st.DataObject) -> None:
    _run(fmt, [RECORDS[fmt](n) for n in range(3)], data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_fuzz_conformance_records(conformance: Path, fmt: str, data: st.DataObject) -> None:
    seeds = list(_conformance_seeds(str(conformance), fmt))
    assert seeds, f"no {fmt} records in the conformance corpus"
    _run(fmt, seeds, data)


def test_mutations_reach_the_quarantine_and_the_tables() -> None:
    """The fuzzer's inputs are not all rejected (or all accepted): both paths get exercised."""
    import random

    from hypothesis import find

    # a damaged mutation that the Falco reader quarantines, and one it still stores, both exist
    def quarantined(payload: bytes) -> bool:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "f.json"
            p.write_bytes(payload)
            return read_file(p, "falco").account.quarantined > 0

    base = json.dumps(RECORDS["falco"](1)).encode()
    assert quarantined(base[:-5]) and not quarantined(base)
    rnd = random.Random(0)
    dropped = {k: v for k, v in RECORDS["falco"](1).items() if rnd.random() < 0.5 or k in ("time", "rule", "priority")}
    assert not quarantined(json.dumps(dropped).encode())
    assert find(st.sampled_from(ODD_STRINGS), lambda s: quarantined(
        json.dumps({**RECORDS["falco"](1), "time": s}).encode())) == ""
