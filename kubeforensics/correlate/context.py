"""Shared, lazily computed state for one correlation run (normalised tables, resolver, tree)."""

from __future__ import annotations

from functools import cached_property

import pandas as pd

from kubeforensics.correlate.entities import EntityResolver
from kubeforensics.correlate.frames import Tables, normalise
from kubeforensics.correlate.process_tree import ProcessTree, build_nodes


class Context:
    """Normalise the tables once and share the expensive pieces between links, blind spots and story."""

    def __init__(self, tables: Tables | Context) -> None:
        if isinstance(tables, Context):
            self.__dict__.update(tables.__dict__)
            return
        self.raw = tables  # as given: handed to the detection engine untouched
        self.t: dict[str, pd.DataFrame] = normalise(tables)

    @cached_property
    def resolver(self) -> EntityResolver:
        return EntityResolver.from_tables(self.t)

    @cached_property
    def nodes(self) -> pd.DataFrame:
        return build_nodes(self.t["processes"], resolver=self.resolver)

    @cached_property
    def tree(self) -> ProcessTree:
        return ProcessTree(self.nodes)

    @cached_property
    def links(self) -> pd.DataFrame:
        from kubeforensics.correlate.links import links

        return links(self)


def as_context(tables: Tables | Context) -> Context:
    """``tables`` itself when it is already a :class:`Context`, else a new one."""
    return tables if isinstance(tables, Context) else Context(tables)
