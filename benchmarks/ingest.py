"""Audit ingest speed and memory, side by side with the raw parse limit and the naive pandas path.

Usage::

    python benchmarks/ingest.py [--events N] [--naive-events N] [--keep DIR]

Generates N realistic audit events (~1 KB each: a mix of lease updates,
controller lists, pod creates with a requestObject, exec with a command in the
requestURI, bound service-account tokens with ``user.extra``; duplicate stages),
then runs each method in its own process (so peak RSS is its own) and prints
events/s and peak memory:

* ``raw pyarrow``: ``pyarrow.json.read_json`` with an explicit schema of the
  columns we extract, doing nothing else — the physical parse limit here;
* ``raw duckdb``: ``read_ndjson`` with explicit columns into Arrow (through
  ``con.sql``: ``con.execute(...).to_arrow_table()`` makes an extra copy of
  the rows, as DuckDB warns);
* ``raw duckdb, our columns`` (``raw-duckdb-ours``): the same with the 20
  columns our audit query reads (``audit_fast._COLUMNS``: the request and
  response objects, ``user.extra`` and annotations as JSON), streamed in
  batches and dropped: what our reader reads before it computes anything;
* ``kf-parse-only``: our audit reader (``FileIngest.batches``: DuckDB bulk path
  plus the declined lines record by record) without the case store;
* ``kubeforensics``: ``Case.ingest`` — copy + sha256 + parse + normalise +
  Parquet, i.e. the whole job; also run on a file a quarter of the size, to show
  that peak memory does not grow with the file (``kf-quarter``);
* ``naive pandas``: ``pandas.read_json(lines=True)`` (on ``--naive-events``
  events, extrapolated, since it needs ~9 GB per million events).

Each child also reports the CPU-seconds (user + system, all threads) of the
measured call.  Then the *floor*: the CPU-seconds of the steps every ingest
must take whatever its code (reading our columns; copying and hashing the
evidence, ``copy-hash``; writing the output tables to Parquet with the case
store's writer, ``parquet-write``), and the best rate they would allow on this
machine's cores if nothing else ran: how far a ratio to ``raw duckdb`` can go.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def generate(path: Path, n: int, seed: int = 1) -> int:
    """Write n audit events as JSON lines; returns bytes written."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    nodes = [f"node-{i}" for i in range(6)]
    ns = ["default", "shop", "payments", "kube-system", "monitoring"]
    size = 0
    with open(path, "w") as f:
        for i in range(n):
            t = t0 + timedelta(microseconds=i * 3000 + rnd.randrange(1000))
            ts = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            ts2 = (t + timedelta(microseconds=rnd.randrange(200, 90000))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            kind = rnd.random()
            aid = f"{rnd.getrandbits(128):032x}"
            aid = f"{aid[:8]}-{aid[8:12]}-{aid[12:16]}-{aid[16:20]}-{aid[20:]}"
            node = rnd.choice(nodes)
            namespace = rnd.choice(ns)
            if kind < 0.55:
                ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": aid,
                      "stage": "ResponseComplete",
                      "requestURI": f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s",
                      "verb": "update", "user": {"username": f"system:node:{node}", "groups": ["system:nodes", "system:authenticated"]},
                      "sourceIPs": [f"10.0.0.{nodes.index(node) + 10}"], "userAgent": "kubelet/v1.30.2 (linux/amd64) kubernetes/3c0e2f8",
                      "objectRef": {"resource": "leases", "namespace": "kube-node-lease", "name": node, "uid": aid,
                                    "apiGroup": "coordination.k8s.io", "apiVersion": "v1", "resourceVersion": str(rnd.randrange(10**7))},
                      "responseStatus": {"metadata": {}, "code": 200},
                      "requestReceivedTimestamp": ts, "stageTimestamp": ts2,
                      "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}
            elif kind < 0.85:
                sa = rnd.choice(["replicaset-controller", "endpointslice-controller", "deployment-controller"])
                ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": aid,
                      "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/{namespace}/pods?limit=500&resourceVersion=0",
                      "verb": "list", "user": {"username": f"system:serviceaccount:kube-system:{sa}", "uid": aid,
                                               "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                                               "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={aid}"],
                                                         "authentication.kubernetes.io/node-name": [node],
                                                         "authentication.kubernetes.io/pod-name": [f"kube-controller-manager-{node}"],
                                                         "authentication.kubernetes.io/pod-uid": [aid]}},
                      "sourceIPs": ["10.0.0.2"], "userAgent": f"kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3c0e2f8/system:serviceaccount:kube-system:{sa}",
                      "objectRef": {"resource": "pods", "namespace": namespace, "apiVersion": "v1"},
                      "responseStatus": {"metadata": {}, "code": 200},
                      "requestReceivedTimestamp": ts, "stageTimestamp": ts2,
                      "annotations": {"authorization.k8s.io/decision": "allow",
                                      "authorization.k8s.io/reason": f'RBAC: allowed by ClusterRoleBinding "system:controller:{sa}"'}}
            elif kind < 0.97:
                pod = f"web-{rnd.getrandbits(24):06x}"
                ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": aid,
                      "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/{namespace}/pods",
                      "verb": "create", "user": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
                      "sourceIPs": ["10.0.0.2"], "userAgent": "kube-controller-manager/v1.30.2",
                      "objectRef": {"resource": "pods", "namespace": namespace, "name": pod, "apiVersion": "v1"},
                      "responseStatus": {"metadata": {}, "code": 201},
                      "requestObject": {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": pod, "namespace": namespace, "labels": {"app": "web"}},
                                        "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "registry.example.com/web:1.4.2",
                                                 "securityContext": {"privileged": False, "allowPrivilegeEscalation": False}}],
                                                 "volumes": [{"name": "tmp", "emptyDir": {}}]}},
                      "requestReceivedTimestamp": ts, "stageTimestamp": ts2,
                      "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed"}}
            else:
                pod = f"web-{rnd.getrandbits(24):06x}"
                ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": aid,
                      "stage": "ResponseStarted",
                      "requestURI": f"/api/v1/namespaces/{namespace}/pods/{pod}/exec?command=sh&command=-c&command=id%3B+cat+%2Fetc%2Fpasswd&container=web&stdin=true&stdout=true&tty=true",
                      "verb": rnd.choice(["create", "get"]), "user": {"username": "jane@example.com", "groups": ["sre", "system:authenticated"]},
                      "sourceIPs": ["203.0.113.7"], "userAgent": "kubectl/v1.31.0 (linux/amd64) kubernetes/9edcffc",
                      "objectRef": {"resource": "pods", "subresource": "exec", "namespace": namespace, "name": pod, "apiVersion": "v1"},
                      "responseStatus": {"metadata": {}, "code": 101},
                      "requestReceivedTimestamp": ts, "stageTimestamp": ts2,
                      "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed"}}
            line = json.dumps(ev, separators=(",", ":")) + "\n"
            f.write(line)
            size += len(line)
    return size


