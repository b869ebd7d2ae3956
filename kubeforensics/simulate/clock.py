"""Time formatting exactly as each tool writes it, and seeded identifiers.

All times inside the simulator are ``int`` nanoseconds since the epoch (UTC).
Formatting is cached per whole second so that millions of records format fast.
"""

from __future__ import annotations

import base64
import random
import re
from datetime import UTC, datetime

NS = 1_000_000_000
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_SEC_CACHE: dict[int, str] = {}


def _second(sec: int) -> str:
    s = _SEC_CACHE.get(sec)
    if s is None:
        if len(_SEC_CACHE) > 200_000:
            _SEC_CACHE.clear()
        s = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SEC_CACHE[sec] = s
    return s


def rfc9(t: int) -> str:
    """RFC 3339 with 9 fractional digits and ``Z`` (Tetragon, Hubble, Falco ``time``)."""
    return f"{_second(t // NS)}.{t % NS:09d}Z"


def rfc6(t: int) -> str:
    """RFC 3339 with 6 fractional digits and ``Z`` (audit timestamps, Event ``eventTime``)."""
    return f"{_second(t // NS)}.{(t % NS) // 1000:06d}Z"


def rfc0(t: int) -> str:
    """RFC 3339 in whole seconds (Event first/lastTimestamp, object metadata)."""
    return f"{_second(t // NS)}Z"


def parse_duration(text: str) -> int:
    """``7d``, ``36h``, ``90m``, ``2w``, ``600s`` as nanoseconds: a whole positive number and one unit, nothing else.

    Raises ``ValueError`` with a message fit for a usage error otherwise.
    """
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration: use a whole number and one unit "
                         f"(s, m, h, d, w), e.g. 7d, 36h, 90m")
    n = int(m.group(1)) * DURATION_UNITS[m.group(2)]
    if n <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return n * NS


def falco_prefix(t: int) -> str:
    """The time at the start of a Falco ``output`` (``time_format_iso_8601: true``)."""
    return f"{_second(t // NS)}.{t % NS:09d}+0000"


def exec_id(node: str, ktime: int, pid: int) -> str:
    """Tetragon ``exec_id``: base64 of ``node:ktime:pid``."""
    return base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()


ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes generated names


class Ids:
    """Identifiers drawn from one seeded generator (never from the wall clock or os.urandom)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        h = self.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"

    def suffix(self, n: int = 5) -> str:
        return "".join(self.rng.choice(ALNUM) for _ in range(n))

    def rs_hash(self) -> str:
        return "".join(self.rng.choice(ALNUM) for _ in range(self.rng.choice((9, 10))))

    def container_id(self) -> str:
        return self.hex(64)

    def jitter(self, mean_ns: int, spread: float = 0.2) -> int:
        return max(1, int(mean_ns * (1 + self.rng.uniform(-spread, spread))))
