"""The checks of the Falco bulk path that run in the consumer instead of SQL, against their references.

* :func:`falco_fast._odd_rows` (numpy on each value's first byte, the regex on the
  candidates) finds the rows ``_ODD_RE2`` matches (as DuckDB's ``regexp_matches``),
  and :func:`falco_fast._fields_checks` (one pass of the patterns' union, then each
  pattern on the texts it matches) gives what each ``output_fields`` pattern gives,
  on any Arrow layout (slices, nulls, empty texts).
* Each check declines an odd value in each field it looks at (the line goes record
  by record) and keeps the plain values close to those, and the table is the
  per-record path's (``assert_same``): the top-level texts, ``tags`` (one parse per
  distinct text, the lists DuckDB's cast gives), ``proc.pid``, the shape of
  ``output_fields`` (nested values whose text the reference writes otherwise:
  unsorted or secret-like keys inside, floats), and the redaction pre-checks of
  ``output`` and ``output_fields``.
* ``_replace_rows`` puts the values where ``replace_with_mask`` puts them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kubeforensics.sources import falco_fast
from tests.sources.bulk_helpers import write_lines
from tests.sources.test_falco import TOKEN
from tests.sources.test_falco_fast import _matches, al, assert_same, of


@pytest.fixture(autouse=True)
def bulk_even_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(falco_fast, "MIN_BULK_BYTES", 0)


def declined(path: Path) -> set[int]:
    """The lines the bulk path sends record by record (it must read the whole file)."""
    res = falco_fast.bulk(path, "e", "x")
    assert res is not None
    list(res.batches)
    assert res.complete
    return set(res.python_lines)


def check(tmp_path: Path, odd: list[Any], plain: list[Any]) -> None:
    """Lines 2, 4, ... hold the ``odd`` alerts, which are declined; the ``plain`` ones (after them) are not;
    the tables equal the per-record path's."""
    good = al()
    lines: list[Any] = [good]
    for a in odd:
        lines += [a, good]
    lines += plain
    path = write_lines(tmp_path / "checks.json", lines)
    got = declined(path)
    want = {2 + 2 * k for k in range(len(odd))}
    assert want <= got, sorted(want - got)
    first_plain = len(lines) - len(plain) + 1
    assert not got & set(range(first_plain, len(lines) + 1)), sorted(got)
    assert_same(path, min_vectorised=1 + len(odd) + len(plain))


# --- the numpy pre-checks against their patterns -------------------------------------------------------

TEXTS = [
    "", "x", "[", "{", "{}", "[1]", '{"a":1}', "-", "-1", "0", "nan", "NaN", "-nan", "inf", "-Infinity", "infinity",
    "Infinite", "nano", "in", "1e300", "-1.5E+308", "1e30", "1e3000x", "1234567890123456789", "123456789012345678",
    "-1234567890123456789", "12345678901234567890123", "2026-10-26T06:34:31Z", "1.2.3", "9" * 40, "i", "n",
    '{"a":{"b":1}}', '{"a":"[x"}', 'x{', '{"a":"b"}{', "\u00e9", "-\u00e9", "caf\u00e9 {",
    "\u0131nf", "\u0130nf", "-\u0131nf", "\u212anan", "\uff4eaN",  # no other first character RE2 folds to n or i
]


def random_texts(n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    alphabet = "{}[]-0123456789.eE+nNaIiftyx\":, \u00e9"
    out: list[str | None] = [None, *TEXTS]
    for _ in range(n):
        if rng.random() < 0.05:
            out.append(None)
        else:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 25))))
    return out


def layouts(texts: list[str | None]) -> list[pa.Array]:
    arr = pa.array(texts, type=pa.string())
    return [arr, arr.slice(3), arr.slice(1, len(arr) - 5), pa.array(texts, type=pa.large_string()).slice(2),
            pa.array([t for t in texts if t is not None], type=pa.string())]


def pattern_rows(col: pa.Array, pattern: str) -> list[int]:
    return np.flatnonzero(pc.match_substring_regex(col, pattern).fill_null(False).to_numpy(
        zero_copy_only=False)).tolist()


@pytest.mark.parametrize("seed", [1, 2])
def test_odd_rows_are_the_rows_the_pattern_matches(seed: int) -> None:
    for col in layouts(random_texts(3000, seed)):
        assert sorted(falco_fast._odd_rows(col).tolist()) == pattern_rows(col, falco_fast._ODD_RE2)


def test_odd_rows_few_candidates_and_all_candidates() -> None:
    """The regex on the candidates alone (most values plain) and on the whole column (most start like odd)."""
    plain = ["retail-live-worker-79m6p"] * 50
    for texts in (plain + ["[1]", "-1234567890123456789", "NaN", "12"], ["2026-10-26"] * 50 + ["{x", "1e300"]):
        col = pa.array(texts)
        assert sorted(falco_fast._odd_rows(col).tolist()) == pattern_rows(col, falco_fast._ODD_RE2)
        assert len(falco_fast._odd_rows(col)) == 2 + (texts[0] != "2026-10-26")


