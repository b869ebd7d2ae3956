"""Widget benchmark: timeline refresh after a zoom, and output sizes, on large synthetic cases.

The case tables are written directly as Parquet (the widgets only query the
store; ingest speed is measured by the ingest benchmark): 24 hours of audit
events (30 %), Tetragon events (20 %) and Hubble flows (50 %) across 200 pods
on 20 nodes.

    .venv/bin/python benchmarks/widgets.py            # 1 M events
    .venv/bin/python benchmarks/widgets.py 1e6 1e7    # 1 M and 10 M
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubeforensics import Case
from kubeforensics.schema import TABLES

T0 = np.datetime64("2026-03-01T00:00:00", "ns")
DAY_NS = 24 * 3600 * 10**9


def _table(name: str, n: int, cols: dict[str, np.ndarray | pa.Array], sha: str) -> pa.Table:
    spec = TABLES[name]
    arrays = []
    for c in spec.columns:
        if c.name in cols:
            arrays.append(pa.array(cols[c.name], type=c.arrow_type))
        else:
            arrays.append(pa.nulls(n, type=c.arrow_type))
    return pa.Table.from_arrays(arrays, schema=spec.arrow_schema)


def build_case(folder: Path, n: int, seed: int = 7) -> Case:
    """A case of ``n`` events whose tables are written straight to Parquet."""
    rng = np.random.default_rng(seed)
    case = Case.create(folder)
    pods = np.array([f"app-{i:03d}" for i in range(200)], dtype=object)
    nss = np.array(["shop", "payments", "default", "kube-system", "monitoring"], dtype=object)
    nodes = np.array([f"node-{i:02d}" for i in range(20)], dtype=object)
    users = np.array(["system:node:node-01", "system:serviceaccount:kube-system:deployment-controller", "alice",
                      "ci-deployer", "system:kube-scheduler"], dtype=object)
    sizes = {"audit": int(n * 0.3), "processes": int(n * 0.2), "flows": n - int(n * 0.3) - int(n * 0.2)}
    chunk = 2_000_000
    for name, total in sizes.items():
        d = folder / "tables" / name
        d.mkdir(parents=True, exist_ok=True)
        w = pq.ParquetWriter(d / f"{name}000000.parquet", TABLES[name].arrow_schema, compression="zstd")
        for start in range(0, total, chunk):
            m = min(chunk, total - start)
            t = np.sort(T0 + rng.integers(0, DAY_NS, m).astype("timedelta64[ns]"))
            ids = np.char.add(f"{name[:6]:0<6}{start // chunk:06d}:", np.arange(1, m + 1).astype(str)).astype(object)
            p, ns, nd = rng.integers(0, 200, m), rng.integers(0, 5, m), rng.integers(0, 20, m)
            base = {"event_id": ids, "time": t, "evidence": np.full(m, f"evidence/{name}.jsonl", dtype=object),
                    "line": np.arange(start + 1, start + m + 1)}
            if name == "audit":
                cols = {**base, "audit_id": ids, "stage": np.full(m, "ResponseComplete", dtype=object),
                        "verb": rng.choice(np.array(["get", "list", "update", "watch", "create"], dtype=object), m),
                        "user": users[rng.integers(0, 5, m)], "resource": np.full(m, "pods", dtype=object),
                        "namespace": nss[ns], "name": pods[p], "source_ip": np.full(m, "10.0.0.1", dtype=object),
                        "code": np.full(m, 200, dtype=np.int32)}
            elif name == "processes":
                cols = {**base, "event_type": rng.choice(np.array(["exec", "exit", "kprobe"], dtype=object), m),
                        "node": nodes[nd], "namespace": nss[ns], "pod": pods[p],
                        "binary": rng.choice(np.array(["/bin/sh", "/usr/bin/curl", "/app/server"], dtype=object), m),
                        "args": np.full(m, "-c true", dtype=object), "exec_id": ids, "parent_exec_id": ids,
                        "uid": np.zeros(m, dtype=np.int64)}
            else:
                cols = {**base, "node": nodes[nd], "verdict": np.full(m, "FORWARDED", dtype=object),
                        "src_ip": np.full(m, "10.244.0.5", dtype=object), "dst_ip": np.full(m, "10.96.0.10", dtype=object),
                        "src_namespace": nss[ns], "src_pod": pods[p], "dst_port": np.full(m, 53, dtype=np.int32),
                        "protocol": np.full(m, "UDP", dtype=object)}
            w.write_table(_table(name, m, cols, name), row_group_size=128_000)
        w.close()
    return case


def measure(n: int) -> dict[str, float]:
    import pandas as pd

    from kubeforensics.widgets import FilterState, Investigation, TimelineView
    from kubeforensics.widgets.data import _empty_findings
    from kubeforensics.widgets.static import bundle

    out: dict[str, float] = {"events": n}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        case = build_case(Path(tmp) / "case", n)
        out["build_s"] = time.perf_counter() - t
        state = FilterState()
        t = time.perf_counter()
        tl = TimelineView(case, state, findings=_empty_findings())
        out["timeline_open_s"] = time.perf_counter() - t
        out["timeline_open_mode"] = tl.data.mode
        lo = pd.Timestamp(T0, tz="UTC")
        zooms = {"zoom_1h_s": (lo + pd.Timedelta(hours=10), lo + pd.Timedelta(hours=11)),
                 "zoom_5min_s": (lo + pd.Timedelta(hours=12), lo + pd.Timedelta(hours=12, minutes=5)),
                 "zoom_10s_s": (lo + pd.Timedelta(hours=13), lo + pd.Timedelta(hours=13, seconds=10))}
        for key, (a, b) in zooms.items():
            best = []
            for _ in range(3):
                state.clear()
                t = time.perf_counter()
                tl.zoom(a, b)  # exactly what the figure's relayout handler calls
                best.append(time.perf_counter() - t)
            out[key] = min(best)
            out[key.replace("_s", "_mode")] = f"{tl.data.mode} ({len(tl.data.events):,} points of {tl.data.total:,})"
        state.clear()
        out["timeline_figure_mb"] = len(tl.figure().to_json()) / 1e6
        t = time.perf_counter()
        inv = Investigation(case, findings=_empty_findings(), story=_empty_story())
        out["dashboard_open_s"] = time.perf_counter() - t
        html = bundle(inv.static(), "x")["text/html"]
        out["static_dashboard_mb"] = len(html) / 1e6
        # the widget state a saved notebook would carry, minus the fixed plotly.js bundle of the FigureWidget
        fw = inv.timeline.widget
        state_json = json.dumps({k: v for k, v in fw.get_state().items() if k != "_esm"}, default=str)
        out["timeline_widget_state_mb"] = len(state_json) / 1e6
        out["figurewidget_esm_mb"] = len(str(fw.get_state().get("_esm", ""))) / 1e6
        case.query.close()
    return out


def _empty_story():
    import pandas as pd

    return pd.DataFrame(columns=["time", "title", "detail", "techniques", "event_ids"])


def main(argv: list[str]) -> None:
    sizes = [int(float(a)) for a in argv] or [1_000_000]
    for n in sizes:
        res = measure(n)
        print(f"\n== {n:,} events ==")
        for k, v in res.items():
            print(f"  {k:28s} {v:.3f}" if isinstance(v, float) else f"  {k:28s} {v}")


if __name__ == "__main__":
    main(sys.argv[1:])
