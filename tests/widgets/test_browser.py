"""A real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright.

Opens notebooks/quickstart.ipynb, runs every cell, and checks that the timeline
plot, the process tree and the event table render and that clicking a table row
shows its details.  A screenshot is written to pytest's tmp dir (path printed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.widgets.conftest import write_escape_evidence

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed "
                                "(apt-get install -y chromium; .ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a temp root with the quickstart notebook and the sample data; yields (url, token)."""
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", root / "notebooks" / "quickstart.ipynb")
    sample = ROOT / "sample_data" / "container-escape"
    if sample.is_dir():
        shutil.copytree(sample, root / "sample_data" / "container-escape")
    else:  # the hand-made escape case until the generated sample data is committed
        write_escape_evidence(root / "sample_data" / "container-escape")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
           "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path / "tmp")}  # the notebook's case goes there, not /tmp
    (tmp_path / "tmp").mkdir()
    env.pop("KUBEFORENSICS_WIDGETS", None)
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - outlives this block: closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_quickstart_renders_in_jupyterlab(lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    url, token = lab
    shot = tmp_path / "quickstart-jupyterlab.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(f"{url}/lab/tree/notebooks/quickstart.ipynb?token={token}")
            # the toolbar says idle before a kernel exists: wait for the status bar's kernel "Idle"
            page.wait_for_function(
                "() => { const s = document.querySelector('#jp-main-statusbar');"
                " return s && /\\|\\s*Idle/.test(s.innerText); }", timeout=120_000)
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            table_row = page.locator(".kf-event-rows tbody tr[data-key]").first
            table_row.wait_for(state="visible", timeout=240_000)
            # JupyterLab renders cells lazily: bring the dashboard's timeline on screen before looking at it
            page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            points = page.locator(".js-plotly-plot .scatterlayer .point")
            points.first.wait_for(state="attached", timeout=60_000)
            assert points.count() >= 10  # events (or, at density, the notable ones) drawn on the swimlanes
            rows = page.locator(".kf-event-rows tbody tr[data-key]").count()
            assert rows >= 10
            # the process tree lives in the second tab
            page.locator(".lm-TabBar-tabLabel:text-is('Process tree')").first.click()
            tree = page.locator(".kf-process-tree .kf-node")
            tree.first.wait_for(state="visible", timeout=30_000)
            assert tree.count() >= 3
            assert page.locator(".kf-process-tree .kf-flag").count() >= 1  # host-namespace highlights
            page.locator(".lm-TabBar-tabLabel:text-is('Events')").first.click()
            key = table_row.get_attribute("data-key")
            table_row.click()
            details = page.locator(".kf-details-pane").filter(has_text="raw record (redacted)").first
            details.wait_for(state="visible", timeout=30_000)
            assert key in details.inner_text()
            details.scroll_into_view_if_needed()
            page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=False)
            print(f"screenshot: {shot}")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
