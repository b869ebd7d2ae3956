"""One Kubernetes collection run: snapshot every resource, watch, fetch logs, hand over to the case."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import orjson
from kubernetes.client.exceptions import ApiException

from kubeforensics import __version__
from kubeforensics.case.manifest import now_iso
from kubeforensics.collect.common import JsonlWriter, Staging, hand_over, new_collection_id
from kubeforensics.collect.k8s import K8sCollector, _error
from kubeforensics.collect.k8s_api import Resource

log = logging.getLogger(__name__)


class Run:
    """State of one collection (see :func:`kubeforensics.collect.k8s.collect`)."""

    def __init__(self, collector: K8sCollector, case: Any, *, namespaces: list[str], resources: list[Resource],
                 watch_seconds: float, pod_logs: list[str], label_selector: str | None,
                 progress: bool | None) -> None:
        self.c = collector
        self.case = case
        self.namespaces = namespaces
        self.resources = resources
        self.watch_seconds = watch_seconds
        self.pod_logs = pod_logs
        self.label_selector = label_selector
        self.progress = progress
        self.errors: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.per_resource: dict[str, dict[str, Any]] = {}
        self.known: dict[tuple[str, str | None], dict[str, dict[str, Any]]] = {}
        self.list_rv: dict[tuple[str, str | None], str | None] = {}
        self.record: dict[str, Any] = {
            "id": new_collection_id(), "collector": "k8s-api", "tool_version": __version__,
            "started": now_iso(), "target": collector.target,
            "parameters": {"namespaces": namespaces, "resources": [r.name for r in resources],
                           "page_size": collector.page_size, "watch_seconds": watch_seconds,
                           "pod_logs": pod_logs, "label_selector": label_selector},
        }
        self.staging = Staging(f"k8s-{self.record['id'][:8]}")

    def _scopes(self, res: Resource) -> list[str | None]:
        return list(self.namespaces) if (res.namespaced and self.namespaces) else [None]

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, bar: Any) -> None:
        for res in self.resources:
            info: dict[str, Any] = {"kind": res.kind, "api_version": res.group_version, "collected": 0,
                                    "pages": 0, "status": "ok", "resource_versions": {}}
            self.per_resource[res.name] = info
            with self.staging.open_jsonl(f"k8s/{res.name}.jsonl") as out:
                for ns in self._scopes(res):
                    known = self.known.setdefault((res.name, ns), {})
                    try:
                        for items, rv in self.c.list_pages(res, ns, label_selector=self.label_selector,
                                                           notes=self.notes):
                            out.write_many(items)
                            for o in items:
                                known[(o.get("metadata") or {}).get("uid") or ""] = o
                            info["pages"] += 1
                            info["collected"] += len(items)
                            info["resource_versions"][ns or "*"] = rv
                            self.list_rv[(res.name, ns)] = rv
                            if bar is not None:
                                bar.update(len(items))
                    except Exception as exc:  # noqa: BLE001 - recorded per resource; collection goes on
                        err = _error(exc, res.name, ns)
                        self.errors.append(err)
                        info["status"] = "forbidden" if err["status"] == 403 else "failed"
                        self.list_rv.pop((res.name, ns), None)
                        log.warning("list %s%s: %s %s", res.name, f" in {ns}" if ns else "", err["status"],
                                    err["reason"])

    # ------------------------------------------------------------------ watch
    def watch(self) -> dict[str, Any]:
        lock = threading.Lock()
        stats: dict[str, Counter[str]] = {}
        writers: dict[str, JsonlWriter] = {}
        event_log = self.staging.path / "watch-journal.jsonl"
        event_log.parent.mkdir(parents=True, exist_ok=True)
        elog = open(event_log, "ab")  # noqa: SIM115 - closed after the watch threads
        failures: list[dict[str, Any]] = []

        def emitter(res: Resource, ns: str | None):
            def emit(etype: str, obj: dict[str, Any], via: str) -> None:
                meta = obj.get("metadata") or {}
                with lock:
                    w = writers.get(res.name)
                    if w is None:
                        w = writers[res.name] = self.staging.open_jsonl(f"k8s/watch-{res.name}.jsonl")
                    w.write(obj)
                    elog.write(orjson.dumps({
                        "received": now_iso(), "type": etype, "via": via, "resource": res.name,
                        "namespace": meta.get("namespace"), "name": meta.get("name"), "uid": meta.get("uid"),
                        "resourceVersion": meta.get("resourceVersion"), "line": w.count}) + b"\n")
            return emit

        def worker(res: Resource, ns: str | None) -> None:
            st = stats.setdefault(f"{res.name}{'/' + ns if ns else ''}", Counter())
            try:
                self.c.watch(res, ns, self.list_rv[(res.name, ns)], self.watch_seconds,
                             self.known[(res.name, ns)], emitter(res, ns), st)
            except Exception as exc:  # noqa: BLE001 - recorded, the other watches go on
                failures.append(_error(exc, res.name, ns) | {"during": "watch"})

        threads = [threading.Thread(target=worker, args=(res, ns), daemon=True, name=f"watch-{res.name}")
                   for res in self.resources for ns in self._scopes(res) if (res.name, ns) in self.list_rv]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.watch_seconds + 120)
        for w in writers.values():
            w.close()
        elog.close()
        self.staging.other_files.append((event_log, "k8s-watch-events"))
        self.errors.extend(failures)
        total: Counter[str] = Counter()
        for st in stats.values():
            total.update(st)
        return {"seconds": self.watch_seconds, "elapsed": round(time.monotonic() - start, 3),
                "events": {k: total[k] for k in ("ADDED", "MODIFIED", "DELETED") if total[k]},
                "gone": total["gone"], "relists": total["relists"], "reconnects": total["reconnects"],
                "bookmarks": total["bookmarks"], "streams": total["streams"],
                "per_resource": {k: dict(v) for k, v in sorted(stats.items())}}

    # ------------------------------------------------------------------ logs
    def logs(self) -> list[dict[str, Any]]:
        out = []
        for spec in self.pod_logs:
            parts = spec.split("/")
            if len(parts) not in (2, 3):
                self.errors.append({"resource": "pods/log", "namespace": None, "status": None,
                                    "reason": "bad pod reference", "message": f"{spec!r}: use ns/pod[/container]",
                                    "time": now_iso()})
                continue
            ns, pod = parts[0], parts[1]
            container = parts[2] if len(parts) == 3 else None
            try:
                data = self.c.pod_log(ns, pod, container)
            except ApiException as exc:
                self.errors.append(_error(exc, "pods/log", ns) | {"pod": pod, "container": container})
                continue
            name = f"logs/{ns}/{pod}{'.' + container if container else ''}.log"
            self.staging.write_other(name, data, "pod-log")
            out.append({"namespace": ns, "pod": pod, "container": container, "bytes": len(data)})
        return out

    # ------------------------------------------------------------------ all of it
    def run(self) -> dict[str, Any]:
        rec = self.record
        rec["server_version"] = self.c.server_version()
        bar = _bar(self.progress)
        try:
            self.snapshot(bar)
        finally:
            if bar is not None:
                bar.close()
        rec["snapshot_finished"] = now_iso()
        if self.watch_seconds > 0:
            rec["watch"] = self.watch()
        if self.pod_logs:
            rec["pod_logs"] = self.logs()
        rec["resources"] = self.per_resource
        rec["counts"] = {"objects": sum(i["collected"] for i in self.per_resource.values()),
                         **{n: i["collected"] for n, i in self.per_resource.items()}}
        rec["errors"] = self.errors
        rec["forbidden"] = sorted({e["resource"] for e in self.errors if e.get("status") == 403})
        reasons = [f"{e['resource']}{' in ' + e['namespace'] if e.get('namespace') else ''}: "
                   f"{e.get('status') or ''} {e.get('reason') or ''}".strip() for e in self.errors]
        rec["notes"] = self.notes
        rec["complete"] = not reasons
        rec["partial"] = bool(reasons)
        rec["partial_reasons"] = reasons
        summary = {"target": {k: v for k, v in self.c.target.items() if k in ("cluster", "context", "server")},
                   "resources": [r.name for r in self.resources], "namespaces": self.namespaces,
                   "objects": rec["counts"]["objects"], "forbidden": rec["forbidden"], "partial": rec["partial"]}
        try:
            hand_over(self.case, self.staging, rec, collected_by="k8s-api", summary=summary,
                      progress=self.progress)
        finally:
            self.staging.cleanup()
        return rec


def _bar(progress: bool | None) -> Any:
    import sys

    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(unit=" objects", desc="kubernetes snapshot", leave=False)