RAW_FIELDS = [
    "auditID", "stage", "verb", "requestURI", "userAgent", "requestReceivedTimestamp", "stageTimestamp",
]


def run_raw_pyarrow(path: str) -> int:
    import pyarrow as pa
    import pyarrow.json as pj

    user = pa.struct([("username", pa.string()), ("groups", pa.list_(pa.string()))])
    ref = pa.struct([(k, pa.string()) for k in ("resource", "subresource", "namespace", "name", "apiGroup")])
    schema = pa.schema([(k, pa.string()) for k in RAW_FIELDS] + [
        ("user", user), ("objectRef", ref), ("sourceIPs", pa.list_(pa.string())),
        ("responseStatus", pa.struct([("code", pa.int32())])),
    ])
    t = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
                     read_options=pj.ReadOptions(block_size=16 << 20))
    return t.num_rows


def run_raw_duckdb(path: str) -> int:
    import duckdb

    cols = {k: "VARCHAR" for k in RAW_FIELDS}
    cols.update({"user": "STRUCT(username VARCHAR, groups VARCHAR[])",
                 "objectRef": "STRUCT(resource VARCHAR, subresource VARCHAR, namespace VARCHAR, name VARCHAR, apiGroup VARCHAR)",
                 "sourceIPs": "VARCHAR[]", "responseStatus": "STRUCT(code INTEGER)"})
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in cols.items()) + "}"
    con = duckdb.connect()
    t = con.sql(f"SELECT * FROM read_ndjson('{path}', columns={spec})").to_arrow_table()
    return t.num_rows


def run_raw_duckdb_ours(path: str) -> int:
    import duckdb

    from kubeforensics.sources import audit_fast

    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in audit_fast._COLUMNS.items()) + "}"
    con = duckdb.connect()
    reader = con.sql(f"SELECT * FROM read_ndjson('{path}', columns={spec})").to_arrow_reader(audit_fast.BATCH_ROWS)
    return sum(b.num_rows for b in reader)


def run_copy_hash(path: str, lines: int) -> int:
    from kubeforensics.case.manifest import copy_and_hash

    with tempfile.TemporaryDirectory(dir=Path(path).parent) as d:
        copy_and_hash(Path(path), Path(d))
    return lines


def count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))


def parquet_write_setup(path: str) -> list:
    from kubeforensics.sources import READERS, FileIngest

    return list(FileIngest(path, READERS, "audit", evidence_id="bench").batches())


def run_parquet_write(path: str, batches: list) -> int:
    from kubeforensics.case.store import _TableWriter

    with tempfile.TemporaryDirectory(dir=Path(path).parent) as d:
        out = _TableWriter(Path(d), "bench")
        for spec, table in batches:
            out.put(spec, table)
        out.close()
    return sum(t.num_rows for _, t in batches)


