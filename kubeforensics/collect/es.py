"""Collection from Elasticsearch with push-down, point-in-time paging and reconciliation.

>>> col = EsCollector.from_env("https://es.example.net:9200")                        # doctest: +SKIP
>>> rec = collect(col, case, [IndexSpec("logs-kubernetes.audit_logs-*", "ecs")],     # doctest: +SKIP
...               since="2026-03-01T00:00:00Z", until="2026-03-08T00:00:00Z", filters={"namespace": ["shop"]})

* The time window, entity filters (namespace, pod, user, IP) and extra term/query
  filters are a ``bool.filter`` evaluated by Elasticsearch; only matching documents travel,
  and only the ``_source`` fields the mapping needs (:mod:`.es_mapping`).
* Paging is point-in-time + ``search_after`` sorted on the time field then
  ``_shard_doc``: never capped at 10,000 hits.  The server's total
  (``track_total_hits: true``) is reconciled with what was collected, per index pattern.
* 429/5xx and connection failures are retried with exponential backoff (the client's own
  retries are off, as they do not back off).  A collection that still fails midway keeps
  what it has, is recorded as partial with the reason and a resume point (last time value
  and the ids seen at it), and a re-run with the same parameters into the same case
  resumes from there, so the case never holds a document twice.
* Overview counts (per index pattern per hour, top entities) come from
  ``date_histogram``/``terms`` aggregations with ``size: 0`` (:meth:`EsCollector.overview`).

Credentials come from the environment (``KUBEFORENSICS_ES_API_KEY``,
``KUBEFORENSICS_ES_USER`` + ``KUBEFORENSICS_ES_PASSWORD``, ``KUBEFORENSICS_ES_CA``) or a
YAML/JSON file (``KUBEFORENSICS_ES_CONFIG`` or ``config=``: ``api_key``, ``username``,
``password``, ``ca_certs``), never from the command line; the record names only the
method used.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch

from kubeforensics.collect.common import Backoff, with_retries
from kubeforensics.collect.es_mapping import IndexSpec
from kubeforensics.errors import CollectorError

log = logging.getLogger(__name__)
ENTITIES = ("namespace", "pod", "user", "ip")
ENV = {"api_key": "KUBEFORENSICS_ES_API_KEY", "username": "KUBEFORENSICS_ES_USER",
       "password": "KUBEFORENSICS_ES_PASSWORD", "ca_certs": "KUBEFORENSICS_ES_CA", "config": "KUBEFORENSICS_ES_CONFIG"}


def is_transient(exc: BaseException) -> bool:
    """429 and 5xx answers, timeouts and connection failures."""
    if isinstance(exc, ApiError):
        return exc.meta.status == 429 or exc.meta.status >= 500
    return isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout))


def credentials(config: str | Path | None = None) -> dict[str, Any]:
    """Client keyword arguments from the config file, then the environment (which wins)."""
    creds: dict[str, Any] = {}
    path = config or os.environ.get(ENV["config"])
    if path:
        import yaml

        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CollectorError(f"cannot read Elasticsearch config {path}: {exc}") from exc
        creds.update({k: loaded[k] for k in ("api_key", "username", "password", "ca_certs") if loaded.get(k)})
    for key in ("api_key", "username", "password", "ca_certs"):
        if os.environ.get(ENV[key]):
            creds[key] = os.environ[ENV[key]]
    return creds


def _iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EsCollector:
    """Reads documents and aggregations from Elasticsearch (searches only).

    Parameters
    ----------
    es
        An ``elasticsearch.Elasticsearch`` client, built by the caller (see :meth:`from_env`).
    url
        For the record (no credentials in it).
    auth
        The authentication method's name, for the record.
    page_size
        Documents per ``search_after`` page.
    """

    def __init__(self, es: Elasticsearch, *, url: str, auth: str = "none", page_size: int = 5000,
                 backoff: Backoff | None = None, keep_alive: str = "5m") -> None:
        self.es = es
        self.url = url
        self.auth = auth
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.keep_alive = keep_alive

    @classmethod
    def from_env(cls, url: str, *, config: str | Path | None = None, request_timeout: float = 60.0,
                 **kwargs: Any) -> EsCollector:
        """A client for ``url`` with credentials from the environment or a config file."""
        creds = credentials(config)
        opts: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": 0, "retry_on_timeout": False}
        auth = "none"
        if creds.get("api_key"):
            opts["api_key"], auth = creds["api_key"], "api_key"
        elif creds.get("username"):
            opts["basic_auth"], auth = (creds["username"], creds.get("password") or ""), "basic"
        if creds.get("ca_certs"):
            opts["ca_certs"] = creds["ca_certs"]
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            raise CollectorError("credentials in the URL are refused", hint=f"set {ENV['username']} and "
                                 f"{ENV['password']} or {ENV['api_key']} instead")
        return cls(Elasticsearch(url, **opts), url=url, auth=auth, **kwargs)

    # ------------------------------------------------------------------ queries
    @staticmethod
    def build_query(spec: IndexSpec, since: str, until: str, filters: Mapping[str, Sequence[str]] | None = None,
                    extra: Sequence[Mapping[str, Any]] = (), after: str | None = None,
                    exclude_ids: Sequence[str] = ()) -> dict[str, Any]:
        """The ``bool`` query: window ``[since, until)``, entity and term filters, resume bound."""
        window: dict[str, Any] = {"gte": after or since, "lt": until}
        must: list[dict[str, Any]] = [{"range": {spec.time_field: window}}]
        for key, values in (filters or {}).items():
            values = [v for v in values if v]
            if not values:
                continue
            fields = spec.fields_for(key) if key in ENTITIES else (key,)
            if not fields:
                raise CollectorError(f"no field for the {key!r} filter in {spec.pattern}")
            must.append({"bool": {"should": [{"terms": {f: list(values)}} for f in fields],
                                  "minimum_should_match": 1}})
        must.extend(dict(x) for x in extra)
        q: dict[str, Any] = {"bool": {"filter": must}}
        if exclude_ids:
            q["bool"]["must_not"] = [{"ids": {"values": list(exclude_ids)}}]
        return q

    def _search(self, **body: Any) -> Any:
        return with_retries(lambda: self.es.search(**body), "search", is_transient, self.backoff)

    def count(self, spec: IndexSpec, query: Mapping[str, Any]) -> int:
        """The server's number of matching documents (exact)."""
        r = self._search(index=spec.pattern, size=0, query=query, track_total_hits=True)
        return int(r["hits"]["total"]["value"])

    def hits(self, spec: IndexSpec, query: Mapping[str, Any], state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every matching hit through a point in time and ``search_after``.

        ``state`` receives ``total`` (the server's count, first page), ``pages`` and the
        resume point (``after_ms``, ``ids_at_after``) as the pages arrive.
        """
        pit = with_retries(lambda: self.es.open_point_in_time(index=spec.pattern, keep_alive=self.keep_alive),
                           "open point in time", is_transient, self.backoff)["id"]
        # Tie-breaker _shard_doc: the cheapest total order inside a PIT (noida-db supports it too).
        sort = [{spec.time_field: {"order": "asc"}}, {"_shard_doc": "asc"}]
        after: list[Any] | None = None
        try:
            while True:
                body: dict[str, Any] = {"pit": {"id": pit, "keep_alive": self.keep_alive}, "size": self.page_size,
                                        "sort": sort, "query": query, "_source": spec.source_filter(),
                                        "track_total_hits": after is None}
                if after is not None:
                    body["search_after"] = after
                r = self._search(**body)
                pit = r.get("pit_id") or pit
                page = r["hits"]["hits"]
                if after is None:
                    state["total"] = int(r["hits"]["total"]["value"])
                state["pages"] = state.get("pages", 0) + 1
                if not page:
                    return
                for h in page:
                    yield h
                    t = h["sort"][0]
                    if t != state.get("after_ms"):
                        state["after_ms"], state["ids_at_after"] = t, []
                    state["ids_at_after"].append(h["_id"])
                after = page[-1]["sort"]
                if len(page) < self.page_size:
                    return
        finally:
            try:
                self.es.close_point_in_time(id=pit)
            except Exception as exc:  # noqa: BLE001 - the PIT expires by itself
                log.info("closing the point in time failed: %s", exc)

    def overview(self, specs: Sequence[IndexSpec], since: str, until: str,
                 filters: Mapping[str, Sequence[str]] | None = None, *, interval: str = "1h",
                 top: int = 10) -> dict[str, Any]:
        """Counts per index pattern per ``interval`` and the top entities, from aggregations only.

        One ``size: 0`` search per index pattern: noida-db answers ``terms`` on ``_index``
        with no buckets and has no ``composite``/``multi_terms``, so the per-source split is
        made by querying each pattern, and each entity field gets its own ``terms``.
        """
        out: dict[str, Any] = {"interval": interval, "per_interval": {}, "totals": {}, "top": {}}
        tops: dict[str, dict[str, int]] = {e: {} for e in ENTITIES}
        for spec in specs:
            aggs: dict[str, Any] = {"per_interval": {"date_histogram": {"field": spec.time_field,
                                                                        "fixed_interval": interval}}}
            names: dict[str, str] = {}
            for ent in ENTITIES:
                for n, fld in enumerate(spec.fields_for(ent)):
                    names[f"{ent}_{n}"] = ent
                    aggs[f"{ent}_{n}"] = {"terms": {"field": fld, "size": top}}
            r = self._search(index=spec.pattern, size=0, track_total_hits=True,
                             query=self.build_query(spec, since, until, filters), aggs=aggs)
            out["totals"][spec.pattern] = int(r["hits"]["total"]["value"])
            out["per_interval"][spec.pattern] = [
                (b.get("key_as_string") or _iso_ms(b["key"]), b["doc_count"])
                for b in r["aggregations"]["per_interval"]["buckets"] if b["doc_count"]]
            # One document can carry an entity in several fields (ECS duplicates kubernetes.audit.* into
            # orchestrator.*): per pattern, a value counts with its largest field count, not their sum.
            here: dict[str, dict[str, int]] = {e: {} for e in ENTITIES}
            for agg, ent in names.items():
                for b in r["aggregations"].get(agg, {}).get("buckets", []):
                    here[ent][str(b["key"])] = max(here[ent].get(str(b["key"]), 0), b["doc_count"])
            for ent, values in here.items():
                for v, c in values.items():
                    tops[ent][v] = tops[ent].get(v, 0) + c
        out["top"] = {e: sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[:top] for e, v in tops.items() if v}
        return out


# ---------------------------------------------------------------------- the whole collection
def query_key(url: str, specs: Sequence[IndexSpec], since: str, until: str,
              filters: Mapping[str, Sequence[str]], extra: Sequence[Mapping[str, Any]]) -> str:
    """Identifies a collection's parameters: a re-run with the same key resumes a partial one."""
    data = orjson.dumps({"url": url, "specs": [[s.pattern, s.shape, s.raw_field, s.time_field] for s in specs],
                         "since": since, "until": until, "filters": {k: sorted(v) for k, v in filters.items()},
                         "extra": list(extra)}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:16]


def _previous(case: Any, key: str) -> dict[str, Any] | None:
    """The latest collection record of this case with the same parameters, if any."""
    latest = None
    for e in case.manifest["evidence"]:
        if e.get("format") == "collection-record" and e.get("collected_by") == "elasticsearch":
            rec = orjson.loads((case.path / e["stored_as"]).read_bytes())
            if rec.get("query_key") == key:
                latest = rec
    return latest


def collect(collector: EsCollector, case: Any, indices: Sequence[IndexSpec | str], *, since: str, until: str,
            filters: Mapping[str, Sequence[str]] | None = None, extra: Sequence[Mapping[str, Any]] = (),
            progress: bool | None = None, resume: bool = True, overview: bool = True) -> dict[str, Any]:
    """Collect the matching documents of ``indices`` into ``case``; returns the collection record.

    Parameters
    ----------
    indices
        :class:`IndexSpec` s (or ``PATTERN[:shape[:raw_field]]`` strings).
    since, until
        ISO 8601 window ``[since, until)``.
    filters
        ``{"namespace": [...], "pod": [...], "user": [...], "ip": [...]}`` or ``{"field": [values]}``.
    extra
        Further query clauses (``bool.filter`` members) pushed down as given.
    resume
        Continue a previous partial collection with the same parameters instead of starting over.
    """
    from kubeforensics.collect.es_run import EsRun

    specs = [IndexSpec.parse(s) if isinstance(s, str) else s for s in indices]
    if not specs:
        raise CollectorError("no index pattern given", hint="--index PATTERN[:raw|ecs[:FIELD]]")
    flt = {k: list(v) for k, v in (filters or {}).items()}
    key = query_key(collector.url, specs, since, until, flt, extra)
    prev = _previous(case, key) if resume else None
    return EsRun(collector, case, specs, since, until, flt, list(extra), key, prev, progress, overview).run()


__all__ = ["EsCollector", "IndexSpec", "collect", "credentials", "is_transient", "query_key"]
