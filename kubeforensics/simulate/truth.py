"""Ground truth: the attack steps and benign look-alikes, with the record ids that show them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeforensics.simulate.clock import rfc6

SOURCES = ("audit", "tetragon", "hubble", "falco", "k8s-events", "k8s-objects")


@dataclass
class Step:
    step: int
    time: int
    technique: str
    tactic: str
    summary: str
    entities: dict[str, Any]
    evidence: dict[str, list[str]] = field(default_factory=dict)

    def add(self, source: str, ident: str) -> None:
        ids = self.evidence.setdefault(source, [])
        if ident not in ids:
            ids.append(ident)

    def to_json(self, with_step: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"step": self.step} if with_step else {}
        d.update({
            "time": rfc6(self.time),
            "technique": self.technique,
            "tactic": self.tactic,
            "summary": self.summary,
            "entities": self.entities,
            "sources": [s for s in SOURCES if self.evidence.get(s)],
            "evidence": {s: self.evidence[s] for s in SOURCES if self.evidence.get(s)},
        })
        if not with_step:
            d.pop("technique")
            d.pop("tactic")
        return d


@dataclass
class GroundTruth:
    scenario: str
    seed: int
    steps: list[Step] = field(default_factory=list)
    lookalikes: list[Step] = field(default_factory=list)
    current: Step | None = None

    def begin(self, t: int, technique: str, tactic: str, summary: str, **entities: Any) -> Step:
        """Open a step: every record emitted until :meth:`end` is its evidence."""
        s = Step(len(self.steps) + 1, t, technique, tactic, summary, {k: v for k, v in entities.items() if v})
        self.steps.append(s)
        self.current = s
        return s

    def lookalike(self, t: int, summary: str, **entities: Any) -> Step:
        s = Step(0, t, "", "", summary, {k: v for k, v in entities.items() if v})
        self.lookalikes.append(s)
        self.current = s
        return s

    def end(self) -> None:
        self.current = None

    def record(self, source: str, ident: str) -> None:
        if self.current is not None:
            self.current.add(source, ident)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "steps": [s.to_json() for s in self.steps],
            "benign_lookalikes": [s.to_json(with_step=False) for s in self.lookalikes],
        }
