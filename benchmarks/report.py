"""Report time per playbook on the sample data, and report file size.

    .venv/bin/python benchmarks/report.py [--scenarios container-escape,miner] [--workdir DIR]

For each scenario: ingest it into a fresh case (sample_data/<scenario> or
simulated with seed 7), run the scenario playbook and the triage playbook
headless, render the HTML report, and print seconds and sizes.  Target: under
60 s per report on the development machine.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import kubeforensics as kf
from kubeforensics.report import render_html, run_playbook

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("container-escape", "miner", "stolen-credentials", "rbac-persistence", "ssrf-dns-exfil")


def evidence(name: str, work: Path) -> Path:
    sample = ROOT / "sample_data" / name
    if sample.is_dir():
        return sample
    from kubeforensics.simulate import simulate

    return simulate(name, work / "data" / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kf-report-bench-"))
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'scenario':<20} {'playbook':<18} {'ingest s':>8} {'run s':>7} {'render s':>8} {'total s':>8} "
          f"{'html MB':>8} {'answers':>7}")
    for name in args.scenarios.split(","):
        folder = evidence(name, work)
        t0 = time.perf_counter()
        case = kf.Case.create(work / "cases" / name)
        case.ingest([p for p in sorted(folder.iterdir()) if p.is_dir()], progress=False)
        t_ingest = time.perf_counter() - t0
        for book in (name, "triage"):
            t1 = time.perf_counter()
            res = run_playbook(book, case)
            t2 = time.perf_counter()
            out = work / f"{name}-{book}.html"
            out.write_text(render_html(res.notebook, case, playbook=book, run_id=res.run_id), encoding="utf-8")
            t3 = time.perf_counter()
            print(f"{name:<20} {book:<18} {t_ingest:>8.1f} {t2 - t1:>7.1f} {t3 - t2:>8.1f} {t3 - t1:>8.1f} "
                  f"{out.stat().st_size / 1e6:>8.2f} {len(res.answers):>7}", flush=True)
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
