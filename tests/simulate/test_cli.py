"""``kubeforensics simulate`` argument handling (configure/run) and the --scale writer."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest

from kubeforensics.simulate import cli, list_scenarios


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(argv)


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse("--list")) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(list_scenarios())
    assert list(list_scenarios()) == ["container-escape", "miner", "stolen-credentials", "rbac-persistence",
                                      "ssrf-dns-exfil", "benign"]


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.run(parse("miner")) == 2
    assert "--out DIR" in capsys.readouterr().err
    assert cli.run(parse("nope", "--out", str(tmp_path))) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
    assert cli.run(parse("miner", "--out", str(tmp_path), "--scale", "0")) == 2


def test_scale_writes_about_n_records_with_the_attack_inside(tmp_path: Path) -> None:
    args = parse("container-escape", "--out", str(tmp_path), "--seed", "3", "--scale", "50000")
    assert args.seed == 3 and args.scale == 50_000
    assert cli.run(args) == 0
    counts = {}
    for rel in ("audit/audit.log", "tetragon/tetragon.log", "hubble/flows.json", "falco/falco.json"):
        counts[rel] = (tmp_path / rel).read_bytes().count(b"\n")
    counts["rotated"] = gzip.decompress((tmp_path / "audit/audit.log.1.gz").read_bytes()).count(b"\n")
    counts["events"] = len(json.loads((tmp_path / "k8s/events.json").read_text())["items"])
    counts["objects"] = len(json.loads((tmp_path / "k8s/objects.json").read_text())["items"])
    assert 0.97 * 50_000 < sum(counts.values()) <= 50_000
    times = []
    for rel in ("tetragon/tetragon.log", "hubble/flows.json", "audit/audit.log"):
        with (tmp_path / rel).open() as f:
            recs = [json.loads(line) for line in f]
        key = "stageTimestamp" if rel.startswith("audit") else "time"
        times = [r[key] for r in recs]
        assert times == sorted(times), f"{rel} is not in time order"
    # the CLI used forked writers (one per large file): a single process writes the same bytes
    from kubeforensics.simulate import build
    from kubeforensics.simulate.scale import write_scaled

    single = tmp_path.parent / f"{tmp_path.name}-single"
    write_scaled(build("container-escape", 3), single, 50_000, processes=1)
    for p in sorted(tmp_path.rglob("*")):
        if p.is_file():
            assert p.read_bytes() == (single / p.relative_to(tmp_path)).read_bytes(), p.name
    truth = json.loads((tmp_path / "GROUND_TRUTH.json").read_text())
    exec_ids = {next(v for k, v in json.loads(line).items() if k.startswith("process_"))["process"]["exec_id"]
                for line in (tmp_path / "tetragon/tetragon.log").read_text().splitlines()}
    for step in truth["steps"]:
        assert set(step["evidence"].get("tetragon", [])) <= exec_ids

