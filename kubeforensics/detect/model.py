"""The vocabulary of detections: severities, the rule protocol, the findings contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from kubeforensics.detect.tuning import TuningConfig


class Severity(IntEnum):
    """Ordered severities: ``info < low < medium < high < critical``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        """Severity from a name (any case, Sigma's ``informational`` too) or a number.

        Raises
        ------
        ValueError
            When ``value`` names no severity.
        """
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        name = str(value).strip().lower()
        name = {"informational": "info", "information": "info", "warning": "medium"}.get(name, name)
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {value!r}: use one of {', '.join(s.label for s in cls)}"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


#: The findings contract (fixed): every ``run_rules`` result has these columns, in this order.
FINDING_COLUMNS: tuple[str, ...] = (
    "rule_id",
    "title",
    "severity",
    "techniques",
    "tactic",
    "first_seen",
    "last_seen",
    "namespace",
    "pod",
    "actor",
    "event_ids",
    "count",
    "summary",
    "description",
    "source",
)

#: Columns of the hit frame a rule returns (one row per matching event).
HIT_COLUMNS: tuple[str, ...] = ("time", "event_id", "namespace", "pod", "actor", "key", "detail")


@dataclass(frozen=True)
class RuleMeta:
    """What every rule declares about itself."""

    id: str
    title: str
    description: str
    severity: Severity
    techniques: tuple[str, ...]
    tactic: str
    sources: tuple[str, ...]  # canonical tables read
    fields: tuple[str, ...]  # "table.column" read
    false_positives: str = ""
    origin: str = "builtin"  # builtin | sigma:<file>


@runtime_checkable
class Rule(Protocol):
    """One detection.  ``evaluate`` returns a hit frame with :data:`HIT_COLUMNS`.

    ``key`` groups hits into findings (hits of one rule with one key aggregate
    into one finding); ``detail`` is the one-sentence who/what/where of the hit.
    A rule whose sources are absent (empty frames) returns an empty frame.
    """

    @property
    def meta(self) -> RuleMeta: ...  # read-only: a plain attribute (YamlRule) or a property (PyRule)

    def evaluate(self, tables: Mapping[str, pd.DataFrame], config: TuningConfig) -> pd.DataFrame: ...

    def examples(self) -> Mapping[str, Sequence[Mapping[str, list[dict[str, Any]]]]]:
        """``{"positive": [frames...], "negative": [...]}``; each frames is ``{table: [row dicts]}``."""
        ...


@dataclass
class Examples:
    positive: list[dict[str, list[dict[str, Any]]]] = field(default_factory=list)
    negative: list[dict[str, list[dict[str, Any]]]] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, list[dict[str, Any]]]]]:
        return {"positive": self.positive, "negative": self.negative}


def empty_hits() -> pd.DataFrame:
    """An empty hit frame with the right columns."""
    return pd.DataFrame({c: pd.Series([], dtype="datetime64[ns, UTC]" if c == "time" else object) for c in HIT_COLUMNS})
