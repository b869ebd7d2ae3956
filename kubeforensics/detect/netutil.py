"""Small helpers over addresses and names shared by the Python rules."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Iterable

import pandas as pd


def internal_mask(ips: pd.Series, cidrs: Iterable[str]) -> pd.Series:
    """True where the address is inside one of ``cidrs`` (unparseable or null -> True: not 'external')."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    cache: dict[str, bool] = {}

    def one(v: object) -> bool:
        if not isinstance(v, str) or not v:
            return True
        if v not in cache:
            try:
                a = ipaddress.ip_address(v)
            except ValueError:
                cache[v] = True
            else:
                cache[v] = any(a in n for n in nets if n.version == a.version)
        return cache[v]

    codes, uniques = pd.factorize(ips)
    vals = [one(u) for u in uniques]
    return pd.Series([vals[c] if c >= 0 else True for c in codes], index=ips.index, dtype=bool)


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def registered_domain(name: str) -> str:
    """The last two labels of a DNS name (``a.b.example.com.`` -> ``example.com``)."""
    labels = [x for x in name.rstrip(".").split(".") if x]
    return ".".join(labels[-2:]) if labels else ""


def to_ns(times: pd.Series):  # -> numpy int64 array
    """Nanoseconds since the epoch of a tz-aware (or naive UTC) datetime Series, whatever its unit."""
    t = pd.to_datetime(times, utc=True).dt.tz_convert(None).astype("datetime64[ns]")
    return t.to_numpy().astype("int64")
