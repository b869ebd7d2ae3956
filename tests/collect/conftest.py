"""Fixtures of the collector tests: an Elasticsearch-API server per test module."""

from __future__ import annotations

import pytest

from tests.collect.es_server import REMOTE, NoidaServer


@pytest.fixture(scope="module")
def es_url(tmp_path_factory: pytest.TempPathFactory):
    """URL of a real cluster when KUBEFORENSICS_TEST_ES_URL is set, else of a local noida-db started for
    this test module (stopped by its pid at teardown)."""
    if REMOTE:
        yield REMOTE
        return
    srv = NoidaServer(tmp_path_factory.mktemp("noida") / "data").start()
    yield srv.url
    srv.stop()