def run_ours(path: str) -> int:
    import kubeforensics as kf

    with tempfile.TemporaryDirectory() as d:
        case = kf.Case.create(Path(d) / "case")
        rep = case.ingest(path, progress=False)
        assert rep.totals["quarantined"] == 0
        return rep.totals["ingested"]


def run_parse_only(path: str) -> int:
    from kubeforensics.sources import READERS, FileIngest

    ing = FileIngest(path, READERS, "audit", evidence_id="bench")
    n = sum(t.num_rows for _, t in ing.batches())
    assert ing.account.quarantined == 0
    return n


def run_naive(path: str) -> int:
    import pandas as pd

    return len(pd.read_json(path, lines=True))


METHODS = {"raw-pyarrow": run_raw_pyarrow, "raw-duckdb": run_raw_duckdb, "raw-duckdb-ours": run_raw_duckdb_ours,
           "kf-parse-only": run_parse_only, "kubeforensics": run_ours, "kf-quarter": run_ours,
           "naive-pandas": run_naive, "copy-hash": run_copy_hash, "parquet-write": run_parquet_write}
#: Untimed preparation of a method (its result is the method's second argument).
SETUP = {"parquet-write": parquet_write_setup, "copy-hash": count_lines}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(method: str, path: str) -> None:
    # imported before the clock starts, so that no method is charged for them
    import duckdb  # noqa: F401
    import pyarrow.json  # noqa: F401

    import kubeforensics.case.store
    import kubeforensics.sources.audit_fast  # noqa: F401

    args = (path, SETUP[method](path)) if method in SETUP else (path,)
    c, t = _cpu(), time.perf_counter()
    n = METHODS[method](*args)
    dt, cpu = time.perf_counter() - t, _cpu() - c
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"method": method, "events": n, "seconds": dt, "cpu": cpu, "peak_mb": peak_kb / 1024}))


def measure(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(path)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--naive-events", type=int, default=100_000)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--keep", type=Path, help="keep generated files in this folder")
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(args.keep or tempfile.mkdtemp(prefix="kf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    big, small, quarter = work / "audit-big.log", work / "audit-small.log", work / "audit-quarter.log"
    t = time.perf_counter()
    size = generate(big, args.events)
    generate(small, args.naive_events)
    qsize = generate(quarter, args.events // 4, seed=2)
    print(f"# {datetime.now(UTC):%Y-%m-%d} {platform.node()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {args.events:,} audit events, {size / 1e6:.0f} MB "
          f"(generated in {time.perf_counter() - t:.0f} s)")
    rows = []
    for method in ("raw-pyarrow", "raw-duckdb", "raw-duckdb-ours", "kf-parse-only", "kubeforensics"):
        rows.append(measure(method, big))
    rows.append(measure("kf-quarter", quarter))
    rows.append(measure("naive-pandas", small))
    raw_best = max(r["events"] / r["seconds"] for r in rows[:2])
    print(f"{'method':<16}{'events':>12}{'seconds':>10}{'CPU-s':>8}{'events/s':>12}{'% of raw':>10}{'peak MB':>10}")
    for r in rows:
        rate = r["events"] / r["seconds"]
        print(f"{r['method']:<16}{r['events']:>12,}{r['seconds']:>10.2f}{r['cpu']:>8.2f}{rate:>12,.0f}"
              f"{100 * rate / raw_best:>9.0f}%{r['peak_mb']:>10,.0f}")
    floor = [rows[2], measure("copy-hash", big), measure("parquet-write", big)]
    cores = os.cpu_count() or 1
    need = sum(r["cpu"] for r in floor)
    steps = " + ".join(f"{r['method']} {r['cpu']:.2f}" for r in floor)
    # CPU-seconds against CPU-seconds: the raw read keeps every core busy, so its rate is cores / its CPU per event
    print(f"# floor: {steps} = {need:.2f} CPU-s for {args.events:,} events, {100 * rows[1]['cpu'] / need:.0f}% of "
          f"raw duckdb's {rows[1]['cpu']:.2f} CPU-s (at best {args.events / (need / cores):,.0f} events/s on {cores} "
          f"cores) before any normalisation; kubeforensics took {rows[4]['cpu']:.2f} CPU-s "
          f"({100 * rows[1]['cpu'] / rows[4]['cpu']:.0f}% of raw by CPU)")
    full, part = rows[4], rows[5]
    print(f"# peak memory: {part['peak_mb']:,.0f} MB for {qsize / 1e6:.0f} MB, {full['peak_mb']:,.0f} MB for "
          f"{size / 1e6:.0f} MB ({full['peak_mb'] / max(size / 1e6, 1):.2f} MB per MB of input); "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.keep:
        for p in (big, small, quarter):
            p.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
