"""A Kubernetes API **test server** for the collector tests.  NOT a Kubernetes API server.

No kube-apiserver can be installed on the build machines, so the tests run this small
standard-library HTTP server on 127.0.0.1 and point the real ``kubernetes`` client at
it through a generated kubeconfig.  It implements just what the collector relies on,
with the API server's semantics:

* list with ``limit``/``continue`` paging (keys in namespace/name order), ``labelSelector``
  (``k=v``, ``k!=v``, ``k``, ``!k``) and ``fieldSelector`` (dotted paths, ``=``/``==``/``!=``);
* get of one object, pod logs, ``/version``;
* one global resourceVersion counter; every change is kept in a history that can be
  compacted (:meth:`FakeCluster.compact`), after which a watch from an older
  resourceVersion gets an ``ERROR`` event with ``410 Gone`` and an expired continue
  token gets ``410`` with a fresh token, as etcd compaction does;
* watch streams (``watch=true``) that replay history after ``resourceVersion``, then wait
  for changes and end after ``timeoutSeconds``, with a BOOKMARK before the end when
  ``allowWatchBookmarks`` is set;
* ``403 Forbidden`` for the resources named in ``forbidden``, ``401`` without the bearer
  token, ``405`` (recorded in ``writes``) for every method but GET.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

TOKEN = "test-token-not-a-secret"


@dataclass(frozen=True)
class Kind:
    resource: str
    group_version: str
    kind: str
    namespaced: bool


KINDS = [
    Kind("namespaces", "v1", "Namespace", False), Kind("nodes", "v1", "Node", False),
    Kind("pods", "v1", "Pod", True), Kind("serviceaccounts", "v1", "ServiceAccount", True),
    Kind("events", "v1", "Event", True), Kind("secrets", "v1", "Secret", True),
    Kind("events", "events.k8s.io/v1", "Event", True),
    Kind("roles", "rbac.authorization.k8s.io/v1", "Role", True),
    Kind("rolebindings", "rbac.authorization.k8s.io/v1", "RoleBinding", True),
    Kind("clusterroles", "rbac.authorization.k8s.io/v1", "ClusterRole", False),
    Kind("clusterrolebindings", "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", False),
    Kind("deployments", "apps/v1", "Deployment", True), Kind("replicasets", "apps/v1", "ReplicaSet", True),
    Kind("daemonsets", "apps/v1", "DaemonSet", True), Kind("statefulsets", "apps/v1", "StatefulSet", True),
    Kind("jobs", "batch/v1", "Job", True), Kind("cronjobs", "batch/v1", "CronJob", True),
    Kind("mutatingwebhookconfigurations", "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", False),
    Kind("validatingwebhookconfigurations", "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
         False),
    Kind("certificatesigningrequests", "certificates.k8s.io/v1", "CertificateSigningRequest", False),
]
BY_PATH = {(k.group_version, k.resource): k for k in KINDS}
BY_KIND = {(k.group_version, k.kind): k for k in KINDS}


def _status(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": extra.pop("metadata", {}), "status": "Failure",
            "message": message, "reason": reason, "code": code, **extra}


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def label_match(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.split("!=" if neg else "=", 1)
        actual = _dig(obj, k.strip())
        actual = "" if actual is None else str(actual)
        if (actual == v.lstrip("=").strip()) == neg:
            return False
    return True


@dataclass
class FakeCluster:
    """The state behind the test server: objects, a resourceVersion counter and a change history."""

    rv: int = 1000
    objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    history: list[tuple[int, str, tuple[str, str], dict[str, Any]]] = field(default_factory=list)
    compacted: int = 0
    forbidden: set[str] = field(default_factory=set)
    logs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    paused: bool = False  # open watch streams stall (deliver nothing), as over a broken connection
    fail_next: int = 0  # answer the next N list requests with 503 (a transient failure)
    requests: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _key(self, obj: dict[str, Any]) -> tuple[Kind, tuple[str, str]]:
        kind = BY_KIND[(obj["apiVersion"], obj["kind"])]
        meta = obj["metadata"]
        return kind, (meta.get("namespace", "") if kind.namespaced else "", meta["name"])

    def _change(self, etype: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            kind, key = self._key(obj)
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            store = self.objects.setdefault((kind.group_version, kind.resource), {})
            if etype == "DELETED":
                store.pop(key, None)
            else:
                store[key] = obj
            self.history.append((self.rv, etype, (kind.group_version, kind.resource), obj))
            self.cond.notify_all()
            return obj

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._change("ADDED", obj)

    def modify(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._change("MODIFIED", obj)

    def delete(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._change("DELETED", obj)

    def compact(self) -> int:
        """Forget history up to now (like etcd compaction): older resourceVersions become 410 Gone."""
        with self.cond:
            self.compacted = self.rv
            self.history = [h for h in self.history if h[0] > self.compacted]
            return self.compacted

    def items(self, gvr: tuple[str, str]) -> list[dict[str, Any]]:
        return [o for _, o in sorted(self.objects.get(gvr, {}).items())]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed after each request)
    cluster: FakeCluster

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self) -> None:
        self.cluster.writes.append(f"{self.command} {self.path}")
        self._send(405, _status(405, "MethodNotAllowed", "this test server is read-only"))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.cluster.requests.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
        parts = [p for p in url.path.split("/") if p]
        if parts == ["version"]:
            return self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.4-test-server",
                                    "platform": "linux/amd64"})
        if parts[:1] == ["api"] and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return self._send(404, _status(404, "NotFound", f"{url.path} not found"))
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or (gv, rest[0]) not in BY_PATH:
            return self._send(404, _status(404, "NotFound", f"{url.path} not found"))
        kind = BY_PATH[(gv, rest[0])]
        if kind.resource in self.cluster.forbidden:
            return self._send(403, _status(
                403, "Forbidden", f'{kind.resource} is forbidden: User "system:serviceaccount:forensics:reader" '
                f'cannot list resource "{kind.resource}" in API group "{kind.group_version.rpartition("/")[0]}"'
                + (f' in the namespace "{ns}"' if ns else " at the cluster scope"),
                details={"kind": kind.resource}))
        if len(rest) == 3 and rest[2] == "log" and kind.resource == "pods":
            data = self.cluster.logs.get((ns or "", rest[1]))
            if data is None:
                return self._send(404, _status(404, "NotFound", f'pods "{rest[1]}" not found'))
            return self._send(200, data, "text/plain")
        if len(rest) == 2:
            obj = self.cluster.objects.get((gv, kind.resource), {}).get((ns or "", rest[1]))
            if obj is None:
                return self._send(404, _status(404, "NotFound", f'{kind.resource} "{rest[1]}" not found'))
            return self._send(200, obj)
        if q.get("watch") in ("true", "1"):
            return self._watch(kind, ns, q)
        with self.cluster.cond:
            fail = self.cluster.fail_next > 0
            self.cluster.fail_next -= int(fail)
        if fail:
            return self._send(503, _status(503, "ServiceUnavailable", "etcdserver: leader changed"))
        return self._list(kind, ns, q)

    def _matches(self, obj: dict[str, Any], ns: str | None, q: dict[str, str]) -> bool:
        meta = obj["metadata"]
        if ns and meta.get("namespace") != ns:
            return False
        if q.get("labelSelector") and not label_match(meta.get("labels") or {}, q["labelSelector"]):
            return False
        return not (q.get("fieldSelector") and not field_match(obj, q["fieldSelector"]))

    def _list(self, kind: Kind, ns: str | None, q: dict[str, str]) -> None:
        c = self.cluster
        with c.cond:
            items = [o for o in c.items((kind.group_version, kind.resource)) if self._matches(o, ns, q)]
            rv = c.rv
        start = ""
        if q.get("continue"):
            try:
                tok = orjson.loads(base64.urlsafe_b64decode(q["continue"]))
                start, tok_rv = tok["start"], int(tok["rv"])
            except (ValueError, KeyError, TypeError):
                return self._send(400, _status(400, "BadRequest", "invalid continue token"))
            if tok_rv < c.compacted:
                fresh = base64.urlsafe_b64encode(orjson.dumps({"start": start, "rv": rv})).decode()
                return self._send(410, _status(
                    410, "Expired", "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use the continue token "
                    "in this response to retrieve the remainder of the results.", metadata={"continue": fresh}))
        keyed = [(f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}", o) for o in items]
        keyed = [ko for ko in keyed if ko[0] > start]
        limit = int(q["limit"]) if q.get("limit") else 0
        page = keyed[:limit] if limit else keyed
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and len(keyed) > limit:
            meta["continue"] = base64.urlsafe_b64encode(orjson.dumps({"start": page[-1][0], "rv": rv})).decode()
            meta["remainingItemCount"] = len(keyed) - limit
        body_items = []
        for _, o in page:
            o = dict(o)
            o.pop("kind", None)
            o.pop("apiVersion", None)
            body_items.append(o)
        self._send(200, {"kind": f"{kind.kind}List", "apiVersion": kind.group_version, "metadata": meta,
                         "items": body_items})

    def _watch(self, kind: Kind, ns: str | None, q: dict[str, str]) -> None:
        c = self.cluster
        timeout = float(q.get("timeoutSeconds") or 30)
        deadline = time.monotonic() + timeout
        since = int(q.get("resourceVersion") or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def out(obj: dict[str, Any]) -> None:
            self.wfile.write(orjson.dumps(obj) + b"\n")
            self.wfile.flush()

        with c.cond:
            if since and since < c.compacted:
                out({"type": "ERROR", "object": _status(
                    410, "Expired", f"too old resource version: {since} ({c.compacted})")})
                return
        pos = since
        try:
            while True:
                with c.cond:
                    pending = [] if c.paused else [h for h in c.history if h[0] > pos]
                    if not pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        c.cond.wait(min(left, 0.2))
                        continue
                for rv, etype, gvr, obj in pending:
                    pos = rv
                    if gvr == (kind.group_version, kind.resource) and self._matches(obj, ns, q):
                        out({"type": etype, "object": obj})
                if time.monotonic() >= deadline:
                    break
            if q.get("allowWatchBookmarks") in ("true", "1"):
                # Everything up to ``pos`` was examined by this stream, and no further.
                out({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.group_version,
                                                    "metadata": {"resourceVersion": str(pos)}}})
        except (BrokenPipeError, ConnectionResetError):
            pass


class K8sTestServer:
    """Runs a :class:`FakeCluster` behind a ThreadingHTTPServer on 127.0.0.1 (tests only)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        handler = type("BoundHandler", (Handler,), {"cluster": cluster})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="k8s-test-server")

    def start(self) -> K8sTestServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path, context: str = "test-cluster-admin") -> Path:
        """A kubeconfig pointing the real client at this server (bearer token auth)."""
        import yaml

        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": context,
               "clusters": [{"name": "test-cluster", "cluster": {"server": self.url}}],
               "users": [{"name": "forensics-reader", "user": {"token": TOKEN}}],
               "contexts": [{"name": context, "context": {"cluster": "test-cluster", "user": "forensics-reader"}}]}
        path.write_text(yaml.safe_dump(cfg))
        return path
