"""Analysis entry points on a case: findings, story, process trees, entities, links.

These are thin: each loads the case's frames and calls the pure functions of
:mod:`kubeforensics.detect` and :mod:`kubeforensics.correlate`.  Findings are
cached in ``CASE/derived/findings.parquet`` (dropped whenever evidence is
added) because the timeline and the story both read them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from kubeforensics.correlate import EntityResolver, ProcessTree, Story

log = logging.getLogger(__name__)


class AnalysisMixin:
    """Mixed into :class:`kubeforensics.case.Case`."""

    path: Path
    query: Any  # CaseQuery, provided by Case

    def frames(self, **filters: Any) -> dict[str, pd.DataFrame]:  # provided by Case
        raise NotImplementedError

    def table(self, name: str, *, columns: Sequence[str] | None = None, limit: int | None = None,
              **filters: Any) -> pd.DataFrame:  # provided by Case
        raise NotImplementedError

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:  # provided by Case
        raise NotImplementedError

    def _cached(self, attr: str, key: Any, build: Callable[[], Any]) -> Any:
        """``build()``, kept in ``self.<attr>`` as ``(key, value)`` until the key changes."""
        cache = getattr(self, attr, None)
        if cache is None or cache[0] != key:
            cache = (key, build())
            setattr(self, attr, cache)
        return cache[1]

    def _tables(self) -> dict[str, pd.DataFrame]:
        return self._cached("_frames_cache", self._stamp(), self.frames)

    def _context(self) -> Any:
        """One correlation context per case state: normalised tables, resolver and process nodes
        are computed once and shared by story, links, blind spots and process trees."""
        from kubeforensics.correlate import Context

        return self._cached("_context_cache", self._stamp(), lambda: Context(self._tables()))

    def _loaded_context(self) -> Any | None:
        """The correlation context when one is loaded for the case as it is now, else None."""
        cache = getattr(self, "_context_cache", None)
        return cache[1] if cache is not None and cache[0] == self._stamp() else None

    def _stamp(self) -> float:
        p = self.path / "manifest.json"
        return p.stat().st_mtime_ns if p.exists() else 0

    def findings(
        self, *, sigma: str | Path | None = None, config: Any = None, refresh: bool = False
    ) -> pd.DataFrame:
        """Run the built-in rules (and Sigma rules from ``sigma``) over the case.

        The default run (no Sigma folder, default tuning) is cached in the case and feeds the
        timeline's ``severity``/``techniques`` columns and the story.
        """
        from kubeforensics.detect.pushdown import case_findings

        cacheable = sigma is None and config is None
        cache = self.path / "derived" / "findings.parquet"
        if cacheable and cache.is_file() and not refresh:
            return _lists(pd.read_parquet(cache))
        df = case_findings(self.query, sigma=sigma, config=config)
        if cacheable:
            cache.parent.mkdir(exist_ok=True)
            df.to_parquet(cache, index=False)
        return df

    def story(self, seed: Any = None, *, since: Any = None, until: Any = None,
              findings: pd.DataFrame | None = None) -> Story:
        """The attack story: ordered steps with tactic, techniques and evidence (see docs/story.md).

        Correlation reads the case with its repetitive baseline trimmed (:mod:`kubeforensics.case.slim`):
        the first and last events of each repeated shape, and every event of the pods the findings
        name near their findings, so memory follows the variety of the case, not its size.
        """
        from kubeforensics.correlate import build_story

        if findings is None:
            findings = self.findings()
        return build_story(self.story_context(findings), findings, seed=seed, since=since, until=until)

    def story_context(self, findings: pd.DataFrame | None = None) -> Any:
        """The correlation context the story is built on (:class:`kubeforensics.correlate.Context`).

        Its tables are the case with the repetitive baseline trimmed (:mod:`kubeforensics.case.slim`):
        every row of the pods ``findings`` name near their findings, and the first and last rows of
        each repeated shape elsewhere, so its memory follows the variety of the case, not its size.
        Use it for questions about what the story saw (``ctx.links``, ``ctx.resolver``,
        :func:`kubeforensics.correlate.blind_spots`); for every row of a table use :meth:`table` or
        :meth:`sql`.  Cached per case state and set of pods of interest.
        """
        from kubeforensics.case.slim import interest_of, slim_frames, trimmed
        from kubeforensics.correlate import Context

        if findings is None:
            findings = self.findings()
        pods = interest_of(findings)

        def build() -> Any:
            frames, counts = slim_frames(self.query, pods)
            left_out = trimmed(counts)
            if left_out:
                log.info("story: repetitive baseline trimmed (rows left out per table: %s)", left_out)
            return Context(frames)

        return self._cached("_story_cache", (self._stamp(), tuple(pods)), build)

    def process_tree(self, **selector: Any) -> ProcessTree:
        """The exact process tree (``pod=``, ``namespace=``, ``container_id=`` or ``exec_id=``)."""
        from kubeforensics.correlate import process_tree

        ctx = self._loaded_context()
        if ctx is not None:
            return process_tree(ctx.t["processes"], resolver=ctx.resolver, **selector)
        if selector.get("pod") and not selector.get("exec_id") and not selector.get("container_id"):
            # Push the pod filter down: a pod's tree needs only its own process events (the runtime
            # parents come from their parent_* columns), not the whole case in memory.
            procs = self.table("processes", pod=selector["pod"], namespace=selector.get("namespace"))
            return process_tree(self._with_ancestors(procs), **selector)
        # Any other selector, or none (the whole case): the processes table (normalised by build_nodes, as
        # in the correlation context: per table) and the resolver built from storage (:attr:`entities`),
        # not every table.
        return process_tree(self.table("processes"), resolver=self.entities, **selector)

    def _with_ancestors(self, procs: pd.DataFrame, rounds: int = 16) -> pd.DataFrame:
        """Add the events of the processes' ancestors outside the pod (runc, the shim, containerd),
        fetched by exec_id from storage, so a pushed-down tree is the same as the whole-case one."""
        parts = [procs]
        seen = set(procs["exec_id"].dropna())
        wanted = set(procs["parent_exec_id"].dropna()) - seen
        for _ in range(rounds):
            if not wanted:
                break
            more = self.sql("SELECT * FROM {processes} WHERE list_contains(?, exec_id)", [sorted(wanted)])
            if more.empty:
                break
            parts.append(more)
            seen |= set(more["exec_id"].dropna())
            wanted = set(more["parent_exec_id"].dropna()) - seen
        if len(parts) == 1:
            return procs
        import pyarrow as pa

        from kubeforensics.case.query import arrow_to_frame
        from kubeforensics.schema import PROCESSES

        merged = pd.concat([parts[0], *(arrow_to_frame(pa.Table.from_pandas(p, preserve_index=False), PROCESSES)
                                        for p in parts[1:])], ignore_index=True)
        return merged.sort_values(["time", "event_id"], kind="stable").reset_index(drop=True)

    @property
    def entities(self) -> EntityResolver:
        """Who was IP X / container Y / exec_id Z at time T (pods, nodes, service accounts).

        The resolver of the correlation context when one is loaded; else built from storage with DuckDB
        reducing the rows (:mod:`kubeforensics.case.entities_pushdown`: the same resolver, in memory that
        follows the variety of the case, not its size), cached per case state."""
        from kubeforensics.case.entities_pushdown import entities_from_storage

        ctx = self._loaded_context()
        if ctx is not None:
            return ctx.resolver
        return self._cached("_entities_cache", self._stamp(), lambda: entities_from_storage(self.query))

    def links(self, **kwargs: Any) -> pd.DataFrame:
        """Cross-source links (exec session → processes, connect → flow, token → requests, ...)."""
        from kubeforensics.correlate import links

        return links(self._context(), **kwargs)

    def blind_spots(self) -> pd.DataFrame:
        """Interactive processes with no exec in the audit log; audit activity from unknown pod IPs."""
        from kubeforensics.correlate import blind_spots

        return blind_spots(self._context())

    def answers(self, *, run_id: str | None = None, playbook: str | None = None) -> Any:
        """Answers recorded by playbook runs (latest per question), see :mod:`kubeforensics.report.answers`."""
        from kubeforensics.report.answers import recorded_answers

        return recorded_answers(self.path, run_id=run_id, playbook=playbook)


def _lists(df: pd.DataFrame) -> pd.DataFrame:
    """The cached findings as the engine returns them: list columns as Python lists (Parquet gives numpy
    arrays), ``namespace``/``pod`` as objects with None for a finding without one (Parquet gives str
    columns with NaN, which is truthy)."""
    for col in ("techniques", "event_ids"):
        if col in df.columns:
            df[col] = [v.tolist() if hasattr(v, "tolist") else v for v in df[col]]
    for col in ("namespace", "pod"):
        if col in df.columns:
            df[col] = pd.Series([None if pd.isna(v) else v for v in df[col]], index=df.index, dtype=object)
    return df
