"""Detections: rules that turn case tables into findings with ATT&CK techniques.

Two kinds of rules share one protocol (:class:`~kubeforensics.detect.model.Rule`):
declarative single-source rules shipped as YAML (``detect/rules/*.yaml``, a
small safe condition language) and Python rules that compute statistics or
correlate several sources.  Sigma rules for Kubernetes audit logs are loaded
from a folder (:func:`~kubeforensics.detect.sigma.load_sigma`).

>>> findings = run_rules(case.frames())                      # doctest: +SKIP
>>> findings[findings.severity >= "high"]                    # doctest: +SKIP

``RULES`` is the explicit registry of built-in rules (id -> rule).  Allow-lists
and thresholds live in :class:`TuningConfig` (shipped ``detect/tuning.yaml``).
"""

from __future__ import annotations

from kubeforensics.detect.conditions import ConditionError
from kubeforensics.detect.engine import empty_findings, load_rule_file, load_rules, run_rules
from kubeforensics.detect.frames import dedup_audit, make_frame
from kubeforensics.detect.model import FINDING_COLUMNS, Rule, RuleMeta, Severity
from kubeforensics.detect.tuning import TuningConfig

#: The built-in rule pack, id -> rule (YAML and Python rules).
RULES: dict[str, Rule] = load_rules()

__all__ = [
    "FINDING_COLUMNS",
    "RULES",
    "ConditionError",
    "Rule",
    "RuleMeta",
    "Severity",
    "TuningConfig",
    "dedup_audit",
    "empty_findings",
    "load_rule_file",
    "load_rules",
    "make_frame",
    "run_rules",
]
