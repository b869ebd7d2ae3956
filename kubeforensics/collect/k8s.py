"""Live collection from the Kubernetes API: a paged snapshot, then optionally a watch.

>>> from kubeforensics.collect.k8s import K8sCollector            # doctest: +SKIP
>>> col = K8sCollector.from_config(context="prod")                # doctest: +SKIP
>>> record = col.collect(case, namespaces=["shop"], watch="10m")  # doctest: +SKIP

* Lists are paged (``limit``/``continue``) until the server stops returning a
  continue token; an expired token (``410``) continues from the token the server
  returns with the error, and the record notes the list was not one consistent
  snapshot.
* A watch resumes from the last resourceVersion it saw (objects and bookmarks);
  ``410 Gone`` (an HTTP status or an ``ERROR`` event) triggers a re-list whose
  differences with what is known become synthetic ADDED/MODIFIED/DELETED events,
  so no change is lost across the gap.
* 429, 5xx and connection errors are retried with exponential backoff; 401/403/404
  are recorded per resource and collection goes on.
* Objects are kept as the API returned them (raw JSON, ``_preload_content=False``:
  nothing is lost to model classes), with ``kind``/``apiVersion`` set.  Secrets are
  never listed unless asked for, and then without values.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import urllib3
from kubernetes import config as k8s_config
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from kubeforensics.case.manifest import now_iso
from kubeforensics.collect.common import Backoff, parse_duration, with_retries
from kubeforensics.collect.k8s_api import (
    RESOURCES,
    ReadOnlyApiClient,
    Resource,
    api_for,
    resolve,
    strip_secret,
)
from kubeforensics.errors import CollectorError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def is_transient(exc: BaseException) -> bool:
    """429/5xx answers and connection-level failures are worth retrying; the rest is not."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS or exc.status == 0
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def _error(exc: BaseException, resource: str, namespace: str | None) -> dict[str, Any]:
    status = exc.status if isinstance(exc, ApiException) else None
    reason = exc.reason if isinstance(exc, ApiException) else type(exc).__name__
    message = ""
    if isinstance(exc, ApiException) and exc.body:
        try:
            message = str(orjson.loads(exc.body).get("message", ""))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            message = str(exc.body)[:500]
    else:
        message = str(exc)[:500]
    return {"resource": resource, "namespace": namespace, "status": status, "reason": reason,
            "message": message, "time": now_iso()}


