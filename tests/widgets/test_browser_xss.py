"""Real-browser XSS test of the quickstart notebook (issue 10, "Safe HTML").

JupyterLab on loopback (the ``lab`` fixture of ``test_browser.py``) serves the quickstart
notebook, but the sample evidence folder it reads (``sample_data/container-escape``
relative to the notebook) is replaced by the hostile incident of
``tests/hardening/hostile_case.py`` -- script and event-handler payloads in pod names,
labels, process arguments, URLs, DNS names, user agents, Falco outputs and events --
plus one Kubernetes Event whose payloads set a window flag instead of calling ``alert``.
Debian's Chromium, driven by Playwright, runs every cell; the test then asserts that no
dialog opened, no flag was set in any frame, no payload element (``<img src=x>``,
``<svg onload>``, ``<iframe srcdoc>``, ``javascript:`` link, payload ``<script>``)
exists in the page, and the payloads are shown, literally, as visible text of the
rendered outputs.  A screenshot is written to pytest's tmp dir (path printed).
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from tests.hardening.hostile_case import IMG, MARKERS, POD, SCRIPT, make_hostile_evidence
from tests.widgets.test_browser import CHROMIUM, FLAGS, lab  # noqa: F401 - lab is a fixture used by name

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed "
                       "(apt-get install -y chromium; .ci/run installs it)"),
    # checked before the lab fixture starts JupyterLab for nothing
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright)"),
]

#: Payloads that set ``window.__xss`` when executed (no dialog: caught by the flag check).
FLAG_IMG = "<img src=x onerror=window.__xss=1>"
FLAG_SCRIPT = "<script>window.__xss=2</script>"

#: Elements that exist only if a payload was parsed as HTML instead of shown as text.
INJECTED = ('img[src="x"], svg[onload], iframe[srcdoc], [onerror], [onload], '
            'a[href^="javascript:" i], iframe[src^="javascript:" i]')
PROBE = """(sel) => {
  const scripts = [...document.querySelectorAll('script')].filter(s => /alert\\(1\\)|__xss/.test(s.textContent));
  return {flag: window.__xss === undefined ? null : String(window.__xss),
          injected: [...document.querySelectorAll(sel)].map(e => e.outerHTML.slice(0, 200)),
          scripts: scripts.map(s => s.outerHTML.slice(0, 200))};
}"""


def _flag_event() -> dict:
    """A Kubernetes Event whose attacker-controlled text sets ``window.__xss`` if it ever runs."""
    t = "2026-03-02T12:00:07.000000Z"
    return {"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "flag-event.1", "namespace": "shop", "uid": "ev-flag", "creationTimestamp": t},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": f"web-{FLAG_IMG}", "uid": "pod-uid-2"},
            "reason": f"BackOff{FLAG_SCRIPT}", "message": f"Back-off restarting {FLAG_IMG} {FLAG_SCRIPT}",
            "source": {"component": "kubelet", "host": "worker-1"}, "firstTimestamp": t, "lastTimestamp": t,
            "count": 1, "type": "Warning"}


def _hostile_sample(folder) -> None:
    """Replace ``folder`` (the notebook's sample evidence) with the hostile incident plus the flag event."""
    shutil.rmtree(folder, ignore_errors=True)
    make_hostile_evidence(folder)
    with (folder / "k8s-events.json").open("a", encoding="utf-8") as f:
        f.write(json.dumps(_flag_event()) + "\n")


def test_quickstart_shows_hostile_payloads_as_text(lab, tmp_path):  # noqa: F811 - lab is the imported fixture
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    url, token = lab
    # the lab fixture serves tmp_path/root; the notebook reads sample_data/container-escape under it
    _hostile_sample(tmp_path / "root" / "sample_data" / "container-escape")
    shot = tmp_path / "quickstart-xss.png"
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})

            def on_dialog(dialog) -> None:
                dialogs.append(f"{dialog.type}: {dialog.message}")
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.goto(f"{url}/lab/tree/notebooks/quickstart.ipynb?token={token}")
            page.wait_for_function(
                "() => { const s = document.querySelector('#jp-main-statusbar');"
                " return s && /\\|\\s*Idle/.test(s.innerText); }", timeout=120_000)
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            # the dashboard's event table is the last output; then every cell must have finished
            rows = page.locator(".kf-event-rows tbody tr[data-key]")
            rows.first.wait_for(state="visible", timeout=120_000)
            page.wait_for_function(
                "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];"
                " return p.length >= 5 && p.every(e => /\\[\\d+\\]/.test(e.innerText)); }", timeout=60_000)

            # visible text of every output, each brought on screen first (JupyterLab renders lazily)
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            texts = []
            for i in range(cells.count()):
                cells.nth(i).scroll_into_view_if_needed()
                texts.append(cells.nth(i).locator(".jp-Cell-outputArea").first.inner_text())
            shown = "\n".join(texts)
            assert "Traceback" not in shown, shown[-3000:]
            assert "'records': 11, 'ingested': 11, 'quarantined': 0" in texts[0]  # 10 hostile records + the flag event
            assert f"web-{SCRIPT}" in texts[2] and f"dev-{IMG}" in texts[2]  # findings table: pod, actor
            for marker in MARKERS:  # the dashboard shows the literal payloads as text
                assert marker in texts[-1]
            table_text = page.locator(".kf-event-rows").first.inner_text()
            assert POD in table_text and f"dev-{IMG}" in table_text, table_text[:2000]
            # the flag event's row, shown as text (the table lists every event of the small case)
            assert "k8s-events" in table_text and FLAG_IMG in table_text, table_text[:2000]

            # click a row whose record carries a payload: the details pane shows it as text too
            hostile_row = rows.filter(has_text=SCRIPT).first
            hostile_row.click()
            details = page.locator(".kf-details-pane").filter(has_text="raw record (redacted)").first
            details.wait_for(state="visible", timeout=30_000)
            assert SCRIPT in details.inner_text()
            page.locator(".lm-TabBar-tabLabel:text-is('Process tree')").first.click()
            tree = page.locator(".kf-process-tree").first
            tree.locator(".kf-node").first.wait_for(state="visible", timeout=30_000)
            assert "/bin/sh" in tree.inner_text()
            for tab in ("Flow map", "Pivot", "Bookmarks"):  # render every view of the hostile case
                page.locator(f".lm-TabBar-tabLabel:text-is('{tab}')").first.click()
                page.wait_for_timeout(400)
            page.wait_for_timeout(500)  # give any injected handler a chance to fire

            for frame in page.frames:  # nothing ran and nothing was parsed as HTML, in any frame
                probe = frame.evaluate(PROBE, INJECTED)
                assert probe == {"flag": None, "injected": [], "scripts": []}, (frame.url, probe)
            page.locator(".lm-TabBar-tabLabel:text-is('Events')").first.click()
            details.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=False)
            print(f"screenshot: {shot}")

            # positive control: the same checks do see a payload that is parsed as HTML, and an alert
            page.evaluate("() => { const d = document.createElement('div'); d.id = 'kf-xss-control';"
                          " d.innerHTML = '<img src=x onerror=window.__xss=1>'; document.body.append(d);"
                          " setTimeout(() => alert('control'), 0); }")
            page.wait_for_function("() => window.__xss !== undefined", timeout=10_000)
            control = page.main_frame.evaluate(PROBE, INJECTED)
            assert control["flag"] == "1" and len(control["injected"]) == 1, control
            page.wait_for_timeout(300)
        finally:
            browser.close()
    assert dialogs == ["alert: control"]  # only the positive control's: no payload opened a dialog
    assert shot.stat().st_size > 10_000
