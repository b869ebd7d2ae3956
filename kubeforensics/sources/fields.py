"""Typed field access for readers: every coercion either succeeds or raises RecordError with a reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from kubeforensics.errors import RecordError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# pandas/Arrow nanosecond timestamps cover 1677-09-21 .. 2262-04-11.
_MIN_NS = -9_223_372_036_854_775_807
_MAX_NS = 9_223_372_036_854_775_807
_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})?$"
)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def ts(value: Any, field: str, *, required: bool = False) -> int | None:
    """RFC 3339 / ISO 8601 string (0-9 fractional digits), or epoch number, to UTC nanoseconds.

    Numbers are taken as nanoseconds when larger than 1e14, else seconds.
    Returns None for null/absent values unless ``required``.
    """
    if value is None or value == "":
        if required:
            raise RecordError(f"'{field}' is missing")
        return None
    if isinstance(value, bool):
        raise RecordError(f"'{field}' is a boolean, not a timestamp")
    if isinstance(value, (int, float)):
        ns = int(value) if abs(value) > 1e14 else int(value * 1_000_000_000)
        if not (_MIN_NS < ns < _MAX_NS):
            raise RecordError(f"'{field}' is out of the representable time range: {value!r}")
        return ns
    if not isinstance(value, str):
        raise RecordError(f"'{field}' is {type(value).__name__}, not a timestamp")
    ns_or_problem = _text_ns(value)
    if ns_or_problem.__class__ is int:
        return ns_or_problem  # type: ignore[return-value]
    raise RecordError(f"'{field}' {ns_or_problem}")


@lru_cache(maxsize=16384)
def _text_ns(value: str) -> int | str:
    """UTC nanoseconds of a timestamp text, or what is wrong with it (cached: a record's timestamps,
    and second-resolution ones across records, repeat)."""
    m = _TS_RE.match(value.strip())
    if not m:
        return f"is not a timestamp: {value[:80]!r}"
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    except ValueError as exc:
        return f"is not a valid date: {value[:80]!r} ({exc})"
    secs = (dt - _EPOCH).days * 86400 + (dt - _EPOCH).seconds
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[-2:])
        secs -= sign * (hh * 3600 + mm * 60)
    ns = secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    if not (_MIN_NS < ns < _MAX_NS):
        return f"is out of the representable time range (1677-2262): {value[:40]!r}"
    return ns


def integer(value: Any, field: str, *, bits: int = 64) -> int | None:
    """An integer that may arrive as a JSON number or a decimal string (64-bit values do)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordError(f"'{field}' is a boolean, not an integer")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str):
        try:
            n = int(value.strip())
        except ValueError as exc:
            raise RecordError(f"'{field}' is not an integer: {value[:40]!r}") from exc
    else:
        raise RecordError(f"'{field}' is {type(value).__name__}, not an integer")
    if bits == 64 and _INT64_MAX < n <= _UINT64_MAX:
        n -= 2**64  # unsigned 64-bit values (e.g. auid 4294967295 is fine; -1 as uint64 is not)
    limit = 2 ** (bits - 1)
    if not (-limit <= n < limit):
        raise RecordError(f"'{field}' does not fit in {bits} bits: {n}")
    return n


def text(value: Any, field: str) -> str | None:
    """A string field; numbers are accepted and turned into text, objects are an error."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    raise RecordError(f"'{field}' is {type(value).__name__}, not a string")


def boolean(value: Any, field: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RecordError(f"'{field}' is {type(value).__name__}, not a boolean")


def strings(value: Any, field: str) -> list[str] | None:
    """A list of strings; a single string becomes a one-element list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise RecordError(f"'{field}' is {type(value).__name__}, not a list")
    out: list[str] = []
    for v in value:
        t = text(v, field)
        if t is not None:
            out.append(t)
    return out


def obj(value: Any, field: str) -> Mapping[str, Any]:
    """A JSON object or an empty mapping for null/absent; anything else is an error."""
    if value.__class__ is dict:  # (what JSON gives: skips typing.Mapping's slow isinstance)
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecordError(f"'{field}' is {type(value).__name__}, not an object")
    return value


def as_json(value: Any) -> str | None:
    """Serialise a value to JSON text (for ``json`` columns); None stays None."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise RecordError(f"value cannot be stored as JSON: {exc}") from exc


def container_hex(container_id: str | None) -> str | None:
    """``containerd://<hex>`` / ``docker://<hex>`` / bare hex to bare lowercase hex."""
    if not container_id:
        return None
    cid = container_id.split("://", 1)[-1].strip().lower()
    return cid or None
