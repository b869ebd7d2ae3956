"""Correlation: entities at a point in time, exact process trees, cross-source links, blind spots,
noise collapsing and the attack story.

Everything here is a pure function of the canonical tables (a mapping of table
name to DataFrame, see :mod:`kubeforensics.schema`); a missing table is empty.

>>> from kubeforensics.correlate import EntityResolver, process_tree, links, blind_spots, build_story
>>> r = EntityResolver.from_tables(tables)                # doctest: +SKIP
>>> process_tree(tables["processes"], pod="web-1")        # doctest: +SKIP
>>> build_story(tables, seed="default/web-1").to_json()   # doctest: +SKIP
"""

from kubeforensics.correlate.blindspots import blind_spots
from kubeforensics.correlate.context import Context
from kubeforensics.correlate.entities import Entity, EntityResolver
from kubeforensics.correlate.frames import dedupe_audit
from kubeforensics.correlate.links import KINDS as LINK_KINDS
from kubeforensics.correlate.links import links
from kubeforensics.correlate.noise import baseline_mask, collapse_noise
from kubeforensics.correlate.process_tree import ProcessTree, inferred_tree, process_tree
from kubeforensics.correlate.story import Step, Story, build_story

__all__ = [
    "LINK_KINDS",
    "Context",
    "Entity",
    "EntityResolver",
    "ProcessTree",
    "Step",
    "Story",
    "baseline_mask",
    "blind_spots",
    "build_story",
    "collapse_noise",
    "dedupe_audit",
    "inferred_tree",
    "links",
    "process_tree",
]
