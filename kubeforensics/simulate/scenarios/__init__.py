"""Scenario registry: name -> module with ``NAME``, ``DESCRIPTION``, ``PINNED`` and ``run(ds)``."""

from __future__ import annotations

from types import ModuleType

from kubeforensics.simulate.scenarios import benign, credentials, escape, miner, rbac, ssrf

_MODULES: tuple[ModuleType, ...] = (escape, miner, credentials, rbac, ssrf, benign)
SCENARIOS: dict[str, ModuleType] = {m.NAME: m for m in _MODULES}
