"""Tuning: allow-lists, baselines and thresholds, shipped as ``tuning.yaml`` and overridable.

A user file (``--config PATH``) has the same keys as the shipped
``kubeforensics/detect/tuning.yaml``: a top-level key replaces the default list
or value; under ``extend:`` a key appends to the default list instead.  Two
more keys act on findings: ``disabled_rules`` (rule ids) and ``suppress``
(``{rule_id: [{column: glob, ...}, ...]}`` against the finding's
``namespace``/``pod``/``actor``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from kubeforensics.errors import InputError


@dataclass
class TuningConfig:
    """Allow-lists (lists of exact values or globs) and thresholds used by the rules."""

    lists: dict[str, list[Any]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    disabled_rules: set[str] = field(default_factory=set)
    suppress: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    origin: str = "defaults"

    @classmethod
    def defaults(cls) -> TuningConfig:
        """The shipped configuration (``kubeforensics/detect/tuning.yaml``)."""
        text = files("kubeforensics.detect").joinpath("tuning.yaml").read_text(encoding="utf-8")
        return cls.from_mapping(yaml.safe_load(text), origin="defaults")

    @classmethod
    def load(cls, path: str | Path | None = None) -> TuningConfig:
        """The shipped defaults, overridden by the YAML file at ``path`` when given.

        Raises
        ------
        InputError
            When the file is missing, is not YAML, or has a key of the wrong type.
        """
        base = cls.defaults()
        if path is None:
            return base
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise InputError(f"tuning config {p}: cannot read it ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise InputError(f"tuning config {p}: not valid YAML ({exc})") from exc
        return base.merged(data, origin=str(p))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "mapping") -> TuningConfig:
        cfg = cls(origin=origin)
        return cfg.merged(data, origin=origin)

    def merged(self, data: Mapping[str, Any], origin: str) -> TuningConfig:
        """A copy with ``data`` applied (replace top-level keys, append under ``extend``)."""
        if not isinstance(data, Mapping):
            raise InputError(f"tuning config {origin}: expected a mapping at the top level")
        out = TuningConfig(
            lists={k: list(v) for k, v in self.lists.items()},
            thresholds=dict(self.thresholds),
            disabled_rules=set(self.disabled_rules),
            suppress={k: list(v) for k, v in self.suppress.items()},
            origin=origin,
        )
        for key, value in data.items():
            if key == "thresholds":
                if not isinstance(value, Mapping):
                    raise InputError(f"tuning config {origin}: 'thresholds' must be a mapping")
                for k, v in value.items():
                    if not isinstance(v, (int, float)):
                        raise InputError(f"tuning config {origin}: threshold {k!r} must be a number, got {v!r}")
                    out.thresholds[k] = float(v)
            elif key == "disabled_rules":
                out.disabled_rules |= {str(v) for v in (value or [])}
            elif key == "suppress":
                if not isinstance(value, Mapping):
                    raise InputError(f"tuning config {origin}: 'suppress' must map rule ids to lists")
                for rid, entries in value.items():
                    out.suppress.setdefault(str(rid), []).extend(dict(e) for e in entries or [])
            elif key == "extend":
                for k, v in (value or {}).items():
                    if not isinstance(v, list):
                        raise InputError(f"tuning config {origin}: extend.{k} must be a list")
                    out.lists.setdefault(k, []).extend(v)
            else:
                if not isinstance(value, list):
                    raise InputError(f"tuning config {origin}: {key!r} must be a list (or put it under thresholds)")
                out.lists[key] = list(value)
        return out

    def list(self, name: str) -> list[Any]:
        """The list ``name``; raises ``KeyError`` naming the known lists when absent."""
        try:
            return self.lists[name]
        except KeyError:
            raise KeyError(f"tuning config has no list {name!r} (known: {', '.join(sorted(self.lists))})") from None

    def threshold(self, name: str, default: float) -> float:
        return self.thresholds.get(name, default)

    def matches(self, name: str, value: Any) -> bool:
        """Does ``value`` match an entry (exact or glob) of list ``name``?"""
        if value is None:
            return False
        v = str(value)
        return any(fnmatch.fnmatchcase(v, str(p)) for p in self.list(name))

    def suppressed(self, rule_id: str, finding: Mapping[str, Any]) -> bool:
        """Does a ``suppress`` entry of ``rule_id`` (or ``"*"``) match this finding?"""
        for entry in self.suppress.get(rule_id, []) + self.suppress.get("*", []):
            if entry and all(fnmatch.fnmatchcase(str(finding.get(k) or ""), str(g)) for k, g in entry.items()):
                return True
        return False
