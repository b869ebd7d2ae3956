"""The vectorised checks of the Hubble bulk path, one by one (``hubble_fast``'s consumer side).

The differential tests (``test_hubble_fast.py``) compare whole files with the
per-record path; these pin what each check accepts and declines, so that a
check made looser or stricter fails here even where the per-record path would
happen to give the same cell.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubeforensics.sources import hubble_fast
from tests.sources.bulk_helpers import bulk_with_wrong_mapping, write_lines


def duck_l4(values: list[Any]) -> pa.Array:
    """``l4`` texts as DuckDB renders them (compact JSON; None: no ``l4``)."""
    return pa.array([None if v is None else json.dumps(v, separators=(",", ":")) for v in values], pa.string())


def l4_rows(values: list[Any]) -> list[tuple[bool, Any, Any, Any, Any]]:
    ok, cols = hubble_fast._l4_columns(duck_l4(values), {})
    return list(zip(ok.tolist(), *(cols[c].to_pylist() for c in ("protocol", "src_port", "dst_port", "tcp_flags"))))


#: (l4 value, (usable, protocol, src_port, dst_port, tcp_flags)); unusable rows' cells are not looked at.
L4_CASES: list[tuple[Any, tuple[bool, Any, Any, Any, Any]]] = [
    (None, (True, None, None, None, None)),
    ({}, (True, None, None, None, None)),
    ({"TCP": {"source_port": 32768, "destination_port": 8181, "flags": {"SYN": True}}},
     (True, "TCP", 32768, 8181, "SYN")),
    ({"TCP": {"source_port": 1, "destination_port": 2, "flags": {"SYN": True, "ACK": True}}},
     (True, "TCP", 1, 2, "SYN,ACK")),
    ({"TCP": {"source_port": 1, "destination_port": 2, "flags": {"SYN": False}}}, (True, "TCP", 1, 2, "")),
    ({"TCP": {"source_port": 1, "destination_port": 2, "flags": {}}}, (True, "TCP", 1, 2, None)),
    ({"UDP": {"source_port": 58384, "destination_port": 53}}, (True, "UDP", 58384, 53, None)),
    ({"UDP": {"destination_port": 53}}, (True, "UDP", None, 53, None)),  # the only number is the destination
    ({"SCTP": {"source_port": 9}}, (True, "SCTP", 9, None, None)),
    ({"TCP": {}}, (True, "TCP", None, None, None)),
    ({"TCP": {"source_port": 0, "destination_port": 2147483647}}, (True, "TCP", 0, 2147483647, None)),
    ({"TCP": {"source_port": 1, "destination_port": 2147483648}}, (False, None, None, None, None)),  # > int32
    ({"TCP": {"source_port": 9999999999}}, (False, None, None, None, None)),  # 10 digits, > int32
    ({"TCP": {"source_port": 12345678901}}, (False, None, None, None, None)),  # 11 digits (first 10 < 2**31)
    ({"TCP": {"source_port": -1}}, (False, None, None, None, None)),
    ({"TCP": {"source_port": 80.5}}, (False, None, None, None, None)),
    ({"TCP": {"source_port": "80"}}, (False, None, None, None, None)),
    ({"TCP": {"destination_port": 80, "source_port": 1}}, (False, None, None, None, None)),  # not Hubble's order
    ({"TCP": {"source_port": 1, "flags": {"SYN": 1}}}, (False, None, None, None, None)),
    ({"TCP": {"source_port": 1, "flags": {"SYN": "true"}}}, (False, None, None, None, None)),
    ({"TCP": {"source_port": 1, "flags": {"SYN": True, "XYZ": True}}}, (False, None, None, None, None)),
    ({"ICMPv4": {"type": 8, "code": 0}}, (True, "ICMPv4", None, None, None)),  # a digit in the key stays
    ({"ICMPv6": {"type": 128, "code": 12345678901}}, (True, "ICMPv6", None, None, None)),
    ({"VRRP": {"x": "a:123", "y": 7}}, (True, "VRRP", None, None, None)),
    ({"ICMPv4": {"nested": {"a": 1}}}, (False, None, None, None, None)),
    ({"TCP": None, "UDP": {"source_port": 1}}, (False, None, None, None, None)),  # two keys
    ({"UDP": {"source_port": 1}, "TCP": {"source_port": 3}}, (False, None, None, None, None)),
    ({"Infinity": {}}, (False, None, None, None, None)),  # an odd protocol text
    ([], (False, None, None, None, None)),
    ("TCP", (False, None, None, None, None)),
    (7, (False, None, None, None, None)),
]


def test_l4_columns_case_by_case() -> None:
    got = l4_rows([v for v, _ in L4_CASES])
    for (value, want), row in zip(L4_CASES, got):
        assert row[0] == want[0], value
        if want[0]:
            assert row == want, value


def test_l4_columns_each_row_alone_and_in_every_order() -> None:
    """A row's numbers are found among its own (the index of its first number is per row)."""
    values = [v for v, _ in L4_CASES]
    together = l4_rows(values)
    assert [l4_rows([v])[0] for v in values] == together
    assert l4_rows(values[::-1]) == together[::-1]


