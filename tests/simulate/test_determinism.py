"""Same seed -> byte-identical files; different seed -> different names, IPs and times; sample_data never drifts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from kubeforensics.simulate import UnknownScenarioError, simulate
from kubeforensics.simulate.refresh import SAMPLE_DATA

from .conftest import SCENARIOS


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "README.md"}


def test_same_seed_twice_is_byte_identical(tmp_path: Path, generated: dict[str, Path]) -> None:
    a = files(generated["container-escape"])
    b = files(simulate("container-escape", tmp_path / "b", seed=7, compress=True))
    assert sorted(a) == ["GROUND_TRUTH.json", "audit/audit.log.1.gz", "audit/audit.log.gz", "falco/falco.json",
                         "hubble/flows.json.gz", "k8s/events.json", "k8s/objects.json", "tetragon/tetragon.log.gz"]
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"


def test_gzip_header_has_no_name_and_no_mtime(generated: dict[str, Path]) -> None:
    raw = (generated["benign"] / "audit" / "audit.log.1.gz").read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] & 0x08 == 0, "FNAME flag set: the file name would make output depend on the path"
    assert raw[4:8] == b"\0\0\0\0", "mtime must be 0"
    assert gzip.decompress(raw).count(b"\n") > 1000


def test_different_seed_changes_names_ips_and_times(tmp_path: Path, generated: dict[str, Path]) -> None:
    other = simulate("container-escape", tmp_path / "s8", seed=8, compress=True)
    t7 = json.loads((generated["container-escape"] / "GROUND_TRUTH.json").read_text())
    t8 = json.loads((other / "GROUND_TRUTH.json").read_text())
    assert t7["seed"] == 7 and t8["seed"] == 8
    s7, s8 = t7["steps"][0], t8["steps"][0]
    assert s7["entities"]["pod"] != s8["entities"]["pod"]
    assert s7["entities"]["ip"] != s8["entities"]["ip"]
    assert s7["time"][:16] != s8["time"][:16]
    nodes7 = {i["metadata"]["name"] for i in json.loads((generated["container-escape"] / "k8s/objects.json")
                                                         .read_text())["items"] if i["kind"] == "Node"}
    nodes8 = {i["metadata"]["name"] for i in json.loads((other / "k8s/objects.json").read_text())["items"]
              if i["kind"] == "Node"}
    assert len(nodes7) == len(nodes8) == 4 and not nodes7 & nodes8


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sample_data_is_what_the_generator_writes(scenario: str, generated: dict[str, Path]) -> None:
    committed = SAMPLE_DATA / scenario
    if not committed.is_dir():
        pytest.fail(f"{committed} missing: run `python -m kubeforensics.simulate.refresh`")
    want, got = files(committed), files(generated[scenario])
    assert sorted(want) == sorted(got)
    for name in got:
        assert want[name] == got[name], (f"sample_data/{scenario}/{name} drifted from the generator: "
                                         "run `python -m kubeforensics.simulate.refresh` and commit")
    assert (committed / "README.md").is_file()


def test_unknown_scenario_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownScenarioError, match="choose one of container-escape"):
        simulate("escape-everything", tmp_path)
