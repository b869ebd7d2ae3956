"""One exception tree for the whole toolkit.

Every error says what was wrong, where (file, line, record) when that is known,
and what to do.  Third-party errors are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations


class KubeforensicsError(Exception):
    """Base class of every error raised by kubeforensics."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class InputError(KubeforensicsError):
    """Evidence could not be read at all (missing file, unknown format, unreadable)."""


class UnknownFormatError(InputError):
    """No reader recognises the file; it is reported and skipped, never guessed."""


class RecordError(KubeforensicsError):
    """One record is unusable.  Readers raise it; the caller quarantines the record.

    The message is the quarantine reason, e.g. ``"'time' is not a timestamp: 'yesterday'"``.
    """


class CaseError(KubeforensicsError):
    """A case directory is missing, malformed or used wrongly."""


class IntegrityError(CaseError):
    """Evidence or manifest does not match what was recorded."""


class CollectorError(KubeforensicsError):
    """A live collector (Kubernetes API, Elasticsearch) failed."""


class MissingDependencyError(KubeforensicsError):
    """An optional dependency is needed: ``pip install kubeforensics[extra]``."""
