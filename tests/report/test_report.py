"""The report: one self-contained HTML file (plots render offline in Chromium, payloads stay text),
Markdown for tickets, the fixed sections and the manifest hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubeforensics.cli import main
from tests.report.conftest import BROWSER_ARGS, CHROMIUM, XSS_ARG, XSS_POD

pytest.importorskip("papermill", reason="reports need papermill")


@pytest.fixture(scope="module")
def escape_report(scenario_cases, tmp_path_factory):
    case, truth = scenario_cases("container-escape")
    out = tmp_path_factory.mktemp("reports") / "triage.html"
    assert main(["report", "--case", str(case.path), "--out", str(out)]) == 0
    return case, truth, out, out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile_report(hostile_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "hostile.html"
    assert main(["report", "--case", str(hostile_case.path), "--playbook", "container-escape",
                 "--out", str(out)]) == 0
    return out, out.read_text(encoding="utf-8")


def test_html_is_self_contained_with_the_fixed_sections(escape_report):
    case, truth, out, doc = escape_report
    assert doc.count("plotly.js v") == 1, "plotly.js must be inlined exactly once"
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", doc), "no CDN or remote resource"
    assert "application/vnd.jupyter.widget-state" not in doc and "widget-view" not in doc
    for section in ("kf-answers", "kf-bookmarks", "kf-story", "kf-findings", "kf-indicators", "kf-manifest"):
        assert f"id='{section}'" in doc
    sha = case.log.last_manifest_sha()
    assert doc.count(sha) >= 2  # header and manifest section
    for e in case.manifest["evidence"]:
        assert e["sha256"] in doc
    assert "T1611" in doc and "KF-" in doc  # findings with ATT&CK ids
    c2 = next(s for s in truth["steps"] if s["technique"] == "T1071.001")["entities"]["ip"]
    assert c2 in doc[doc.index("id='kf-indicators'"):]
    assert "<details class='kf-code'>" in doc  # code folded away by default
    assert out.stat().st_size < 8_000_000


def test_markdown_report_for_tickets(scenario_cases, tmp_path):
    case, truth = scenario_cases("container-escape")
    out = tmp_path / "ticket.md"
    assert main(["report", "--case", str(case.path), "--playbook", "container-escape", "--out", str(out),
                 "--format", "markdown"]) == 0
    text = out.read_text()
    assert text.startswith("# kubeforensics report: container-escape")
    assert case.log.last_manifest_sha() in text
    for title in ("## Answers of this run", "## Attack story", "## Findings (MITRE ATT&CK)", "## Indicators",
                  "## Evidence manifest"):
        assert title in text
    user = truth["steps"][0]["entities"]["user"]
    assert user in text and "<script" not in text


def test_attacker_text_is_escaped_in_html(hostile_report):
    _, doc = hostile_report
    assert XSS_POD not in doc and XSS_ARG not in doc
    assert "&lt;script&gt;window.__kf_xss=1&lt;/script&gt;diag" in doc
    assert not re.search(r"<img[^>]*onerror", doc)
    assert not re.search(r"<script>window\.__kf_xss", doc)


def test_cli_reports_a_failed_playbook_in_one_line(hostile_case, tmp_path, capsys):
    rc = main(["report", "--case", str(hostile_case.path), "--playbook", "nope", "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown playbook 'nope'" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- real browser
def _browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    return sync.sync_playwright()


def _open(pw, path: Path):
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
    page = browser.new_page()
    blocked: list[str] = []
    dialogs: list[str] = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    return browser, page, blocked, dialogs


def test_report_renders_plots_offline_in_chromium(escape_report):
    _, _, out, _ = escape_report
    with _browser() as pw:
        browser, page, blocked, _ = _open(pw, out)
        try:
            page.wait_for_selector(".plotly-graph-div .main-svg", timeout=20_000)
            assert page.locator(".plotly-graph-div .main-svg").count() >= 1
            assert page.locator("#kf-findings table tr").count() > 5
            assert blocked == []
        finally:
            browser.close()


def test_payloads_show_as_text_and_execute_nothing_in_chromium(hostile_report):
    out, _ = hostile_report
    with _browser() as pw:
        browser, page, _, dialogs = _open(pw, out)
        try:
            page.wait_for_load_state("load")
            page.wait_for_timeout(500)
            assert page.evaluate("window.__kf_xss === undefined")
            assert dialogs == []
            body = page.inner_text("body")
            assert XSS_POD in body  # shown as text
            assert page.locator("img[onerror]").count() == 0
        finally:
            browser.close()


def test_param_cannot_override_runner_options(tmp_path) -> None:
    import subprocess
    import sys

    import kubeforensics as kf

    case = kf.Case.create(tmp_path / "case")
    for name in ("timeout", "output", "kernel_name"):
        r = subprocess.run([sys.executable, "-m", "kubeforensics", "report", "--case", str(case.path),
                            "--out", str(tmp_path / "r.html"), "--param", f"{name}=1"],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 2 and f"'{name}' is an option of the runner" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "r.html").exists()
