"""kubeforensics: incident forensics for Kubernetes.

Audit logs, Tetragon process events, Hubble flows, Falco alerts and Kubernetes
Events/objects become typed tables in a case; correlation, detections and the
story reconstruct what happened.

>>> import kubeforensics as kf
>>> case = kf.Case.create("case-dir")            # doctest: +SKIP
>>> case.ingest(["sample_data/container-escape"])  # doctest: +SKIP
>>> case.timeline(namespace="default")           # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from kubeforensics.case import Case, open_case

# Heavier entry points are imported on first use, so `import kubeforensics` stays light
# (no papermill, ipywidgets or plotly until a report or a widget is asked for).
_LAZY = {
    "run_playbook": "kubeforensics.report",
    "investigate": "kubeforensics.widgets.dashboard",
    "simulate": "kubeforensics.simulate",
    "run_rules": "kubeforensics.detect",
    "build_story": "kubeforensics.correlate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kubeforensics' has no attribute {name!r}")


__all__ = ["Case", "__version__", "build_story", "investigate", "open_case", "run_playbook", "run_rules", "simulate"]