class K8sCollector:
    """Reads a cluster through the official client; never writes (see :mod:`.k8s_api`).

    Parameters
    ----------
    api_client
        A :class:`ReadOnlyApiClient` (build one with :meth:`from_config`).
    target
        What is being collected from: cluster, context, user entry name, server URL
        (never credentials); copied into the collection record.
    page_size
        ``limit`` of each list request.
    backoff
        Retry policy for transient failures.
    request_timeout
        Seconds for one list request.
    watch_chunk
        ``timeoutSeconds`` of one watch request; the watch reconnects from the last
        resourceVersion after each.
    """

    def __init__(self, api_client: ReadOnlyApiClient, target: dict[str, Any], *, page_size: int = 500,
                 backoff: Backoff | None = None, request_timeout: float = 60.0, watch_chunk: int = 300) -> None:
        if not isinstance(api_client, ReadOnlyApiClient):
            raise CollectorError("the Kubernetes collector needs a ReadOnlyApiClient")
        self._client = api_client
        self.target = dict(target)
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.request_timeout = request_timeout
        self.watch_chunk = watch_chunk
        self._apis: dict[str, Any] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, *, kubeconfig: str | Path | None = None, context: str | None = None,
                    **kwargs: Any) -> K8sCollector:
        """From a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``), else in-cluster config."""
        path = kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config"
        if kubeconfig is None and not Path(str(path).split(os.pathsep)[0]).expanduser().is_file() \
                and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(**kwargs)
        cfg = Configuration()
        try:
            k8s_config.load_kube_config(config_file=str(path), context=context, client_configuration=cfg)
            contexts, active = k8s_config.list_kube_config_contexts(config_file=str(path))
        except (k8s_config.ConfigException, OSError) as exc:
            raise CollectorError(f"cannot load kubeconfig {path}: {exc}",
                                 hint="pass --kubeconfig PATH and --context NAME") from exc
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        ctx = (chosen or {}).get("context", {})
        target = {"source": "kubeconfig", "kubeconfig": str(path), "context": (chosen or {}).get("name"),
                  "cluster": ctx.get("cluster"), "user": ctx.get("user"), "server": cfg.host}
        return cls(ReadOnlyApiClient(cfg), target, **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> K8sCollector:
        """From the pod's service account (in-cluster config)."""
        cfg = Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException as exc:
            raise CollectorError(f"no in-cluster configuration: {exc}") from exc
        ns = SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.is_file() else None
        target = {"source": "in-cluster", "server": cfg.host, "service_account_namespace": ns}
        return cls(ReadOnlyApiClient(cfg), target, **kwargs)

    def _api(self, name: str) -> Any:
        if name not in self._apis:
            self._apis[name] = api_for(self._client, name)
        return self._apis[name]

    def _call(self, res: Resource, namespace: str | None, **params: Any) -> Any:
        api = self._api(res.api)
        if namespace and res.list_namespaced is not None:  # i.e. res.namespaced, spelled so mypy narrows
            return getattr(api, res.list_namespaced)(namespace, _preload_content=False, **params)
        return getattr(api, res.list_all)(_preload_content=False, **params)

    def server_version(self) -> str | None:
        try:
            resp = self._api("VersionApi").get_code(_preload_content=False, _request_timeout=self.request_timeout)
            return orjson.loads(resp.data).get("gitVersion")
        except Exception as exc:  # noqa: BLE001 - the version is informative only
            log.info("server version unavailable: %s", exc)
            return None

    # ------------------------------------------------------------------ list
    def list_pages(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, notes: list[str] | None = None
                   ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Yield ``(objects, list resourceVersion)`` page by page until no continue token is left."""
        token: str | None = None
        expired = 0
        while True:
            params: dict[str, Any] = {"limit": self.page_size, "_request_timeout": self.request_timeout}
            if token:
                params["_continue"] = token
            if label_selector:
                params["label_selector"] = label_selector
            if field_selector:
                params["field_selector"] = field_selector
            try:
                resp = with_retries(partial(self._call, res, namespace, **params), f"list {res.name}",
                                    is_transient, self.backoff)
            except ApiException as exc:
                new_token = _expired_continue(exc) if token else None
                expired += 1
                if new_token is None or expired > 5:
                    raise
                if notes is not None:
                    notes.append(f"{res.name}: continue token expired; the list went on from the server's "
                                 "new token and is not one consistent snapshot")
                token = new_token
                continue
            expired = 0
            body = orjson.loads(resp.data)
            meta = body.get("metadata") or {}
            items = [self._complete(res, item) for item in body.get("items") or []]
            token = meta.get("continue") or None
            yield items, meta.get("resourceVersion")
            if not token:
                return

    def list(self, res: Resource | str, namespace: str | None = None, **kw: Any
             ) -> tuple[list[dict[str, Any]], str | None, int]:
        """Every object of one resource: ``(objects, resourceVersion, pages)``."""
        r = RESOURCES[res] if isinstance(res, str) else res
        out: list[dict[str, Any]] = []
        rv, pages = None, 0
        for items, rv in self.list_pages(r, namespace, **kw):
            out.extend(items)
            pages += 1
        return out, rv, pages

    @staticmethod
    def _complete(res: Resource, item: dict[str, Any]) -> dict[str, Any]:
        obj = {"apiVersion": res.group_version, "kind": res.kind, **item}
        return strip_secret(obj) if res.kind == "Secret" else obj

    # ------------------------------------------------------------------ logs
    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> bytes:
        """The log of one container (timestamps on), as bytes."""
        api = self._api("CoreV1Api")
        kw: dict[str, Any] = {"timestamps": True, "_preload_content": False,
                              "_request_timeout": self.request_timeout}
        if container:
            kw["container"] = container
        resp = with_retries(lambda: api.read_namespaced_pod_log(pod, namespace, **kw), f"log {namespace}/{pod}",
                            is_transient, self.backoff)
        return resp.data

    # ------------------------------------------------------------------ watch
    def watch(self, res: Resource, namespace: str | None, resource_version: str | None, seconds: float,
              known: dict[str, dict[str, Any]], emit: Callable[[str, dict[str, Any], str], None],
              stats: Counter[str], stop: threading.Event | None = None, chunk: int | None = None) -> str | None:
        """Watch one resource for ``seconds``, resuming from the last resourceVersion.

        ``known`` maps uid to the last object seen (filled from the snapshot); ``emit(type,
        object, via)`` receives every event, ``via`` being ``watch`` or ``relist`` (synthetic
        events after a ``410 Gone``).  Returns the last resourceVersion.
        """
        deadline = time.monotonic() + seconds
        rv = resource_version
        failures = 0
        while (remaining := deadline - time.monotonic()) >= 0.5 and not (stop and stop.is_set()):
            timeout = max(1, round(min(remaining, chunk or self.watch_chunk)))
            params: dict[str, Any] = {"watch": True, "timeout_seconds": timeout, "allow_watch_bookmarks": True,
                                      "_request_timeout": timeout + 30}
            if rv:
                params["resource_version"] = rv
            try:
                if rv is None:
                    rv = self._relist(res, namespace, known, emit, stats)
                    continue
                resp = self._call(res, namespace, **params)
                stats["streams"] += 1
                try:
                    for line in iter_resp_lines(resp):
                        if not line or not line.strip():
                            continue
                        ev = orjson.loads(line)
                        etype, obj = ev.get("type"), ev.get("object") or {}
                        if etype == "ERROR":
                            code = obj.get("code")
                            raise ApiException(status=code, reason=f"{obj.get('reason')}: {obj.get('message')}")
                        new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if etype == "BOOKMARK":
                            stats["bookmarks"] += 1
                        else:
                            full = self._complete(res, obj)
                            uid = (full.get("metadata") or {}).get("uid") or ""
                            if etype == "DELETED":
                                known.pop(uid, None)
                            else:
                                known[uid] = full
                            emit(str(etype), full, "watch")
                            stats[str(etype)] += 1
                        if new_rv:
                            rv = new_rv
                        if time.monotonic() >= deadline or (stop and stop.is_set()):
                            break
                finally:
                    resp.close()
                    resp.release_conn()
                failures = 0
            except ApiException as exc:
                if exc.status == 410:
                    stats["gone"] += 1
                    log.info("watch %s: resourceVersion %s is gone; re-listing", res.name, rv)
                    rv = None
                    continue
                if not is_transient(exc):
                    raise
                failures += 1
                stats["reconnects"] += 1
                if failures >= self.backoff.attempts:
                    raise
                self.backoff.sleep(self.backoff.delay(failures - 1))
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                failures += 1
                stats["reconnects"] += 1
                if failures >= self.backoff.attempts:
                    raise
                self.backoff.sleep(self.backoff.delay(failures - 1))
        return rv

    def _relist(self, res: Resource, namespace: str | None, known: dict[str, dict[str, Any]],
                emit: Callable[[str, dict[str, Any], str], None], stats: Counter[str]) -> str | None:
        """List again and turn differences with ``known`` into synthetic events."""
        objs, rv, _ = self.list(res, namespace)
        stats["relists"] += 1
        seen = set()
        for obj in objs:
            meta = obj.get("metadata") or {}
            uid = meta.get("uid") or ""
            seen.add(uid)
            old = known.get(uid)
            if old is None:
                emit("ADDED", obj, "relist")
                stats["ADDED"] += 1
            elif (old.get("metadata") or {}).get("resourceVersion") != meta.get("resourceVersion"):
                emit("MODIFIED", obj, "relist")
                stats["MODIFIED"] += 1
            known[uid] = obj
        for uid in [u for u in known if u not in seen]:
            emit("DELETED", known.pop(uid), "relist")
            stats["DELETED"] += 1
        return rv


def _expired_continue(exc: ApiException) -> str | None:
    """The continue token a 410 ResourceExpired answer carries, if any."""
    if exc.status != 410 or not exc.body:
        return None
    try:
        return (orjson.loads(exc.body).get("metadata") or {}).get("continue") or None
    except (orjson.JSONDecodeError, AttributeError):
        return None


# ---------------------------------------------------------------------- the whole collection
def collect(collector: K8sCollector, case: Any, *, namespaces: list[str] | tuple[str, ...] = (),
            resources: list[str] | tuple[str, ...] | None = None, watch: str | float | None = None,
            pod_logs: list[str] | tuple[str, ...] = (), label_selector: str | None = None,
            progress: bool | None = None) -> dict[str, Any]:
    """Snapshot (and optionally watch) the cluster into ``case``; returns the collection record.

    Parameters
    ----------
    namespaces
        Restrict namespaced resources to these namespaces (cluster-scoped ones are always read).
    resources
        Resource names from :data:`~kubeforensics.collect.k8s_api.RESOURCES` (default: all but secrets).
    watch
        Watch for this long after the snapshot (``"10m"``, seconds).
    pod_logs
        ``namespace/pod`` or ``namespace/pod/container`` whose logs are kept as evidence.
    """
    from kubeforensics.collect.k8s_run import Run

    return Run(collector, case, namespaces=list(namespaces), resources=resolve(resources),
               watch_seconds=parse_duration(watch) if watch else 0.0, pod_logs=list(pod_logs),
               label_selector=label_selector, progress=progress).run()


__all__ = ["K8sCollector", "collect", "is_transient"]
