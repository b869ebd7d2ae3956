"""The executed quickstart notebook, headless (papermill), as a scheduled run would leave it.

Issue 9: "notebook output of any view ≤ 5 MB".  The static dashboard carries plotly.js once,
gzip-compressed and inflated in the browser; this checks the saved size and that the saved
outputs really draw their plots offline in Chromium (no CDN, nothing fetched).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
LIMIT = 5_000_000


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[Path, dict]:
    pm = pytest.importorskip("papermill", reason="pip install papermill")
    if not (ROOT / "sample_data" / "container-escape").is_dir():
        pytest.skip("sample_data/container-escape is not in this checkout")
    out = tmp_path_factory.mktemp("nb") / "quickstart.ipynb"
    env = {k: os.environ.pop(k) for k in ("KUBEFORENSICS_WIDGETS", "TMPDIR") if k in os.environ}
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("kernel-tmp"))  # the notebook's case goes there, not /tmp
    try:
        pm.execute_notebook(str(ROOT / "notebooks" / "quickstart.ipynb"), str(out), cwd=str(ROOT),
                            kernel_name="python3", progress_bar=False)
    finally:
        del os.environ["TMPDIR"]
        os.environ.update(env)
    return out, json.loads(out.read_text(encoding="utf-8"))


def _html_outputs(nb: dict) -> list[str]:
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            v = o.get("data", {}).get("text/html")
            if v is not None:
                parts.append("".join(v) if isinstance(v, list) else v)
    return parts


def test_executed_quickstart_is_under_five_megabytes(executed):
    path, nb = executed
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    size = path.stat().st_size
    assert size <= LIMIT, f"executed quickstart is {size / 1e6:.2f} MB"
    outputs = _html_outputs(nb)
    # the dashboard is there, with its figures, and plotly.js is carried exactly once
    assert sum(o.count("plotly-graph-div") for o in outputs) >= 2
    assert sum(o.count("kfPlotlyReady") > 0 and "DecompressionStream" in o for o in outputs) == 1
    assert "\n* plotly.js v" in "".join(outputs)  # its license header is kept


def test_saved_outputs_draw_their_plots_offline_in_chromium(executed, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    _, nb = executed
    outputs = _html_outputs(nb)
    figures = sum(o.count('class="plotly-graph-div"') for o in outputs)
    page_file = tmp_path / "outputs.html"
    page_file.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                         + html.escape("quickstart outputs") + "</title></head><body>"
                         + "".join(f"<div class='out'>{o}</div>" for o in outputs) + "</body></html>",
                         encoding="utf-8")
    with sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page()
            fetched: list[str] = []
            errors: list[str] = []

            def route(r):
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    fetched.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {figures}",
                                   timeout=30_000)
            drawn = page.evaluate("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                                  ".filter(d => d.querySelector('.main-svg')).length")
            assert drawn == figures
            assert page.evaluate("typeof window.Plotly.newPlot") == "function"
            assert errors == [] and fetched == []
        finally:
            browser.close()
