"""Run a playbook headless with papermill and collect the answers it recorded in the case.

A playbook is a notebook under ``playbooks/`` with a cell tagged ``parameters``
(papermill).  The runner always passes ``case`` (the case directory),
``run_id`` (ties the answers in the case log to this run) and whatever
parameters the caller gives (``since``, ``until``, ``seed``, thresholds).

>>> res = run_playbook("container-escape", "cases/incident-42")   # doctest: +SKIP
>>> res.notebook, res.answers["pod_creation"]["user"]              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeforensics.errors import KubeforensicsError, MissingDependencyError

log = logging.getLogger(__name__)

#: Playbooks shipped with the project, in the order the CLI lists them.
PLAYBOOKS = ("triage", "pod-deep-dive", "container-escape", "miner", "stolen-credentials", "rbac-persistence",
             "ssrf-dns-exfil")
DEFAULT_TIMEOUT = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class PlaybookError(KubeforensicsError):
    """A playbook is unknown, or one of its cells failed (the message names playbook, cell and exception)."""

    def __init__(self, message: str, *, hint: str | None = None, playbook: str = "", cell: int | None = None,
                 exception: str = "", notebook: Path | None = None) -> None:
        super().__init__(message, hint=hint)
        self.playbook, self.cell, self.exception, self.notebook = playbook, cell, exception, notebook


@dataclass
class PlaybookResult:
    """What a headless run produced: the executed notebook and the answers it recorded."""

    playbook: str
    notebook: Path
    run_id: str
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __iter__(self):  # ``path, answers = run_playbook(...)``
        return iter((self.notebook, self.answers))


def playbook_dir() -> Path:
    """The folder of the playbooks (``KUBEFORENSICS_PLAYBOOKS`` overrides the project's ``playbooks/``)."""
    env = os.environ.get("KUBEFORENSICS_PLAYBOOKS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "playbooks"


def list_playbooks() -> dict[str, Path]:
    """Playbook names and their notebook files."""
    d = playbook_dir()
    found = {p.stem: p for p in sorted(d.glob("*.ipynb"))} if d.is_dir() else {}
    order = {n: i for i, n in enumerate(PLAYBOOKS)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def playbook_path(name: str | Path) -> Path:
    """The notebook of playbook ``name`` (a name from :func:`list_playbooks` or a path to a notebook).

    Raises
    ------
    PlaybookError
        When there is no such playbook.
    """
    p = Path(name)
    if p.suffix == ".ipynb" and p.is_file():
        return p
    books = list_playbooks()
    if str(name) in books:
        return books[str(name)]
    raise PlaybookError(f"unknown playbook {str(name)!r}", playbook=str(name),
                        hint=f"choose one of {', '.join(books) or '(none found in ' + str(playbook_dir()) + ')'}")


def _case_path(case: Any) -> Path:
    return Path(getattr(case, "path", case)).resolve()


def run_playbook(name: str | Path, case: Any, *, output: str | Path | None = None,
                 timeout: int = DEFAULT_TIMEOUT, kernel_name: str | None = None, **params: Any) -> PlaybookResult:
    """Execute a playbook headless on a case and return the executed notebook and its answers.

    Parameters
    ----------
    name : str or Path
        A playbook name (``triage``, ``pod-deep-dive``, ``container-escape``, ...) or a notebook path.
    case : Case or path
        The case to investigate (its directory is passed to the notebook as ``case``).
    output : path, optional
        Where to write the executed notebook; default ``CASE/reports/<name>-<time>-<run>.ipynb``.
    timeout : int
        Seconds allowed per cell.
    kernel_name : str, optional
        Jupyter kernel; default ``python3``.
    **params
        Notebook parameters: ``since``, ``until``, ``seed`` and the playbook's thresholds.  Unknown
        names are passed anyway (papermill warns).

    Returns
    -------
    PlaybookResult
        ``notebook`` (path of the executed notebook) and ``answers`` (question key -> recorded facts).

    Raises
    ------
    PlaybookError
        Unknown playbook, or a failing cell: the message names the playbook, the cell and the exception.
    """
    try:
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError
    except ImportError as exc:  # pragma: no cover - papermill is a core dependency of reports
        raise MissingDependencyError("running playbooks needs papermill",
                                     hint="pip install 'kubeforensics[notebooks]'") from exc
    from kubeforensics.report.answers import recorded_answers

    src = playbook_path(name)
    book = src.stem
    case_dir = _case_path(case)
    if not (case_dir / "case.json").is_file():
        raise PlaybookError(f"{case_dir}: not a kubeforensics case", playbook=book,
                            hint="create one with kubeforensics ingest PATH --case DIR")
    run_id = params.pop("run_id", None) or uuid.uuid4().hex[:12]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(output) if output else case_dir / "reports" / f"{book}-{stamp}-{run_id}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = {"case": str(case_dir), "run_id": run_id,
                  **{k: _param(v) for k, v in params.items()}}
    env_before = os.environ.get("KUBEFORENSICS_WIDGETS")
    os.environ["KUBEFORENSICS_WIDGETS"] = "static"  # headless: never widgets, one plotly.js
    t0 = datetime.now(UTC)
    try:
        pm.execute_notebook(str(src), str(out), parameters=parameters, kernel_name=kernel_name or "python3",
                            language="python", progress_bar=False, log_output=False, execution_timeout=timeout,
                            cwd=str(src.parent), report_mode=False)
    except PapermillExecutionError as exc:
        raise _cell_error(book, src, out, exc) from None
    except Exception as exc:  # kernel died, timeout, missing kernel: still name the playbook
        if exc.__class__.__module__.startswith(("papermill", "nbclient", "jupyter_client")):
            raise PlaybookError(f"playbook {book!r} could not run: {exc.__class__.__name__}: "
                                f"{_one_line(str(exc))}", playbook=book, exception=exc.__class__.__name__,
                                notebook=out) from None
        raise
    finally:
        if env_before is None:
            os.environ.pop("KUBEFORENSICS_WIDGETS", None)
        else:
            os.environ["KUBEFORENSICS_WIDGETS"] = env_before
    seconds = (datetime.now(UTC) - t0).total_seconds()
    answers = recorded_answers(case_dir, run_id=run_id)
    log.info("playbook %s ran in %.1f s: %d answers, notebook %s", book, seconds, len(answers), out)
    return PlaybookResult(book, out, run_id, answers, parameters, seconds)


def _param(v: Any) -> Any:
    """papermill parameters must be JSON-like: times and paths become strings."""
    if v is None or isinstance(v, (bool, int, float, str, list, dict)):
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _one_line(s: str, width: int = 300) -> str:
    s = " ".join(_ANSI.sub("", s).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _cell_error(book: str, src: Path, out: Path, exc: Any) -> PlaybookError:
    """The failing cell as a one-line reason: playbook, cell number and first code line, exception."""
    import nbformat

    index = getattr(exc, "cell_index", None)
    source = getattr(exc, "source", "") or ""
    # papermill numbers cells of the executed notebook (with its injected cell); map back to the playbook
    number = index
    try:
        nb = nbformat.read(str(out), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in
                c.get("metadata", {}).get("tags", [])]
        for n, c in enumerate(code, start=1):
            if c.source == source:
                number = n
                break
    except (OSError, ValueError) as err:  # the notebook may not have been written: keep papermill's index
        log.debug("could not read %s to number the failing cell: %s", out, err)
    first = next((ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    ename, evalue = getattr(exc, "ename", "Exception"), _one_line(str(getattr(exc, "evalue", "")))
    msg = (f"playbook {book!r} failed in code cell {number} (`{_one_line(first, 80)}`): {ename}: {evalue}")
    return PlaybookError(msg, playbook=book, cell=number, exception=f"{ename}: {evalue}", notebook=out,
                         hint=f"the partly executed notebook is {out}")
