"""Playbooks and reports: guided notebooks, headless runs with papermill, self-contained HTML/Markdown.

>>> from kubeforensics.report import run_playbook, render_html
>>> res = run_playbook("container-escape", "case-dir")          # doctest: +SKIP
>>> res.answers["pod_creation"]["facts"]["user"]                # doctest: +SKIP

Inside a playbook:

>>> from kubeforensics.report import start
>>> from kubeforensics.report.questions import escape
>>> inv = start(case, playbook="container-escape", run_id=run_id)   # doctest: +SKIP
>>> inv.ask("pod_creation", escape.pod_creation(inv))              # doctest: +SKIP
>>> inv.conclude()                                                 # doctest: +SKIP
"""

from __future__ import annotations

from kubeforensics.report.answers import Answer, FrameView, record_answers, recorded_answers
from kubeforensics.report.indicators import indicators
from kubeforensics.report.render import render_html, render_markdown
from kubeforensics.report.runner import PlaybookError, PlaybookResult, list_playbooks, run_playbook
from kubeforensics.report.session import Investigation, start

__all__ = ["Answer", "FrameView", "Investigation", "PlaybookError", "PlaybookResult", "indicators", "list_playbooks",
           "record_answers", "recorded_answers", "render_html", "render_markdown", "run_playbook", "start"]
