"""One Elasticsearch collection run (see :func:`kubeforensics.collect.es.collect`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from kubeforensics import __version__
from kubeforensics.case.manifest import now_iso
from kubeforensics.collect.common import JsonlWriter, Staging, hand_over, new_collection_id
from kubeforensics.collect.es import EsCollector, _iso_ms
from kubeforensics.collect.es_mapping import IndexSpec, to_record

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


class EsRun:
    def __init__(self, c: EsCollector, case: Any, specs: list[IndexSpec], since: str, until: str,
                 filters: dict[str, list[str]], extra: list[Mapping[str, Any]], key: str,
                 previous: dict[str, Any] | None, progress: bool | None, overview: bool) -> None:
        self.c, self.case, self.specs = c, case, specs
        self.since, self.until, self.filters, self.extra = since, until, filters, extra
        self.previous, self.progress, self.want_overview = previous, progress, overview
        self.record: dict[str, Any] = {
            "id": new_collection_id(), "collector": "elasticsearch", "tool_version": __version__,
            "started": now_iso(), "query_key": key,
            "target": {"url": c.url, "auth": c.auth},
            "parameters": {"indices": [{"pattern": s.pattern, "shape": s.shape, "raw_field": s.raw_field,
                                        "time_field": s.time_field} for s in specs],
                           "since": since, "until": until, "filters": filters, "extra": extra,
                           "page_size": c.page_size},
        }
        self.staging = Staging(f"es-{self.record['id'][:8]}")
        self.writers: dict[str, JsonlWriter] = {}

    def _writer(self, n: int, fmt: str) -> JsonlWriter:
        name = f"es/{n}-{fmt}.jsonl"
        if name not in self.writers:
            self.writers[name] = self.staging.open_jsonl(name)
        return self.writers[name]

    def _prev_spec(self, n: int) -> dict[str, Any] | None:
        if not self.previous:
            return None
        per = self.previous.get("indices") or []
        return per[n] if n < len(per) else None

    def collect_spec(self, n: int, spec: IndexSpec, hits_log: JsonlWriter, bar: Any) -> dict[str, Any]:
        prev = self._prev_spec(n)
        info: dict[str, Any] = {"pattern": spec.pattern, "shape": spec.shape, "collected": 0,
                                "collected_before": 0, "formats": {}, "status": "complete"}
        if prev and self.previous and prev.get("status") == "complete":  # prev implies self.previous
            info.update(status="complete", collected_before=prev["collected_total"], collected_total=prev[
                "collected_total"], server_total=prev.get("server_total"), difference=prev.get("difference"),
                note=f"already collected by {self.previous['id']}")
            return info
        after = exclude = None
        if prev and self.previous and prev.get("resume"):
            after = _iso_ms(prev["resume"]["after_ms"])
            exclude = prev["resume"]["ids_at_after"]
            info["collected_before"] = prev.get("collected_total", 0)
            info["resumed_from"] = {"collection": self.previous["id"], "after": after, "excluded_ids": len(exclude)}
        full_query = self.c.build_query(spec, self.since, self.until, self.filters, self.extra)
        query = self.c.build_query(spec, self.since, self.until, self.filters, self.extra, after=after,
                                   exclude_ids=exclude or ())
        state: dict[str, Any] = {}
        try:
            for h in self.c.hits(spec, query, state):
                if bar is not None and bar.total is None and "total" in state:
                    bar.total = state["total"]
                    bar.refresh()
                fmt, rec = to_record(h.get("_source") or {}, spec)
                w = self._writer(n, fmt)
                w.write(rec)
                hits_log.write({"file": w.path.name, "line": w.count, "index": h["_index"], "id": h["_id"]})
                info["formats"][fmt] = info["formats"].get(fmt, 0) + 1
                info["collected"] += 1
                if bar is not None:
                    bar.update(1)
        except Exception as exc:  # noqa: BLE001 - kept as a partial collection with the reason
            info["status"] = "partial"
            info["error"] = _describe(exc)
            log.warning("collection from %s stopped after %d documents: %s", spec.pattern, info["collected"],
                        info["error"])
        info["pages"] = state.get("pages", 0)
        info["collected_total"] = info["collected_before"] + info["collected"]
        if "after_ms" in state:
            info["resume"] = {"after_ms": state["after_ms"], "ids_at_after": state["ids_at_after"]}
        elif prev and prev.get("resume"):
            info["resume"] = prev["resume"]
        try:  # reconcile against the server's count of the whole query (not only the resumed part)
            info["server_total"] = self.c.count(spec, full_query) if (after or info["status"] != "complete") \
                else state.get("total")
        except Exception as exc:  # noqa: BLE001
            info["server_total"] = state.get("total") if not after else None
            info.setdefault("error", _describe(exc))
        if info["server_total"] is not None:
            info["difference"] = info["server_total"] - info["collected_total"]
            if info["difference"] and info["status"] == "complete":
                info["status"] = "mismatch"
        if info["status"] == "complete":
            info.pop("resume", None)
        return info

    def run(self) -> dict[str, Any]:
        rec = self.record
        if self.previous:
            rec["resumes"] = self.previous["id"]
        if self.want_overview:
            try:
                rec["overview"] = self.c.overview(self.specs, self.since, self.until, self.filters)
            except Exception as exc:  # noqa: BLE001 - the overview is informative
                rec["overview"] = {"error": _describe(exc)}
        bar = None
        if self.progress or (self.progress is None and sys.stderr.isatty()):
            from tqdm.auto import tqdm

            bar = tqdm(unit=" docs", desc="elasticsearch", leave=False)
        hits_log = JsonlWriter(self.staging.path / "es-hits.jsonl")
        try:
            rec["indices"] = [self.collect_spec(n, s, hits_log, bar) for n, s in enumerate(self.specs)]
        finally:
            hits_log.close()
            for w in self.writers.values():
                w.close()
            if bar is not None:
                bar.close()
        self.staging.other_files.append((hits_log.path, "es-hit-index"))
        per = rec["indices"]
        rec["collected"] = sum(i["collected"] for i in per)
        rec["collected_total"] = sum(i["collected_total"] for i in per)
        totals = [i.get("server_total") for i in per]
        rec["server_total"] = sum(totals) if None not in totals else None
        rec["partial"] = any(i["status"] != "complete" for i in per)
        rec["complete"] = not rec["partial"]
        rec["partial_reasons"] = [
            f"{i['pattern']}: {i['status']}, {i['collected_total']} of {i.get('server_total')} documents"
            + (f" ({i['error']})" if i.get("error") else "") for i in per if i["status"] != "complete"]
        summary = {"target": {"url": self.c.url}, "indices": [s.pattern for s in self.specs],
                   "since": self.since, "until": self.until, "filters": self.filters,
                   "collected": rec["collected"], "server_total": rec["server_total"], "partial": rec["partial"]}
        try:
            hand_over(self.case, self.staging, rec, collected_by="elasticsearch", summary=summary,
                      progress=self.progress)
        finally:
            self.staging.cleanup()
        return rec


__all__ = ["EsRun"]