@pytest.mark.parametrize("kind", ["sliced", "large"])
def test_l4_columns_of_sliced_and_large_string_arrays(kind: str) -> None:
    values = [v for v, _ in L4_CASES]
    arr = duck_l4([{"UDP": {"source_port": 5}}] * 3 + values)
    arr = arr.slice(3) if kind == "sliced" else arr.cast(pa.large_string())
    ok, cols = hubble_fast._l4_columns(arr, {})
    want = l4_rows(values)
    assert ok.tolist()[-len(values):] == [w[0] for w in want]
    assert cols["src_port"].to_pylist()[-len(values):] == [w[2] for w in want]


def test_l4_templates_are_mapped_once_and_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = hubble_fast._l4_template

    def counting(t: str) -> Any:
        seen.append(t)
        return real(t)

    monkeypatch.setattr(hubble_fast, "_l4_template", counting)
    rows = [{"TCP": {"source_port": p, "destination_port": 80, "flags": {"SYN": True}}} for p in (*range(1000, 1100), *range(10, 20))]
    memo: dict[str, Any] = {}
    hubble_fast._l4_columns(duck_l4(rows), memo)
    hubble_fast._l4_columns(duck_l4(rows), memo)
    assert len(seen) == 2  # one template per number of port digits, each mapped once for both batches
    monkeypatch.setattr(hubble_fast, "MEMO_TEMPLATES", 1)
    hubble_fast._l4_columns(duck_l4([{"UDP": {"source_port": 1}}, {"UDP": {"source_port": 10}}]), memo)
    assert len(memo) == 1


def test_l4_template_hides_the_digits_of_numbers_only() -> None:
    t = duck_l4([{"ICMPv4": {"type": 8, "x": "a:12b", "y": -3}}])
    memo: dict[str, Any] = {}
    ok, cols = hubble_fast._l4_columns(t, memo)
    assert list(memo) == ['{"ICMPv4":{"type":\x01,"x":"a:\x01\x01b","y":-3}}']
    assert ok.tolist() == [True] and cols["protocol"].to_pylist() == ["ICMPv4"]


def l4_reference(text: str | None) -> tuple[bool, Any, Any, Any, Any]:
    """``_l4_columns`` of one text, in plain Python: the template by a regex (the digits of each number after a
    ``:``), :func:`hubble_fast._l4_template` on it, the ports read from the numbers of the text."""
    if text is None:
        return True, None, None, None, None
    template = re.sub(r"(?<=:)\d+", lambda m: "\x01" * len(m.group()), text)
    usable, proto, flags, src, dst = hubble_fast._l4_template(template)
    numbers = [int(m.group()[:10]) for m in re.finditer(r"(?<=:)\d+", text)]
    ports = [numbers[i] if i >= 0 else None for i in (src, dst)]
    if not usable or any(p is not None and p > 2**31 - 1 for p in ports):
        return False, None, None, None, None
    return True, proto, ports[0], ports[1], flags


