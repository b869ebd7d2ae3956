"""Cases for the report tests: the five sample scenarios (sample_data/ or simulated) and a hostile case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS_POD = '<script>window.__kf_xss=1</script>diag'
XSS_ARG = '<img src=x onerror="window.__kf_xss=2">'


def scenario_folder(name: str, tmp_root: Path) -> Path:
    """The evidence folder of a scenario: sample_data/<name> when shipped, else simulated with seed 7."""
    if (SAMPLE / name / "GROUND_TRUTH.json").is_file():
        return SAMPLE / name
    from kubeforensics.simulate import simulate

    return simulate(name, tmp_root / "data" / name)


@pytest.fixture(scope="session")
def scenario_cases(tmp_path_factory):
    """name -> (case, ground truth); built on first use and shared by every test of the session."""
    import kubeforensics as kf

    root = tmp_path_factory.mktemp("report-cases")
    built: dict[str, tuple] = {}

    def get(name: str):
        if name not in built:
            folder = scenario_folder(name, root)
            case = kf.Case.create(root / name)
            case.ingest([p for p in sorted(folder.iterdir()) if p.is_dir()], progress=False)
            built[name] = (case, json.loads((folder / "GROUND_TRUTH.json").read_text()))
        return built[name]

    return get


def _audit(n: int, t: str, **kw) -> dict:
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": f"00000000-0000-0000-0000-00000000000{n}",
          "stage": "ResponseComplete", "requestReceivedTimestamp": t, "stageTimestamp": t,
          "user": {"username": "mallory@evil.example", "groups": ["system:authenticated"]},
          "sourceIPs": ["203.0.113.66"], "userAgent": '<img src=x onerror="window.__kf_xss=3">',
          "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: <b>x</b>"}}
    ev.update(kw)
    return ev


@pytest.fixture(scope="session")
def hostile_case(tmp_path_factory):
    """A case whose pod name, arguments and user agent carry HTML/JS payloads."""
    import kubeforensics as kf

    root = tmp_path_factory.mktemp("hostile")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": XSS_POD, "namespace": "default"},
           "spec": {"hostPID": True, "hostNetwork": True, "containers": [
               {"name": "c", "image": "docker.io/library/ubuntu:22.04", "args": [XSS_ARG],
                "securityContext": {"privileged": True}}]}}
    events = [
        _audit(1, "2026-01-01T10:00:00.000000Z", verb="create", requestURI="/api/v1/namespaces/default/pods",
               objectRef={"resource": "pods", "namespace": "default", "name": XSS_POD, "apiVersion": "v1"},
               responseStatus={"code": 201}, requestObject=pod, responseObject=pod),
        _audit(2, "2026-01-01T10:01:00.000000Z", verb="create",
               requestURI=f"/api/v1/namespaces/default/pods/x/exec?command={XSS_ARG}&stdin=true&tty=true",
               objectRef={"resource": "pods", "subresource": "exec", "namespace": "default", "name": XSS_POD,
                          "apiVersion": "v1"}, responseStatus={"code": 101}),
        _audit(3, "2026-01-01T10:05:00.000000Z", verb="delete",
               requestURI="/api/v1/namespaces/default/pods/x",
               objectRef={"resource": "pods", "namespace": "default", "name": XSS_POD, "apiVersion": "v1"},
               responseStatus={"code": 200}),
    ]
    ev = root / "evidence"
    ev.mkdir()
    (ev / "audit.log").write_text("".join(json.dumps(e) + "\n" for e in events))
    case = kf.Case.create(root / "case")
    rep = case.ingest([ev], progress=False)
    assert rep.totals["ingested"] == 3, rep.to_json()
    return case
