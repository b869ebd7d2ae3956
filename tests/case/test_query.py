"""DuckDB under a case: memory capped, spilling to a private folder that does not outlive the connection."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kubeforensics.case.query import MEMORY_LIMIT, CaseQuery


def test_spill_folder_is_private_and_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # an in-memory DuckDB would otherwise spill into ./.tmp
    q = CaseQuery(tmp_path / "tables")
    folder, limit = q.con.execute("SELECT current_setting('temp_directory'), current_setting('memory_limit')").fetchall()[0]
    assert Path(folder).parent == Path(tempfile.gettempdir()) and Path(folder).name.startswith("kf-duckdb-")
    assert MEMORY_LIMIT == os.environ.get("KUBEFORENSICS_DUCKDB_MEMORY", "2GB") and "GiB" in limit
    q.con.execute("SET memory_limit = '50MB'")
    q.con.execute("CREATE TEMP TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(3000000)")
    n = q.con.execute("SELECT count(*) FROM (SELECT s, row_number() OVER (ORDER BY s) FROM t)").fetchall()[0][0]
    assert n == 3_000_000
    spilled = Path(folder).exists()
    q.close()
    assert not Path(folder).exists()
    assert not (tmp_path / ".tmp").exists()
    assert spilled  # the table and the sort did not fit in 50 MB: it went to the private folder
