"""Throughput of the Elasticsearch collector (documents/s), in both document shapes.

    .venv/bin/python benchmarks/collect_es.py                    # local noida-db, 20,000 docs per shape
    .venv/bin/python benchmarks/collect_es.py --docs 50000
    .venv/bin/python benchmarks/collect_es.py --url http://es:9200   # an existing server (indices kf-bench-*)

Prints, per shape: seeding time, the collector's transfer (PIT + search_after pages,
mapping, staging), the case ingest, and documents/s end to end, plus a bare
``search_after`` loop over the same documents for comparison (what the server alone costs).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch

from kubeforensics.case import Case
from kubeforensics.collect.es import EsCollector, IndexSpec, collect
from tests.collect import es_data as d
from tests.collect.es_server import NoidaServer

WINDOW = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-05T00:00:00Z"}


def bare_loop(es: Elasticsearch, index: str, page: int) -> float:
    t = time.perf_counter()
    pit = es.open_point_in_time(index=index, keep_alive="2m")["id"]
    after = None
    n = 0
    while True:
        kw = {"search_after": after} if after else {}
        r = es.search(pit={"id": pit, "keep_alive": "2m"}, size=page, sort=[{"@timestamp": "asc"},
                                                                            {"_shard_doc": "asc"}], **kw)
        hits = r["hits"]["hits"]
        n += len(hits)
        if len(hits) < page:
            break
        after = hits[-1]["sort"]
    es.close_point_in_time(id=pit)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20_000, help="documents per shape")
    ap.add_argument("--page", type=int, default=5000)
    ap.add_argument("--url", help="use this server instead of starting noida-db")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-es-"))
    srv = None
    url = args.url
    if not url:
        srv = NoidaServer(tmp / "noida").start()
        url = srv.url
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()}, server {url}, "
          f"{args.docs:,} documents per shape, page {args.page}")
    try:
        es = Elasticsearch(url, request_timeout=300)
        shapes = [("raw", "kf-bench-raw", d.raw_doc, d.RAW_MAPPING),
                  ("ecs", "kf-bench-ecs", d.ecs_audit_doc, d.ECS_MAPPING)]
        for shape, index, gen, mapping in shapes:
            t = time.perf_counter()
            d.seed(es, index, (gen(i) for i in range(args.docs)), mapping)
            seed_s = time.perf_counter() - t
            bare = bare_loop(es, index, args.page)
            col = EsCollector.from_env(url, page_size=args.page)
            case = Case.create(tmp / f"case-{shape}")
            t = time.perf_counter()
            rec = collect(col, case, [IndexSpec(index, shape)], progress=False, overview=False, **WINDOW)
            total_s = time.perf_counter() - t
            assert rec["collected"] == args.docs and rec["complete"], rec["partial_reasons"]
            print(f"{shape:4} seed {seed_s:6.1f}s | bare PIT loop {bare:8,.0f} docs/s | collect+ingest "
                  f"{total_s:6.1f}s = {args.docs / total_s:8,.0f} docs/s end to end")
            es.indices.delete(index=index)
    finally:
        if srv:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
