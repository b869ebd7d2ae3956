"""The same cluster with no attack: only the benign noise and the look-alikes."""

from __future__ import annotations

from kubeforensics.simulate.dataset import Dataset

NAME = "benign"
DESCRIPTION = "no attack: the same cluster's routine activity, including the benign look-alikes"
PINNED: tuple[str, ...] = ()


def run(ds: Dataset) -> None:
    """Nothing happens beyond the routine."""