def test_l4_columns_equal_a_plain_reading_of_random_texts() -> None:
    """Random ``l4`` texts (protocols, ports of 1 to 12 digits, fields in any order, flags, numbers inside
    strings and keys, texts cut short) read as :func:`l4_reference` reads them, in one batch."""
    rng = random.Random(11)
    texts: list[str | None] = []
    for _ in range(3000):
        proto = rng.choice(["TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "X9"])
        fields = {k: int("9" * rng.randint(1, 12)) if rng.random() < 0.1 else rng.randint(0, 70000)
                  for k in ("source_port", "destination_port", "type", "code") if rng.random() < 0.7}
        if rng.random() < 0.3:
            fields["flags"] = {f: rng.random() < 0.5 for f in rng.sample(["SYN", "ACK", "FIN", "RST"], 2)}
        if rng.random() < 0.1:
            fields["note"] = f"a:{rng.randint(0, 999)}b"
        order = list(fields)
        if rng.random() < 0.2:
            rng.shuffle(order)
        text = json.dumps({proto: {k: fields[k] for k in order}}, separators=(",", ":"))
        if rng.random() < 0.05:
            text = text[:rng.randint(1, len(text))]  # cut short: declined, also when it ends in a number
        texts.append(None if rng.random() < 0.05 else text)
    texts.append('{"TCP":{"source_port":123')
    ok, cols = hubble_fast._l4_columns(pa.array(texts, pa.string()), {})
    got = list(zip(ok.tolist(), *(cols[c].to_pylist() for c in ("protocol", "src_port", "dst_port", "tcp_flags"))))
    want = [l4_reference(t) for t in texts]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g for g in got if g[0]] == [w for w in want if w[0]]
    assert sum(w[0] for w in want) > 1000 and sum(not w[0] for w in want) > 100


#: Values for the pre-check of ``_odd_rows`` (:func:`hubble_fast._odd_candidates`): near misses of each branch.
ODD_CORPUS = [
    "", "a", "[", "{x", "-", "-1", "-nan", "-1e400", "nan", "NaN", "nAn", "nanx", "na", "inf", "INF", "Inf0", "info",
    "Infinity", "infinity", "INFINITYx", "infinit", "INGRESS", "IPv4", "IPv6", "nodes", "i", "n",
    "0", "1", "12", "123", "1e400", "1E400", "1e+400", "1.5E-309", "1.e4000", "12e3456", "1e40", "1e400x", "1e-07",
    "1234567890123456789", "12345678901234567890", "123456789012345678", "123456789012345678x",
    "1234567890123456789x", "123456789012345678.9", "10.1.49.14", "10.1.49.140", "172.29.8.88", "1.2.3.4e500",
    "55381d42-7729-4bf3-987e-000000000000", "5e381000", "5e3810000000000000000000", "9" * 40, "8" * 18 + "e123",
    "12e345", "1.2e345", "12.e3456", "1e-345", "1.2.3e+456", "1234567890123456", "1x34567890123456789",
    "12345678901234567x9",
]
#: ... and with the unit separator, which may end a match inside a value.
ODD_US = ["1e400\x1fabc", "nan\x1f", "inf\x1fx", "infinity\x1fy", "12\x1f", "1e40\x1f", "x\x1fnan", "nanx\x1f"]


def regex_odd(values: list[str]) -> list[int]:
    """The rows ``_ODD_VALUE_RE2`` matches, by the regex alone (what the pre-check must never miss)."""
    hit = pa.compute.match_substring_regex(pa.array(values), hubble_fast._ODD_VALUE_RE2)
    return [i for i, h in enumerate(hit.to_pylist()) if h]


@pytest.mark.parametrize("values", [ODD_CORPUS, ODD_CORPUS + ODD_US, ODD_US], ids=["plain", "with-us", "us-only"])
def test_odd_rows_equal_the_regex_on_every_value(values: list[str]) -> None:
    assert hubble_fast._odd_rows(pa.array(values)).tolist() == regex_odd(values)
    assert hubble_fast._odd_rows(pa.array(values).slice(1)).tolist() == [i - 1 for i in regex_odd(values) if i]
    lists = pa.array([[v, "x"] for v in values])
    assert sorted(hubble_fast._odd_rows(lists).tolist()) == regex_odd(values)


def test_odd_rows_per_value_equal_odd_rows() -> None:
    """The columns checked once per distinct value (IPs, direction, IP version) find the same rows."""
    rng = random.Random(3)
    values: list[str | None] = [rng.choice([*ODD_CORPUS, *ODD_US, None]) for _ in range(2000)]
    arr = pa.array(values, pa.string())
    want = hubble_fast._odd_rows(arr).tolist()
    assert len(want) > 100
    assert hubble_fast._odd_rows_per_value(arr).tolist() == want
    assert hubble_fast._odd_rows_per_value(arr.slice(7)).tolist() == [i - 7 for i in want if i >= 7]
    assert hubble_fast._odd_rows_per_value(pa.array([None, "10.0.0.1"] * 3, pa.string())).tolist() == []
    assert set(hubble_fast._PER_VALUE_COLUMNS) <= set(hubble_fast._TEXT_COLUMNS)


def test_odd_pre_check_reads_only_near_misses() -> None:
    """The pre-check leaves the regex only what could match: not IPs, directions, IP versions, hex ids (ending
    with digits or not), long digit runs with no exponent, 19 bytes of which one is no digit."""
    values = ["INGRESS", "IPv4", "10.1.49.14", "172.29.8.88", "55381d42-7729-4bf3-987e-00000000000a", "nodes",
              "123456789012345678x", "55381d42-7729-4bf3-987e-000000000000", "10.1.49.140", "1234567890123456",
              "1x34567890123456789", "12345678901234567x9", "1.2.3.4-567", "1e4x12"]
    arr = pa.array(values)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    cand = np.arange(len(values))
    first = data[offsets[:-1]]
    got = hubble_fast._odd_candidates(cand, first, offsets[:-1], np.diff(offsets), data, False)
    assert got.tolist() == []
    assert hubble_fast._odd_candidates(cand, first, offsets[:-1], np.diff(offsets), data, True).tolist() == [
        2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]
    near = ["1e400", "12e345", "1.2e345", "1234567890123456789", "1.5E-309"]  # each one the regex matches
    arr = pa.array(near)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    got = hubble_fast._odd_candidates(np.arange(len(near)), data[offsets[:-1]], offsets[:-1], np.diff(offsets), data,
                                      False)
    assert got.tolist() == regex_odd(near) == list(range(len(near)))


def duck_times(texts: list[str | None]) -> list[int | None]:
    import duckdb

    rows = duckdb.execute(f"SELECT CASE WHEN regexp_matches(t, '{hubble_fast._TS_RE2}') "
                          "THEN epoch_ns(TRY_CAST(rtrim(t, 'Z') AS TIMESTAMP_NS)) END "
                          "FROM (SELECT unnest(?::VARCHAR[]) AS t)", [texts]).fetchall()
    return [r[0] for r in rows]


TIME_TEXTS: list[str | None] = [
    "2026-10-26T06:34:03.818312679Z", "2026-10-26T06:34:03Z", "2026-10-26T06:34:03.1Z", "2026-10-26T06:34:03.000000001Z",
    "1900-01-01T00:00:00Z", "2199-12-31T23:59:59.999999999Z", "2024-02-29T12:00:00.5Z", "2000-02-29T00:00:00Z",
    "2026-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z", "2026-10-26 06:34:03Z", "2026-10-26T06:34:03.5+02:00", "2026-10-26T06:34:03",
    "2026-10-26T06:34:03.1234567891Z", "2026-10-26T24:00:00Z", "2026-10-26T23:59:60Z", "1899-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z", "2026-10-26T06:34:03.Z", "2026-1-26T06:34:03Z", "yesterday", "", None,
    " 2026-10-26T06:34:03Z", "2026-10-26T06:34:03Z\n", "2026-10-26t06:34:03z",
]


def test_times_as_duckdb_gave_them() -> None:
    """Usable exactly where the SQL's regex and TIMESTAMP_NS cast gave a time, with the same nanoseconds."""
    rng = random.Random(7)
    texts = list(TIME_TEXTS)
    for _ in range(3000):
        frac = rng.choice(["", "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9)))])
        texts.append(f"{rng.randint(1900, 2199)}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}T"
                     f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{frac}Z")
    ok, time = hubble_fast._times(pa.array(texts, pa.string()))
    want = duck_times(texts)
    assert ok.tolist() == [w is not None for w in want]
    got = time.cast(pa.int64()).to_pylist()
    assert [g for g, o in zip(got, ok) if o] == [w for w in want if w is not None]
    assert time.type == hubble_fast.FLOWS.column("time").arrow_type
    assert sum(w is None for w in want) > 50  # impossible dates among the random ones


def test_times_of_a_batch_by_one_match_as_by_rows() -> None:
    """A batch whose texts are all of the form is recognised by one match over its buffer; texts that match only
    as a run (two times in one row, a time split over two rows, an empty row, a null that has bytes) are not."""
    a, b, c = "2026-10-26T06:34:03.818312679Z", "2026-10-26T06:34:04Z", "2026-10-26T06:34:05.1Z"
    good = [a, b, c, "2199-12-31T23:59:59.999999999Z", "1900-01-01T00:00:00.12Z"] * 50
    assert hubble_fast._all_times(pa.array(good, pa.string()))
    assert hubble_fast._all_times(pa.array(["x", *good], pa.string()).slice(1))
    cases = {
        "two in a row": [a + b, c],
        "split over rows": [a + b[:7], b[7:]],
        "an empty row": [a + b, ""],
        "not the form": [a, "2026-10-26 06:34:04Z"],
        "one bad among many": [*good, "2026-10-26T06:34:04.Z"],
    }
    for name, texts in cases.items():
        arr = pa.array(texts, pa.string())
        assert not hubble_fast._all_times(arr), name
        ok, _ = hubble_fast._times(arr)
        assert ok.tolist() == [w is not None for w in duck_times(texts)], name
    plain = pa.array([a, b], pa.string())  # b's bytes stay in the buffer, its row is null
    with_null = pa.Array.from_buffers(pa.string(), 2, [pa.py_buffer(bytes([0b01])), *plain.buffers()[1:]])
    assert with_null.to_pylist() == [a, None]
    assert not hubble_fast._all_times(with_null)
    assert hubble_fast._times(with_null)[0].tolist() == [True, False]
    assert not hubble_fast._all_times(pa.array(good, pa.large_string()))


IDENTITIES: list[str | None] = [
    "16777217", "-5", "", None, "1.5", " 7", "7 ", "true", "18446744073709551615", "123456789012345678",
    "1234567890123456789", "-123456789012345678", "-0", "007", "0", "+7", "1e3", "x", "2", "2", None, "",
]


def test_identities_as_the_sql_read_them() -> None:
    """Usable and valued as the SQL's regex and BIGINT cast gave them (each distinct text converted once)."""
    import duckdb

    rows = duckdb.execute(
        f"SELECT (raw IS NULL OR raw = '' OR (regexp_matches(raw, '{hubble_fast._INT_RE2}') "
        "AND TRY_CAST(nullif(raw, '') AS BIGINT) IS NOT NULL)), TRY_CAST(nullif(raw, '') AS BIGINT) "
        "FROM (SELECT unnest(?::VARCHAR[]) AS raw)", [IDENTITIES]).fetchall()
    ok, cells = hubble_fast._identities(pa.array(IDENTITIES, pa.string()))
    assert ok.tolist() == [r[0] for r in rows]
    assert [c for c, o in zip(cells.to_pylist(), ok) if o] == [r[1] for r in rows if r[0]]
    assert cells.type == pa.int64()
    assert hubble_fast._identities(pa.array(IDENTITIES, pa.string()).slice(3))[0].tolist() == ok.tolist()[3:]


SUMMARIES: list[str | None] = [
    "TCP Flags: SYN", "TCP Flags: SYN, ACK", None, "", "Bearer abc", "TOKEN", "x-passwd", "caf\u00e9",
    "https://u:p@host", "plain text", "TCP Flags: SYN", "authorization: x", "LS0tLS1CRUdJTiBx", None,
]


def test_matching_rows_as_regexp_matches_per_row() -> None:
    """Rows of text the redaction pre-check matches: the same rows as the regex read on every row."""
    want = [i for i, s in enumerate(SUMMARIES) if s is not None and re.search(hubble_fast._REDACT_RE2, s)]
    assert len(want) >= 6
    assert hubble_fast._matching_rows(pa.array(SUMMARIES), hubble_fast._REDACT_RE2).tolist() == want
    assert hubble_fast._matching_rows(pa.array([None, None], pa.string()), hubble_fast._REDACT_RE2).tolist() == []


def test_identities_of_a_column_without_any() -> None:
    ok, cells = hubble_fast._identities(pa.array([None, None, None], pa.string()))
    assert ok.tolist() == [True] * 3 and cells.to_pylist() == [None] * 3 and cells.type == pa.int64()


def test_times_of_a_batch_of_impossible_dates() -> None:
    """Impossible dates among many are declined at once (the batch is not cast again by halves for each)."""
    texts = [f"2026-{m:02d}-{d:02d}T00:00:00Z" for m in range(1, 13) for d in range(1, 32)] * 40 + [None, "x"]
    texts += [f"{y}-02-29T00:00:00Z" for y in (1900, 2000, 2024, 2100)]
    calls = 0
    real = hubble_fast._cast_times

    def counting(t: pa.Array) -> pa.Array:
        nonlocal calls
        calls += 1
        return real(t)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hubble_fast, "_cast_times", counting)
        ok, time = hubble_fast._times(pa.array(texts, pa.string()))
    assert calls == 1
    want = duck_times(texts)
    assert ok.tolist() == [w is not None for w in want]
    assert [g for g, o in zip(time.cast(pa.int64()).to_pylist(), ok) if o] == [w for w in want if w is not None]
    assert ok.sum() == 365 * 40 + 2


def flow_line(n: int, *, uuid: bool = True, flow_time: bool = True, same_time: bool = False,
              bare: bool = False) -> dict[str, Any]:
    t = f"2026-10-26T06:34:03.{0 if same_time else n:09d}Z"
    f: dict[str, Any] = {"verdict": "FORWARDED", "IP": {"source": "10.1.49.14", "destination": "10.1.49.15"},
                         "l4": {"TCP": {"source_port": 1000 + n % 50000, "destination_port": 80}}}
    if uuid:
        f["uuid"] = f"u-{n}"
    if flow_time:
        f["time"] = t
    return {**f, "time": t, "node_name": "n1"} if bare else {"flow": f, "node_name": "n1", "time": t}


@pytest.mark.parametrize("form", ["no-uuid", "same-time", "envelope-time", "bare-no-uuid", "bare-same-time"])
def test_row_to_line_mapping_is_checked_with_each_identifying_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """The fields that identify a line (time text, node, uuid; the verdict too in bare files) are compared each:
    lines told apart by the time alone, or by the uuid alone, still stop a wrong mapping; a flow whose time is
    the envelope's maps as it should."""
    monkeypatch.setattr(hubble_fast, "MIN_BULK_BYTES", 0)
    kw = {"uuid": "no-uuid" not in form, "same_time": "same-time" in form, "flow_time": form != "envelope-time",
          "bare": form.startswith("bare")}
    path = write_lines(tmp_path / "f.json", [flow_line(n, **kw) for n in range(3000)])
    res = hubble_fast.bulk(path, "f.json", "x")
    assert res is not None
    assert sum(t.num_rows for t in res.batches) == 3000 and res.complete and not res.python_lines
    assert bulk_with_wrong_mapping(hubble_fast, path, "skipped-line", monkeypatch) == 1000
