"""Scale suite: a case of N mixed events, ingest per source against the raw parse limit, and the analyst's queries.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks                        # N = 1,000,000
    .venv/bin/python -m benchmarks --events 10000000 --step-timeout 900 --max-rss-gb 8
    .venv/bin/python -m benchmarks --profile findings,story --json results.json

Options:

``--events N``        records to simulate with ``kubeforensics simulate --scale N`` (default 1,000,000)
``--span D``          ``simulate --span D``: the routine background covers D ending with the scenario's window,
                      so an hour holds about 1/168 of a week's records (default ``7d``; ``none``: everything
                      packed into the scenario's hour, as before issue 9)
``--scenario NAME``   scenario to scale (default ``container-escape``); its ground truth picks the pod and IP
``--seed N``          simulation seed (default 7)
``--workdir DIR``     where the data and the case go (default: a new folder under ``$TMPDIR``)
``--keep``            keep the data and the case afterwards (default: deleted; with ``--workdir``, only the
                      folders this run made there: data, case, logs, copies, scratch-case, report.html)
``--naive-sample N``  lines per source given to ``pandas.read_json(lines=True)``, extrapolated (default 50,000)
``--small-records N`` Falco and k8s files are fixed-size (a few hundred records); their rates are also
                      measured on copies of them repeated up to about N records, in a scratch case (default 100,000)
``--step-timeout S``  kill a step after S seconds and report "did not finish" (default 900)
``--max-rss-gb G``    kill a step whose processes together exceed G GB of RSS (default 8)
``--skip STEPS``      comma-separated groups to skip: ``raw``, ``naive``, ``queries``, ``report``
``--profile STEPS``   run these steps under cProfile and print their top functions: query steps by their
                      kind (``timeline``, ``pivot-pod``, ``process-tree``, ``findings``, ``story``, ``entities``,
                      ``widget``),
                      ingest steps as ``SOURCE-KIND`` (``hubble-ingest``, ``falco(copies)-ingest``)
``--json FILE``       also write every measurement as JSON

Every step runs in its own subprocess (``python -m benchmarks.scale --child SPEC``
or the CLI), so its peak memory is its own: ``peak MB`` is the larger of the
child's ``VmHWM`` (its exact peak RSS; ``ru_maxrss`` is not used because Linux
carries the forking parent's size into it) and the sum of RSS over the step's
process tree sampled every 0.25 s (the report runs a Jupyter kernel, simulate
forks writers).
Times of query steps are the call itself (imports and opening the case are not
counted; the process wall time is in the JSON).  Steps:

* ``simulate``: the CLI, writing audit/, tetragon/, hubble/, falco/, k8s/;
* per source (audit, tetragon, hubble, falco, k8s): ``raw pyarrow``
  (``pyarrow.json.read_json`` with an explicit schema of the main columns, gzip
  through ``pyarrow.input_stream``), ``raw duckdb`` (``read_ndjson`` with the same
  columns; the k8s List documents through ``read_json`` + ``unnest(items)``),
  ``naive pandas`` (``read_json(lines=True)`` on a sample, extrapolated; k8s:
  ``json_normalize`` of ``items``) and ``kubeforensics`` (``Case.ingest`` of the
  source's files into the one case: copy + sha256 + parse + normalise + Parquet);
* on the case: ``timeline`` on the one-hour window around the attack (centred on
  the ground truth's steps; with the default ``--span 7d`` it holds the attack plus
  about 1/168 of the routine background), the entity pivots
  ``timeline(namespace=, pod=)`` and ``timeline(ip=)`` on the scenario's pod and
  attacker IP, ``process_tree`` of that pod, ``findings(refresh=True)``,
  ``story()`` (on the cached findings), a ``TimelineView`` zoomed to the attack
  hour (construction, refresh after the zoom, figure JSON size), and
  ``kubeforensics report --playbook triage``.  With ``--span none`` the whole
  case lies in the scenario's hour, so ``timeline`` also runs on 1/168 of the
  extent around the first step (the share of one hour in a week) and the widget
  zooms to that window instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("audit", "tetragon", "hubble", "falco", "k8s")
DIRS = {"audit": "audit", "tetragon": "tetragon", "hubble": "hubble", "falco": "falco", "k8s": "k8s"}

# Main columns per source, in DuckDB type syntax (the pyarrow schema is derived from it).
_PROC = ('STRUCT(exec_id VARCHAR, pid BIGINT, uid BIGINT, cwd VARCHAR, "binary" VARCHAR, '
         " arguments VARCHAR, "
         "flags VARCHAR, start_time VARCHAR, parent_exec_id VARCHAR, "
         "pod STRUCT(namespace VARCHAR, name VARCHAR, container STRUCT(id VARCHAR, name VARCHAR, "
         "image STRUCT(name VARCHAR), maybe_exec_probe BOOLEAN), workload VARCHAR))")
_PARENT = 'STRUCT(exec_id VARCHAR, pid BIGINT, "binary" VARCHAR)'
_SOCK = "STRUCT(sock_arg STRUCT(family VARCHAR, saddr VARCHAR, daddr VARCHAR, sport BIGINT, dport BIGINT))[]"
_EP = ("STRUCT(identity BIGINT, namespace VARCHAR, pod_name VARCHAR, labels VARCHAR[], "
       "workloads STRUCT(name VARCHAR, kind VARCHAR)[])")
COLUMNS: dict[str, dict[str, str]] = {
    "audit": {
        "auditID": "VARCHAR", "stage": "VARCHAR", "verb": "VARCHAR", "requestURI": "VARCHAR",
        "userAgent": "VARCHAR", "requestReceivedTimestamp": "VARCHAR", "stageTimestamp": "VARCHAR",
        "user": "STRUCT(username VARCHAR, groups VARCHAR[])",
        "objectRef": "STRUCT(resource VARCHAR, subresource VARCHAR, namespace VARCHAR, name VARCHAR, apiGroup VARCHAR)",
        "sourceIPs": "VARCHAR[]", "responseStatus": "STRUCT(code INTEGER)",
    },
    "tetragon": {
        "process_exec": f"STRUCT(process {_PROC}, parent {_PARENT})",
        "process_exit": f"STRUCT(process {_PROC}, parent {_PARENT}, signal VARCHAR, status BIGINT)",
        "process_kprobe": f"STRUCT(process {_PROC}, parent {_PARENT}, function_name VARCHAR, args {_SOCK})",
        "node_name": "VARCHAR", "time": "VARCHAR",
    },
    "hubble": {
        "flow": ("STRUCT(time VARCHAR, uuid VARCHAR, verdict VARCHAR, "
                 "IP STRUCT(source VARCHAR, destination VARCHAR), "
                 "l4 STRUCT(TCP STRUCT(source_port BIGINT, destination_port BIGINT), "
                 "UDP STRUCT(source_port BIGINT, destination_port BIGINT)), "
                 f"source {_EP}, destination {_EP}, Type VARCHAR, node_name VARCHAR, is_reply BOOLEAN, "
                 "traffic_direction VARCHAR, Summary VARCHAR, "
                 "l7 STRUCT(type VARCHAR, dns STRUCT(query VARCHAR, rcode BIGINT, ips VARCHAR[])))"),
        "node_name": "VARCHAR", "time": "VARCHAR",
    },
    "falco": {
        "hostname": "VARCHAR", "output": "VARCHAR", "priority": "VARCHAR", "rule": "VARCHAR",
        "source": "VARCHAR", "tags": "VARCHAR[]", "time": "VARCHAR",
        "output_fields": ('STRUCT("container.id" VARCHAR, "k8s.ns.name" VARCHAR, "k8s.pod.name" VARCHAR, '
                          '"proc.cmdline" VARCHAR, "proc.name" VARCHAR, "user.name" VARCHAR, "fd.name" VARCHAR)'),
    },
}
K8S_ITEM = ("STRUCT(kind VARCHAR, metadata STRUCT(name VARCHAR, namespace VARCHAR, uid VARCHAR, "
            "creationTimestamp VARCHAR), involvedObject STRUCT(kind VARCHAR, namespace VARCHAR, name VARCHAR), "
            "reason VARCHAR, message VARCHAR, type VARCHAR, firstTimestamp VARCHAR, lastTimestamp VARCHAR, "
            "count BIGINT, source STRUCT(component VARCHAR, host VARCHAR), spec JSON, status JSON)")


# ---------------------------------------------------------------------------------------------- the data
def source_files(data: Path, source: str) -> list[Path]:
    """The simulated files of one source (the rotated ``.gz`` audit file included)."""
    return sorted(p for p in (data / DIRS[source]).iterdir() if p.is_file())


def count_lines(path: Path) -> int:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            n += block.count(b"\n")
    return n


def _duck_spec(cols: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v.replace(chr(39), chr(39) * 2)}'" for k, v in cols.items()) + "}"


def _arrow_schema(cols: dict[str, str]) -> Any:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    sel = ", ".join(f'NULL::{v.replace("JSON", "VARCHAR")} AS "{k}"' for k, v in cols.items())
    t = con.execute(f"SELECT {sel}").to_arrow_table()
    return pa.schema([pa.field(f.name, f.type) for f in t.schema])


def replicate(files: list[Path], dest: Path, target: int) -> list[Path]:
    """Copies of the small fixed-size files (Falco, k8s Lists) up to about ``target`` records, for a rate."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        raw = f.read_bytes()
        if b'"items"' in raw[:300]:  # a List document
            doc = json.loads(raw)
            items = doc["items"]
            doc["items"] = items * max(1, target // (2 * max(1, len(items))))
            data = json.dumps(doc, indent=1).encode()
        else:
            data = raw * max(1, target // max(1, raw.count(b"\n")))
        (dest / f.name).write_bytes(data)
        out.append(dest / f.name)
    return out


# ------------------------------------------------------------------------------------- child steps
def raw_pyarrow(source: str, files: list[str]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.json as pj

    if source == "k8s":
        return {"skipped": "pyarrow.json reads JSON lines only (k8s files are List documents)"}
    opts = pj.ParseOptions(explicit_schema=_arrow_schema(COLUMNS[source]), unexpected_field_behavior="ignore")
    t0, rows = time.perf_counter(), 0
    for f in files:
        rows += pj.read_json(pa.input_stream(f), parse_options=opts,
                             read_options=pj.ReadOptions(block_size=16 << 20)).num_rows
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def raw_duckdb(source: str, files: list[str]) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    t0, rows = time.perf_counter(), 0
    for f in files:
        if source == "k8s":
            sql = (f"SELECT unnest(items) FROM read_json('{f}', format='unstructured', "
                   f"maximum_object_size=1073741824, columns={{'items': '{K8S_ITEM}[]'}})")
        else:
            sql = f"SELECT * FROM read_ndjson('{f}', columns={_duck_spec(COLUMNS[source])})"
        # The faster of DuckDB's two ways to Arrow for each query (measured, 2026-11-28): for JSON lines
        # con.sql, as con.execute(...).to_arrow_table() copies the rows once more (DuckDB warns so); for the
        # k8s List documents' unnest, con.execute (con.sql took twice as long: 10 s against 5.5 s per 100k items).
        run = con.execute if source == "k8s" else con.sql
        rows += run(sql).to_arrow_table().num_rows
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def naive_pandas(source: str, files: list[str], sample: int, total: int) -> dict[str, Any]:
    import pandas as pd

    t0 = time.perf_counter()
    if source == "k8s":
        rows = 0
        for f in files:
            with open(f, "rb") as fh:
                rows += len(pd.json_normalize(json.load(fh)["items"]))
        return {"rows": rows, "seconds": time.perf_counter() - t0}
    plain = [f for f in files if not f.endswith(".gz")]
    buf = io.BytesIO()
    with open(plain[0], "rb") as fh:
        for _ in range(sample):
            line = fh.readline()
            if not line:
                break
            buf.write(line)
    buf.seek(0)
    t0 = time.perf_counter()
    rows = len(pd.read_json(buf, lines=True))
    dt = time.perf_counter() - t0
    return {"rows": total, "sample_rows": rows, "seconds": dt * total / max(rows, 1), "extrapolated": True}


def ingest(case_dir: str, files: list[str]) -> dict[str, Any]:
    import kubeforensics as kf

    case = kf.Case.create(case_dir)
    t0 = time.perf_counter()
    rep = case.ingest(files, progress=False)
    dt = time.perf_counter() - t0
    tot = rep.totals
    return {"rows": tot["ingested"], "records": tot["records"], "quarantined": tot["quarantined"], "seconds": dt}


def _twice(fn: Any) -> tuple[Any, float, float]:
    t0 = time.perf_counter()
    out = fn()
    t1 = time.perf_counter()
    fn()
    return out, t1 - t0, time.perf_counter() - t1


def query(case_dir: str, what: str, p: dict[str, Any]) -> dict[str, Any]:
    import kubeforensics as kf

    case = kf.open_case(case_dir)
    if what == "timeline":
        df, cold, warm = _twice(lambda: case.timeline(since=p["since"], until=p["until"]))
        return {"rows": len(df), "seconds": cold, "warm_seconds": warm,
                "frame_mb": df.memory_usage(deep=True).sum() / 1e6}
    if what == "pivot-pod":
        df, cold, warm = _twice(lambda: case.timeline(namespace=p["namespace"], pod=p["pod"]))
        return {"rows": len(df), "seconds": cold, "warm_seconds": warm}
    if what == "pivot-ip":
        df, cold, warm = _twice(lambda: case.timeline(ip=p["ip"]))
        return {"rows": len(df), "seconds": cold, "warm_seconds": warm}
    t0 = time.perf_counter()
    if what == "process-tree":
        tree = case.process_tree(pod=p["pod"], namespace=p["namespace"])
        n = len(getattr(tree, "nodes", getattr(tree, "frame", [])))
        return {"rows": n, "seconds": time.perf_counter() - t0}
    if what == "findings":
        return {"rows": len(case.findings(refresh=True)), "seconds": time.perf_counter() - t0}
    if what == "story":
        story = case.story()
        return {"rows": len(getattr(story, "steps", [])), "seconds": time.perf_counter() - t0}
    if what == "entities":
        r = case.entities
        hit = r.ip(p["ip"], p["at"])
        return {"rows": len(r.pods), "seconds": time.perf_counter() - t0, "ip_resolved": hit is not None}
    if what == "widget":
        from kubeforensics.widgets import TimelineView

        view = TimelineView(case)
        built = time.perf_counter() - t0
        t1 = time.perf_counter()
        view.zoom(p["since"], p["until"])
        refresh = time.perf_counter() - t1
        t2 = time.perf_counter()
        size = len(view.figure().to_json())
        fig_s = time.perf_counter() - t2
        # what the view leaves in a notebook run headless (papermill): its static HTML, plotly.js included
        from kubeforensics.widgets.static import bundle

        output = len(bundle(view.static(), repr(view))["text/html"])
        return {"rows": view.data.total, "mode": view.data.mode, "seconds": refresh, "build_seconds": built,
                "figure_seconds": fig_s, "figure_mb": size / 1e6, "output_mb": output / 1e6}
    raise ValueError(what)


def child(spec: dict[str, Any]) -> None:
    kind = spec.pop("kind")
    fn = {"raw-pyarrow": raw_pyarrow, "raw-duckdb": raw_duckdb, "naive-pandas": naive_pandas,
          "ingest": ingest, "query": query}[kind]
    prof = cProfile.Profile() if spec.pop("profile", False) else None
    w0 = time.perf_counter()
    if prof:
        prof.enable()
    out = fn(**spec)
    if prof:
        prof.disable()
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s).sort_stats("cumulative")
        st.print_stats(25)
        st.sort_stats("tottime").print_stats(15)
        out["profile"] = s.getvalue()
    out["wall"] = time.perf_counter() - w0
    out["self_peak_mb"] = _hwm_mb()
    sys.stdout.write(json.dumps(out, default=str) + "\n")


def _hwm_mb() -> float:
    """This process's peak RSS since exec (``VmHWM``; ``ru_maxrss`` would include the forking parent's size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ the runner
def _tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_step(argv: list[str], *, timeout: float, max_rss: int, log_dir: Path, name: str) -> dict[str, Any]:
    """Run one step in its own process group; kill it on timeout or when its tree exceeds ``max_rss`` bytes."""
    out_p, err_p = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with open(out_p, "wb") as out, open(err_p, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, start_new_session=True)
    t0, tree_peak, killed = time.perf_counter(), 0, None
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        tree_peak = max(tree_peak, _tree_rss(proc.pid))
        elapsed = time.perf_counter() - t0
        if killed is None and (elapsed > timeout or tree_peak > max_rss):
            killed = (f"did not finish within {timeout / 60:.0f} min" if elapsed > timeout
                      else f"exceeded {max_rss / 2**30:.0f} GB RSS")
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.25)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    res: dict[str, Any] = {"process_wall": wall, "peak_mb": tree_peak / 2**20}
    if killed:
        res["error"] = killed
    elif proc.returncode != 0:
        tail = err_p.read_text(errors="replace").strip().splitlines()[-3:]
        res["error"] = f"exit {proc.returncode}: " + " | ".join(tail)
    else:
        lines = out_p.read_text().strip().splitlines()
        if argv[1:3] == ["-m", "benchmarks.scale"] and lines:
            res.update(json.loads(lines[-1]))
            res["peak_mb"] = max(res["peak_mb"], res["self_peak_mb"])
        else:
            res["seconds"] = wall
    return res


def _child_argv(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(spec)]


def _machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _targets(data: Path) -> dict[str, Any]:
    """Pod, namespace and IP of the scenario's first step, and the times of its first and last steps."""
    truth = json.loads((data / "GROUND_TRUTH.json").read_text())
    ent = truth["steps"][0]["entities"]
    return {"pod": ent.get("pod"), "namespace": ent.get("namespace"), "ip": ent.get("ip"),
            "first_step": truth["steps"][0]["time"], "last_step": truth["steps"][-1]["time"]}


def attack_hour(first: Any, last: Any) -> tuple[Any, Any]:
    """The hour centred on the attack's steps (from the first step when they take longer than an hour)."""
    import pandas as pd

    hour = pd.Timedelta(hours=1)
    lead = max(pd.Timedelta(0), (hour - (last - first)) / 2)
    return first - lead, first - lead + hour


def _secs(r: dict[str, Any], digits: int = 1) -> str:
    return r.get("error") or f"{r.get('seconds', 0):.{digits}f} s"


def _span(text: str) -> str | None:
    """``--span``: a duration for ``simulate --span`` (checked here, so a typo fails before anything runs) or none."""
    if text.lower() == "none":
        return None
    from kubeforensics.simulate.clock import parse_duration

    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or none") from exc
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--span", type=_span, default="7d")
    ap.add_argument("--scenario", default="container-escape")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--naive-sample", type=int, default=50_000)
    ap.add_argument("--small-records", type=int, default=100_000)
    ap.add_argument("--step-timeout", type=float, default=900)
    ap.add_argument("--max-rss-gb", type=float, default=8)
    ap.add_argument("--skip", default="")
    ap.add_argument("--profile", default="")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    return run_suite(args)


def run_suite(args: argparse.Namespace) -> int:
    import pandas as pd

    skip = set(filter(None, args.skip.split(",")))
    profile = set(filter(None, args.profile.split(",")))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kf-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    ours = [work] if args.workdir is None else [work / n for n in ("data", "case", "logs", "copies", "scratch-case",
                                                                     "report.html")]
    data, case_dir, logs = work / "data", work / "case", work / "logs"
    logs.mkdir(exist_ok=True)
    lim = {"timeout": args.step_timeout, "max_rss": int(args.max_rss_gb * 2**30), "log_dir": logs}
    started, load0 = datetime.now(UTC), _load()
    say = lambda s: print(s, file=sys.stderr, flush=True)
    say(f"{started:%Y-%m-%d %H:%M} UTC · {_machine()} · load {load0} · work {work}")
    results: dict[str, Any] = {"events": args.events, "span": args.span, "date": f"{started:%Y-%m-%d %H:%M} UTC",
                               "machine": _machine(), "load_start": load0, "ingest": {}, "queries": {}}
    try:
        span = ["--span", args.span] if args.span else []
        sim = run_step([str(Path(sys.executable).parent / "kubeforensics"), "simulate", args.scenario,
                        "--out", str(data), "--seed", str(args.seed), "--scale", str(args.events), *span],
                       name="simulate", **lim)
        results["simulate"] = sim
        if "error" in sim:
            raise SystemExit(f"simulate failed: {sim['error']}")
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        say(f"simulate: {sim['seconds']:.0f} s, {size / 1e9:.2f} GB")
        jobs = [(src, source_files(data, src), case_dir) for src in SOURCES]
        jobs += [(f"{src} (copies)", replicate(source_files(data, src), work / "copies" / src, args.small_records),
                  work / "scratch-case") for src in ("falco", "k8s")]
        for src, paths, target in jobs:
            kind_of = src.split()[0]
            files = [str(p) for p in paths]
            mb = sum(Path(f).stat().st_size for f in files) / 1e6
            lines = sum(count_lines(Path(f)) for f in files) if kind_of != "k8s" else None
            row: dict[str, Any] = {"files": len(files), "mb": mb}
            steps = []
            if "raw" not in skip:
                steps += [("raw-pyarrow", {"source": kind_of, "files": files}),
                          ("raw-duckdb", {"source": kind_of, "files": files})]
            if "naive" not in skip:
                steps.append(("naive-pandas", {"source": kind_of, "files": files, "sample": args.naive_sample,
                                               "total": lines or 0}))
            steps.append(("ingest", {"case_dir": str(target), "files": files}))
            for kind, spec in steps:
                name = f"{src.replace(' ', '')}-{kind}"
                r = run_step(_child_argv({"kind": kind, **spec, "profile": name in profile}), name=name, **lim)
                row[kind] = r
                say(f"{src:<9} {kind:<13} {_secs(r)}"
                    f" · {r.get('rows', '')} rows · {r['peak_mb']:.0f} MB")
                if r.get("profile"):
                    say(r["profile"])
            results["ingest"][src] = row
        if not args.keep:
            for d in (data / "audit", data / "tetragon", data / "hubble", work / "copies", work / "scratch-case"):
                shutil.rmtree(d, ignore_errors=True)  # the case holds its own copy now
        if "queries" not in skip:
            run_queries(args, data, case_dir, lim, results, profile, skip, say)
    finally:
        results["load_end"] = _load()
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        print(render(results, pd))
        if not args.keep:
            for p in ours:  # only what this run created: a --workdir given may hold other files
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
    return 0


def run_queries(args: argparse.Namespace, data: Path, case_dir: Path, lim: dict[str, Any],
                results: dict[str, Any], profile: set[str], skip: set[str], say: Any) -> None:
    import pandas as pd

    import kubeforensics as kf

    t = _targets(data)
    lo, hi = kf.open_case(case_dir).extent()
    first = pd.Timestamp(t["first_step"])
    hour = attack_hour(first, pd.Timestamp(t["last_step"]))
    share = (hi - lo) / 168
    small = (max(lo, first - share / 2), max(lo, first - share / 2) + share)
    iso = lambda w: {"since": w[0].isoformat(), "until": w[1].isoformat()}
    results["targets"] = {"pod": f"{t['namespace']}/{t['pod']}", "ip": t["ip"], "hour": iso(hour),
                          "extent": [str(lo), str(hi)]}
    steps = [("timeline 1 h (attack)", "timeline", iso(hour))]
    if args.span is None:  # the whole case is the scenario's hour: also query the share of an hour in a week
        results["targets"]["share"] = iso(small)
        steps.append(("timeline 1/168 of extent", "timeline", iso(small)))
    steps += [
        ("pivot pod", "pivot-pod", {"namespace": t["namespace"], "pod": t["pod"]}),
        ("pivot ip", "pivot-ip", {"ip": t["ip"]}),
        ("process tree of the pod", "process-tree", {"namespace": t["namespace"], "pod": t["pod"]}),
        ("findings", "findings", {}),
        ("story", "story", {}),
        ("entities (resolver)", "entities", {"ip": t["ip"], "at": iso(hour)["until"]}),
        ("timeline widget zoom", "widget", iso(small if args.span is None else hour)),
    ]
    for label, what, p in steps:
        spec = {"kind": "query", "case_dir": str(case_dir), "what": what, "p": p, "profile": what in profile}
        r = run_step(_child_argv(spec), name=f"q-{what}-{len(results['queries'])}", **lim)
        results["queries"][label] = r
        say(f"{label:<26} {_secs(r, 2)} · {r.get('rows', '')} rows"
            f" · {r['peak_mb']:.0f} MB")
        if r.get("profile"):
            say(r["profile"])
    if "report" not in skip:
        out = case_dir.parent / "report.html"
        r = run_step([str(Path(sys.executable).parent / "kubeforensics"), "report", "--case", str(case_dir),
                      "--playbook", "triage", "--out", str(out)], name="report", **lim)
        if out.exists():
            r["html_mb"] = out.stat().st_size / 1e6
        results["queries"]["report (triage)"] = r
        say(f"report: {_secs(r)} · {r['peak_mb']:.0f} MB")


def render(res: dict[str, Any], pd: Any) -> str:
    """The results as markdown tables."""
    span = f", span {res['span']}" if res.get("span") else ", no span (all in the scenario's hour)"
    out = [f"## {res['events']:,} events{span} — {res['date']}", "",
           (f"Machine: {res['machine']}; load average (1/5/15 min) {res['load_start']} at start, "
            f"{res.get('load_end', '?')} at end."), ""]
    sim = res.get("simulate")
    if sim:
        out += [f"simulate: {_secs(sim, 0)}, peak {sim['peak_mb']:,.0f} MB", ""]
    if res["ingest"]:
        out += [("| source | files, MB | records | raw pyarrow rec/s | raw DuckDB rec/s | naive pandas rec/s "
                 "| kubeforensics rec/s | % of raw | peak MB raw / pandas / kf |"),
                "|---|---|---|---|---|---|---|---|---|"]
        for src, r in res["ingest"].items():
            cells, rates = [], []
            for kind in ("raw-pyarrow", "raw-duckdb", "naive-pandas", "ingest"):
                x = r.get(kind) or {}
                if "error" in x or "skipped" in x:
                    cells.append((x.get("error") or "n/a")[:40])
                    rates.append(None)
                    continue
                rate = x["rows"] / x["seconds"] if x.get("rows") and x.get("seconds") else None
                rates.append(rate)
                cells.append(f"{rate:,.0f}" + (" (extrap.)" if x.get("extrapolated") else "") if rate else "–")
            raw = max((v for v in rates[:2] if v), default=None)
            pct = f"{100 * rates[3] / raw:.0f}%" if raw and rates[3] else "–"
            peaks = " / ".join(f"{(r.get(k) or {}).get('peak_mb', 0):,.0f}" for k in
                               ("raw-duckdb", "naive-pandas", "ingest"))
            n = (r.get("ingest") or {}).get("records", "–")
            out.append(f"| {src} | {r['files']}, {r['mb']:,.0f} | {n:,} | " + " | ".join(cells) + f" | {pct} | {peaks} |"
                       if isinstance(n, int) else f"| {src} | {r['files']}, {r['mb']:,.0f} | – | " + " | ".join(cells)
                       + f" | {pct} | {peaks} |")
        out.append("")
    if res["queries"]:
        out += ["| step | seconds | warm s | rows | peak MB | notes |", "|---|---|---|---|---|---|"]
        for label, r in res["queries"].items():
            note = []
            for k, fmt in (("build_seconds", "view built {:.1f} s"), ("figure_seconds", "figure {:.2f} s"),
                           ("figure_mb", "figure JSON {:.2f} MB"), ("frame_mb", "frame {:,.0f} MB"),
                           ("mode", "{}"), ("html_mb", "HTML {:.1f} MB"),
                           ("output_mb", "notebook output {:.2f} MB")):
                if k in r:
                    note.append(fmt.format(r[k]))
            secs = r.get("error") or f"{r.get('seconds', 0):.2f}"
            warm = f"{r['warm_seconds']:.2f}" if "warm_seconds" in r else ""
            rows = f"{r['rows']:,}" if isinstance(r.get("rows"), int) else ""
            out.append(f"| {label} | {secs} | {warm} | {rows} | {r['peak_mb']:,.0f} | {', '.join(note)} |")
        t = res.get("targets", {})
        share = f"1/168 window {t['share']}; " if "share" in t else ""
        out += ["", (f"Pod {t.get('pod')}, IP {t.get('ip')}; 1 h window around the attack {t.get('hour')}; "
                     f"{share}case extent {t.get('extent')}.")]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
