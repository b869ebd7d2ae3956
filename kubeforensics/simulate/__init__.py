"""Deterministic simulator of a small production cluster under attack.

``simulate(scenario, out, seed=7)`` writes the evidence a responder would be
handed (audit log with a rotated part, Tetragon export, Hubble flows, Falco
alerts, Kubernetes Events and objects) plus ``GROUND_TRUTH.json``.  The same
seed always gives byte-identical files.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from kubeforensics.errors import KubeforensicsError

DEFAULT_SEED = 7
log = logging.getLogger(__name__)


def list_scenarios() -> dict[str, str]:
    """Scenario names and one-line descriptions."""
    from kubeforensics.simulate.scenarios import SCENARIOS

    return {name: m.DESCRIPTION for name, m in SCENARIOS.items()}


def build(scenario: str, seed: int = DEFAULT_SEED):  # -> Dataset
    """Generate the whole dataset of ``scenario`` in memory (a few tens of thousands of records)."""
    from kubeforensics.simulate import lookalikes, noise
    from kubeforensics.simulate.clock import Ids
    from kubeforensics.simulate.dataset import Dataset
    from kubeforensics.simulate.scenarios import SCENARIOS
    from kubeforensics.simulate.topology import build_cluster
    from kubeforensics.simulate.truth import GroundTruth

    if scenario not in SCENARIOS:
        raise UnknownScenarioError(f"unknown scenario {scenario!r}", hint=f"choose one of {', '.join(SCENARIOS)}")
    module = SCENARIOS[scenario]
    cluster = build_cluster(Ids(random.Random(f"kubeforensics-cluster:{seed}")))
    ds = Dataset(cluster, random.Random(f"kubeforensics-{scenario}:{seed}"), GroundTruth(scenario, seed))
    module.run(ds)
    lookalikes.generate(ds, module.PINNED)
    noise.generate(ds)
    return ds


def simulate(scenario: str, out: str | Path, seed: int = DEFAULT_SEED, scale: int | None = None, *,
             compress: bool = False, span: int | str | None = None) -> Path:
    """Write the dataset of ``scenario`` under ``out`` and return that folder.

    Parameters
    ----------
    scenario
        One of :func:`list_scenarios`.
    out
        Destination folder (created; existing files of the layout are overwritten).
    seed
        Seed of every random choice: the same seed gives byte-identical files.
    scale
        Write about this many records in total, streaming (for benchmarks); ``None`` for the
        default size (a 90-minute window, tens of thousands of records).
    compress
        Gzip the large files (``audit.log``, ``tetragon.log``, ``flows.json`` get ``.gz``), as in ``sample_data``.
    span
        With ``scale``: spread the routine bulk records over this long (ns, or a duration such as ``"7d"``),
        ending with the scenario's window; the scenario's own records (the attack included) keep their
        times.  Not allowed without ``scale`` (the default dataset is the window only).
    """
    from kubeforensics.simulate import output
    from kubeforensics.simulate.clock import parse_duration

    if isinstance(span, str):
        try:
            span = parse_duration(span)
        except ValueError as exc:
            raise SpanError(str(exc)) from exc
    if span is not None and scale is None:
        raise SpanError("a span needs a scale", hint="give --scale N with --span; the default dataset covers "
                        "only the scenario's window")
    out = Path(out)
    ds = build(scenario, seed)
    if scale is not None:
        from kubeforensics.simulate.scale import span_start, write_scaled

        span_start(ds, span)  # a bad span fails before any file is written
        counts = write_scaled(ds, out, scale, compress=compress, span=span)
    else:
        counts = output.write(ds, out, compress=compress)
    log.info("simulated %s (seed %d) into %s: %s", scenario, seed, out, counts)
    return out


class UnknownScenarioError(KubeforensicsError):
    """The scenario name is not one of :func:`list_scenarios`."""


class SpanError(KubeforensicsError):
    """``span`` is not a duration, is shorter than the scenario's window, too long, or given without ``scale``."""


__all__ = ["DEFAULT_SEED", "SpanError", "UnknownScenarioError", "build", "list_scenarios", "simulate"]
