"""Evidence readers: one module per format, one protocol (see :mod:`.base`).

``READERS`` is the explicit registry, in sniffing order (a record is offered
to each reader in turn; the first that claims it reads it).  Third-party
readers can be added through the ``kubeforensics.readers`` entry-point group.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from kubeforensics.sources.audit import AuditReader
from kubeforensics.sources.base import (
    FileAccount,
    FileIngest,
    Reader,
    ReadResult,
    detect_format,
    evidence_files,
    read_file,
    read_frames,
)
from kubeforensics.sources.falco import FalcoReader
from kubeforensics.sources.hubble import HubbleReader
from kubeforensics.sources.k8s_events import K8sEventsReader
from kubeforensics.sources.k8s_objects import K8sObjectsReader
from kubeforensics.sources.records import Quarantined, Record, iter_records
from kubeforensics.sources.tetragon import TetragonReader

READERS: dict[str, Reader] = {
    r.name: r
    for r in (
        AuditReader(),
        TetragonReader(),
        HubbleReader(),
        FalcoReader(),
        K8sEventsReader(),
        K8sObjectsReader(),
    )
}
FORMATS: tuple[str, ...] = tuple(READERS)


def load_plugins() -> None:
    """Register readers from the ``kubeforensics.readers`` entry-point group (called explicitly, never at import)."""
    for ep in entry_points(group="kubeforensics.readers"):
        reader = ep.load()()
        READERS.setdefault(reader.name, reader)


__all__ = [
    "FORMATS",
    "READERS",
    "FileAccount",
    "FileIngest",
    "Quarantined",
    "ReadResult",
    "Reader",
    "Record",
    "detect_format",
    "evidence_files",
    "iter_records",
    "load_plugins",
    "read_file",
    "read_frames",
]
