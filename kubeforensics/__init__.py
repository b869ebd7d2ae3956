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

from kubeforensics.case import Case, open_case  # noqa: E402

__all__ = ["Case", "__version__", "open_case"]
