"""Secret redaction end to end: a case seeded with known secrets in every format.

The evidence carries Secret ``data``/``stringData`` in audit request and response
objects, a Secret inside a ``last-applied-configuration`` annotation, a service-account
JWT in a TokenRequest response, secret-named env values and ``--api-key VALUE``
argument pairs in pod specs, bearer tokens, ``Authorization``/``Cookie`` headers and
``access_token`` URLs in Hubble HTTP, ``--token=``/``--password`` in Tetragon and Falco
command lines, kubeconfig credentials in a ConfigMap, basic-auth URLs, and damaged
records holding secrets (quarantined).  Every table (as text), the quarantine, the case
log, the manifest, the timeline in every format, findings, story and the report are
searched: none of the secret values appear, the redaction marker does, and the raw
evidence is still untouched.  The explicit opt-out is logged and works.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kubeforensics import redact
from kubeforensics.case import Case
from kubeforensics.cli import COMMANDS, _resolve, main
from tests.hardening.corpus import RECORDS, lines, setpath, write

PY = sys.executable
JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IlNBS0VZMSJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoic3lzdGVt"
       "OnNlcnZpY2VhY2NvdW50OnNob3A6d2ViIn0.c2lnbmF0dXJlLW9mLXRoZS1zZXJ2aWNlLWFjY291bnQtdG9rZW4")
KUBE_KEY = "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVBeHh4eHh4eHh4eAo="
#: name -> secret value; each must never leave the evidence copy.
SECRETS = {
    "secret-data": "c3VwZXItc2VjcmV0LWRiLXBhc3N3b3Jk",
    "secret-stringdata": "hunter2-stringdata-7f3a",
    "last-applied": "lastapplied-pw-Q7x9",
    "tokenrequest-jwt": JWT,
    "pod-env": "env-db-pass-0a1b2c",
    "pod-arg-pair": "argpair-apikey-3d4e5f",
    "hubble-bearer": "hb-bearer-Zx81Yw72Vu63",
    "hubble-cookie": "cookie-session-9f8e7d6c",
    "hubble-url-token": "urltok-5566778899",
    "hubble-apikey-header": "xapikey-hdr-1a2b3c",
    "tetragon-token": "tt-cli-token-112233",
    "tetragon-password": "tt-pw-445566",
    "tetragon-basic-url": "gitpw-basic-8877",
    "falco-password": "fc-mysql-pw-778899",
    "kubeconfig-key": KUBE_KEY,
    "kubeconfig-token": "kc-user-token-aabbcc",
    "kubeconfig-password": "kc-basic-pw-ddeeff",
    "event-basic-url": "regpw-basic-6655",
    "quarantined-token": "qtok-damaged-9988",
    "quarantined-secret": "cXVhcmFudGluZWQtc2VjcmV0LWRhdGE=",
}
S = SECRETS

KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- cluster: {{server: "https://10.0.0.1:6443"}}
  name: prod
users:
- name: admin
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    client-key-data: {KUBE_KEY}
- name: robot
  user:
    token: {S['kubeconfig-token']}
- name: legacy
  user:
    username: admin
    password: {S['kubeconfig-password']}
"""


def _audit() -> bytes:
    secret_obj = {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
                  "metadata": {"name": "db", "namespace": "shop", "annotations": {
                      "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                          {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "db"},
                           "stringData": {"password": S["last-applied"]}})}},
                  "data": {"password": S["secret-data"]}, "stringData": {"url": S["secret-stringdata"]}}
    create_secret = {**RECORDS["audit"](1), "verb": "create", "level": "RequestResponse",
                     "requestURI": "/api/v1/namespaces/shop/secrets",
                     "objectRef": {"resource": "secrets", "namespace": "shop", "name": "db", "apiVersion": "v1"},
                     "requestObject": secret_obj, "responseObject": {**secret_obj, "stringData": None}}
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web-1", "namespace": "shop"},
           "spec": {"containers": [{"name": "web", "image": "shop/web:1",
                                    "args": ["--api-key", S["pod-arg-pair"], "--port", "8080"],
                                    "env": [{"name": "DB_PASSWORD", "value": S["pod-env"]},
                                            {"name": "LOG_LEVEL", "value": "debug"}]}]}}
    create_pod = {**RECORDS["audit"](2), "verb": "create", "level": "RequestResponse",
                  "requestURI": "/api/v1/namespaces/shop/pods",
                  "objectRef": {"resource": "pods", "namespace": "shop", "name": "web-1", "apiVersion": "v1"},
                  "requestObject": pod, "responseObject": pod}
    token = {**RECORDS["audit"](3), "verb": "create", "level": "RequestResponse",
             "requestURI": "/api/v1/namespaces/shop/serviceaccounts/web/token",
             "objectRef": {"resource": "serviceaccounts", "subresource": "token", "namespace": "shop", "name": "web"},
             "requestObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                               "spec": {"audiences": ["https://kubernetes.default.svc"]}},
             "responseObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                "status": {"token": S["tokenrequest-jwt"],
                                           "expirationTimestamp": "2026-03-02T13:00:00Z"}}}
    damaged = json.dumps({**RECORDS["audit"](4), "requestObject": {
        "kind": "Secret", "data": {"db.conf": S["quarantined-secret"]}}}).encode()[:-3]
    return lines([create_secret, create_pod, token]) + damaged + b"\n"