#: Pieces of output_fields texts, each of which one of the patterns looks for (and plain ones).
PIECES = ['"a":"x"', '"b":1', '"c":null', '"d":true', '"e":"[y]"', '"f":"{z}"', '"g":{"h":1}', '"i":[1]', '"j":1.5',
          '"k":1e5', '"l":-0', '"m":12345678901234567890', '"n":-1234567890123456789', '"o":NaN', '"p":"Bearer x"',
          '"q":"my token"', '"r":"caf\u00e9"', '"s":"a\\u000Bb"', '"t":"a\\"b"', '"u":"x:1.5"', '"authorization":"x"',
          '"v":"\\/"', '"w":"-----BEGIN"', '"x":"LS0tLS1CRUdJTg"', '"y":"https://u:p@h"', '"z":"key-data"',
          '"A":"a\\\\B"']


def fields_texts(n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    out: list[str | None] = [None, "{}", '"x"', "5", "[1]", "null", '{"a":1}\n{', "{\n{"]
    for _ in range(n):
        if rng.random() < 0.05:
            out.append(None)
        else:
            out.append("{" + ",".join(rng.sample(PIECES, rng.randrange(1, 4)) if rng.random() < 0.3
                                      else [PIECES[k] for k in (0, 1, 2, 3)][: rng.randrange(1, 5)]) + "}")
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_fields_checks_are_the_patterns(seed: int) -> None:
    """ok = null or (quick and not not-int) or flat; esc and flag: their patterns; whatever the union lets by."""
    for col in layouts(fields_texts(3000, seed)):
        ok, esc, flag = falco_fast._fields_checks(col)

        def hit(pattern: str, col: pa.Array = col) -> np.ndarray:
            return pc.match_substring_regex(col, pattern).fill_null(False).to_numpy(zero_copy_only=False)

        null = ~col.is_valid().to_numpy(zero_copy_only=False)
        want_ok = null | (hit(falco_fast._QUICK_RE2) & ~hit(falco_fast._NOT_INT_RE2)) | hit(falco_fast._FLAT_RE2)
        assert ok.tolist() == want_ok.tolist()
        assert esc.tolist() == hit(falco_fast._ESC_RE2).tolist()
        assert flag.tolist() == hit(falco_fast._FIELDS_FLAG_RE2).tolist()
        assert ok.sum() > len(col) // 2 and (~ok).sum() > 50 and esc.sum() > 20 and flag.sum() > 50


def test_the_quick_pattern_never_passes_what_the_flat_pattern_refuses() -> None:
    rng = random.Random(5)
    values = ['"x"', '"[y]"', '"{z}"', "1", "-12", "1.5", "1e5", "-0", "true", "null", '{"a":1}', "[1]",
              "123456789012345678901", '"a:1.5"', "NaN"]
    texts = ["{" + ",".join(f'"k{j}":{rng.choice(values)}' for j in range(rng.randrange(1, 5))) + "}"
             for _ in range(2000)]
    col = pa.array(texts)
    quick = (pc.match_substring_regex(col, falco_fast._QUICK_RE2).to_numpy(zero_copy_only=False)
             & ~pc.match_substring_regex(col, falco_fast._NOT_INT_RE2).to_numpy(zero_copy_only=False))
    flat = np.array(_matches(falco_fast._FLAT_RE2, texts))
    assert quick.any() and not (quick & ~flat).any()


# --- each check declines what it must, in each field -----------------------------------------------------

ODD_VALUES: list[Any] = [{"a": 1}, [1], ["x"], 123456789012345678901234, -123456789012345678901234]


@pytest.mark.parametrize("field", ["rule", "source", "hostname", "output", "uuid"])
def test_odd_top_level_text_is_declined(field: str, tmp_path: Path) -> None:
    plain = [al(**{field: v}) for v in ("plain", "nano", "12345", "-5", "odd [x] {y}", "1e30", "Infinite")]
    check(tmp_path, [al(**{field: v}) for v in ODD_VALUES], plain)


def test_tags_of_other_shapes_are_declined(tmp_path: Path) -> None:
    odd = [al(tags=t) for t in (["a", 5], ["a", None], [["a"]], [{"a": 1}], {"a": 1}, 5, "single", ['quo"te'],
                                ["back\\slash"], ["a", 1.5], [True])]
    plain = [al(tags=t) for t in (["a", "b"], [], None, ["caf\u00e9", "[x]", "{y}"], ["mitre_discovery", "T1565"])]
    check(tmp_path, odd, plain)


def test_tags_are_the_lists_duckdb_casts() -> None:
    import duckdb

    texts = ['["a","b"]', "[]", '["caf\u00e9","[x]","{y}"]', '["a", "b"]', '["a",5]', None, '"x"', '["a","b"]']
    good, lists = falco_fast._tags(pa.array(texts))
    assert good.tolist() == [True, True, True, False, False, True, False, True]
    con = duckdb.connect()
    for text, ok, got in zip(texts, good.tolist(), lists.to_pylist()):
        if ok:
            want = con.execute("SELECT CAST(CAST(? AS JSON) AS VARCHAR[])", [text]).fetchone()[0]
            assert got == want, text


def test_odd_pids_are_declined(tmp_path: Path) -> None:
    odd = [of(proc__pid=v) for v in (" 42", "+42", "007", "4_2", 42.0, 1.5, True, "-0", "forty-two",
                                      18446744073709551615, 1234567890123456789)]
    plain = [of(proc__pid=v) for v in ("42", 42, -1, 0, "", None, 123456789012345678, ...)]
    check(tmp_path, odd, plain)


def test_output_fields_that_are_not_flat_are_declined(tmp_path: Path) -> None:
    """Nested values whose text the reference writes otherwise (keys sorted, secrets redacted inside, floats
    in orjson's form), numbers beyond 64 bits, fractions, and other JSON types."""
    odd = [
        of(x={"b": 1, "a": 2}), of(x={"password": "hunter2"}), of(x=["y", {"token": "t", "a": 1}]),
        of(x=[{"b": 1, "a": 2}]), of(x={"n": 1.5}), of(x=1.5), of(x=1e-07), of(x=-0.0), of(x=1e300),
        of(x=123456789012345678901), of(x=-12345678901234567890), al(output_fields=[1, 2]), al(output_fields="x"),
        al(output_fields=5), al(output_fields=[{"proc.name": "x"}]),
    ]
    plain = [of(x="[y]"), of(x="{z}"), of(x="a:1.5 b:-0,"), of(x=12345678901234567), of(x=-922337203685477580),
             of(x=9223372036854775807), of(x=None), of(x=True), al(output_fields={}), al(output_fields=None)]
    check(tmp_path, odd, plain)


def test_nested_output_fields_alone_would_differ(tmp_path: Path) -> None:
    """What the shape check guards against: DuckDB's text of these nested values is not the reference's."""
    import duckdb

    for value in ({"b": 1, "a": 2}, {"password": "hunter2"}, ["y", {"token": "t", "a": 1}]):
        path = write_lines(tmp_path / "n.json", [of(x=value)])
        text = duckdb.connect().execute(
            f"SELECT CAST(output_fields AS VARCHAR) FROM read_ndjson('{path}', columns={{'output_fields': 'JSON'}})"
        ).fetchone()[0]
        from kubeforensics.sources import falco

        assert text != falco._fields_json(json.loads(path.read_text())["output_fields"])


def test_redaction_pre_checks_send_cells_to_the_reference(tmp_path: Path) -> None:
    """Secrets in ``output`` and in ``output_fields`` values are redacted as the reference redacts them (the
    pre-checks flag those cells); the plain ones are kept as they are."""
    secrets = ["curl -H 'Authorization: Bearer " + TOKEN + "'", "mysql --password hunter2", "https://u:pw@host/x",
               "caf\u00e9 \u017fecret"]
    alerts = [al(output=s) for s in secrets] + [of(proc__cmdline=s) for s in secrets]
    alerts += [of(fd__name=s) for s in secrets] + [of(ka__uri=s) for s in secrets]
    path = write_lines(tmp_path / "s.json", [al(), *alerts])
    res = assert_same(path, min_vectorised=len(alerts) + 1)
    t = res.tables["alerts"]
    texts = [t.column(c).to_pylist() for c in ("output", "proc_cmdline", "fd_name", "ka_uri", "output_fields")]
    assert not any(TOKEN in (v or "") or "hunter2" in (v or "") for col in texts for v in col)


def test_escapes_send_output_fields_to_the_reference(tmp_path: Path) -> None:
    """Texts DuckDB escapes otherwise than orjson (``\\u000B``), and keys holding U+001F (split in the key list,
    which may only decline the row), are read as the reference reads them."""
    alerts = [of(proc__cmdline="a\u000bb"), of({"weird\u001fkey": "v"}), of({"a\u001fb": 1, "a": 2, "b": 3}),
              of({"k\u001f": "x", "password": "p"})]
    assert_same(write_lines(tmp_path / "e.json", [al(), *alerts]), min_vectorised=1)


# --- replacing rows -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("nulls", [False, True])
def test_replace_rows_is_replace_with_mask(nulls: bool) -> None:
    rng = random.Random(8)
    texts = [None if rng.random() < 0.1 else "x" * rng.randrange(0, 30) for _ in range(500)]
    for col in (pa.array(texts), pa.array(texts).slice(7, 300)):
        rows = np.sort(rng.sample(range(len(col)), 40))
        values = pa.array([None if nulls and k % 5 == 0 else f"new-{k}" for k in range(len(rows))])
        mask = np.zeros(len(col), dtype=bool)
        mask[rows] = True
        want = pc.replace_with_mask(col, pa.array(mask), values)
        assert falco_fast._replace_rows(col, rows, values).to_pylist() == want.to_pylist()