def _tetragon() -> bytes:
    a = setpath(RECORDS["tetragon"](1), ("process_exec", "process", "arguments"),
                f"--server https://10.0.0.1 --token={S['tetragon-token']} --password {S['tetragon-password']}")
    b = setpath(RECORDS["tetragon"](2), ("process_exec", "process", "arguments"),
                f"clone https://deploy:{S['tetragon-basic-url']}@git.example.com/shop.git")
    c = setpath(RECORDS["tetragon"](3), ("process_exec", "process", "arguments"),
                f"-H \"Authorization: Bearer {S['tokenrequest-jwt']}\" https://10.0.0.1/api")
    return lines([a, b, c]) + f'{{"process_exec": {{"process": {{"arguments": "--token={S["quarantined-token"]}'.encode() + b"\n"


def _hubble() -> bytes:
    flow = RECORDS["hubble"](1)
    http = flow["flow"]["l7"]["http"]
    http["url"] = f"https://api.shop.example/v1/orders?access_token={S['hubble-url-token']}&page=2"
    http["headers"] = [{"key": "Authorization", "value": f"Bearer {S['hubble-bearer']}"},
                       {"key": "Cookie", "value": f"sessionid={S['hubble-cookie']}; theme=dark"},
                       {"key": "X-Api-Key", "value": S["hubble-apikey-header"]},
                       {"key": "User-Agent", "value": "python-requests/2.31"}]
    flow["flow"]["Summary"] = f"HTTP/1.1 GET {http['url']}"
    return lines([flow, RECORDS["hubble"](2)])


def _falco() -> bytes:
    cmd = f"mysql -h db -u root --password={S['falco-password']} shop"
    a = RECORDS["falco"](1)
    a["output"] = f"12:00:01.000000000: Warning Shell (user=root command={cmd} token={S['tokenrequest-jwt']})"
    a["output_fields"]["proc.cmdline"] = cmd
    return lines([a, RECORDS["falco"](2)])


def _events() -> bytes:
    ev = RECORDS["k8s-events"](1)
    ev["reason"] = "Failed"
    ev["message"] = f'Failed to pull image "registry.example.com/shop/web:1": https://robot:{S["event-basic-url"]}@registry.example.com/v2/ unauthorized'
    return lines([ev])


def _objects() -> bytes:
    cm = {"kind": "ConfigMap", "apiVersion": "v1",
          "metadata": {"name": "admin-kubeconfig", "namespace": "kube-system", "uid": "cm-1",
                       "creationTimestamp": "2026-03-02T10:00:00Z"},
          "data": {"kubeconfig": KUBECONFIG}}
    sec = {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
           "metadata": {"name": "db", "namespace": "shop", "uid": "s-1", "creationTimestamp": "2026-03-02T10:00:00Z"},
           "data": {"password": S["secret-data"]}}
    pod = RECORDS["k8s-objects"](1)
    pod["spec"]["containers"][0]["env"] = [{"name": "DB_PASSWORD", "value": S["pod-env"]}]
    pod["spec"]["containers"][0]["args"] = ["--api-key", S["pod-arg-pair"]]
    return json.dumps({"kind": "List", "apiVersion": "v1", "items": [cm, sec, pod]}, indent=2).encode()


def make_secret_evidence(folder: Path) -> Path:
    """Write the seeded evidence (one file per format) into ``folder``."""
    for name, data in (("audit.log", _audit()), ("tetragon.json", _tetragon()), ("hubble.json", _hubble()),
                       ("falco.json", _falco()), ("events.json", _events()), ("objects.json", _objects())):
        write(folder / name, data)
    return folder


def leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def run(*args: str) -> str:
    proc = subprocess.run([PY, "-m", "kubeforensics", *args], check=False, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not leaks(proc.stderr), leaks(proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def secret_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    root = tmp_path_factory.mktemp("secrets")
    src = make_secret_evidence(root / "evidence")
    case = Case.create(root / "case")
    rep = case.ingest(src)
    t = rep.totals
    assert t["records"] == t["ingested"] + t["quarantined"] and t["quarantined"] == 2, rep.to_json()
    return case


def _tables_text(case: Case) -> dict[str, str]:
    out = {}
    for part in sorted((case.path / "tables").rglob("*.parquet")):
        rows = pq.read_table(part).to_pylist()
        out[part.parent.name] = out.get(part.parent.name, "") + json.dumps(rows, default=str, ensure_ascii=False)
    return out


def test_the_evidence_copy_keeps_every_secret(secret_case: Case) -> None:
    raw = "".join(p.read_text() for p in (secret_case.path / "evidence").rglob("*") if p.is_file())
    assert sorted(leaks(raw)) == sorted(SECRETS)  # the test data holds them all, untouched


def test_no_secret_in_any_table(secret_case: Case) -> None:
    tables = _tables_text(secret_case)
    assert set(tables) >= {"audit", "processes", "flows", "alerts", "k8s_events", "objects"}
    for name, text in tables.items():
        assert not leaks(text), (name, leaks(text))
    for name in ("audit", "processes", "flows", "alerts", "k8s_events"):
        assert redact.MARK in tables[name], name
    assert redact.MARK in tables["objects"] or "objects" not in tables


def test_no_secret_in_quarantine_log_or_manifest(secret_case: Case) -> None:
    q = "".join(p.read_text() for p in (secret_case.path / "quarantine").glob("*.jsonl"))
    assert q.count("\n") == 2
    assert not leaks(q), leaks(q)
    assert redact.MARK in q
    assert "tetragon.json" in q and "audit.log" in q  # the entries still say where to find the bytes
    qdf = secret_case.quarantine()
    assert not leaks(qdf.to_json())
    for name in ("log.jsonl", "manifest.json", "case.json"):
        text = (secret_case.path / name).read_text()
        assert not leaks(text), (name, leaks(text))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_no_secret_in_the_timeline(secret_case: Case, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["timeline", "--case", str(secret_case.path), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert not leaks(err)
    assert len(out.splitlines()) >= 10
    assert not leaks(out), leaks(out)
    if fmt != "table":  # the table view truncates summaries
        assert redact.MARK in out


def test_no_secret_in_python_views(secret_case: Case) -> None:
    for name, df in secret_case.frames().items():
        assert not leaks(df.to_json(default_handler=str, date_format="iso")), name
    assert not leaks(secret_case.timeline().to_json(default_handler=str, date_format="iso"))
    assert not leaks(secret_case._repr_html_())


@pytest.mark.parametrize("command", ["findings", "story"])
def test_no_secret_in_findings_and_story(secret_case: Case, command: str) -> None:
    if _resolve(command) is None:
        pytest.skip(f"'kubeforensics {command}' is not built yet")
    fmts = {"findings": ["jsonl"], "story": ["json", "markdown"]}[command]
    for fmt in fmts:
        out = run(command, "--case", str(secret_case.path), "--format", fmt)
        assert not leaks(out), (command, fmt, leaks(out))
        assert ("KF-AUD-106" in out) if command == "findings" else ("REDACTED" in out)  # real content, redacted


def test_no_secret_in_the_report(secret_case: Case, tmp_path: Path) -> None:
    if "report" not in COMMANDS or _resolve("report") is None:
        pytest.skip("'kubeforensics report' is not built yet")
    out = tmp_path / "report.html"
    run("report", "--case", str(secret_case.path), "--out", str(out))
    html = out.read_text()
    assert len(html) > 1000 and "shop" in html
    assert not leaks(html), leaks(html)
    assert f"built from manifest sha256 <code>{secret_case.log.last_manifest_sha()}</code>" in html


def test_nothing_written_back_into_the_case_leaks(secret_case: Case) -> None:
    """After every command above ran: the log (answers, ingests), derived caches, quarantine."""
    for p in sorted(secret_case.path.rglob("*")):
        if p.is_file() and "evidence" not in p.relative_to(secret_case.path).parts and p.suffix != ".parquet":
            assert not leaks(p.read_bytes().decode("utf-8", "replace")), p


def test_ingest_logs_carry_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_secret_evidence(tmp_path / "ev")
    write(src / "junk.bin", b"\x00\x01--token=" + S["quarantined-token"].encode() + b"\xff" * 50)
    with caplog.at_level(logging.DEBUG):
        Case.create(tmp_path / "case").ingest(src)
    assert caplog.records  # the unknown-format file at least is logged
    assert not leaks(caplog.text), leaks(caplog.text)


def test_explicit_opt_out_is_logged_and_shows_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_secret_evidence(tmp_path / "ev")
    try:
        with caplog.at_level(logging.WARNING, logger="kubeforensics.redact"):
            redact.set_enabled(False, reason="case 4711: counsel needs the leaked token")
        assert not redact.enabled()
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "secret redaction DISABLED" in caplog.text and "case 4711" in caplog.text
        case = Case.create(tmp_path / "case")
        case.ingest(src)
        tables = _tables_text(case)
        assert S["tetragon-token"] in tables["processes"]
        assert S["hubble-cookie"] in tables["flows"]
        assert S["falco-password"] in tables["alerts"]
    finally:
        redact.set_enabled(True)
    assert redact.enabled()
    assert redact.text(f"--token={S['tetragon-token']}") == f"--token={redact.MARK}"
