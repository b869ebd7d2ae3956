"""Safe defaults, checked statically over the whole ``kubeforensics`` source tree.

Nothing that came with the evidence may be executed: no pickle (or dill, shelve,
marshal, joblib, ``read_pickle``, ``np.load(allow_pickle=True)``), no ``eval``/``exec``/
``compile``, no dynamic ``__import__``, no unsafe YAML loading, no shell (``shell=True``,
``os.system``, ``os.popen``).  Credentials never reach log calls or the manifest.
The scan parses the source (AST), so strings and comments that mention these names do
not count.  ``ALLOWED`` lists the reviewed exceptions as ``(module path, rule)``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeforensics.case import Case
from tests.hardening.corpus import RECORDS, lines, write

PACKAGE = Path(__file__).resolve().parents[2] / "kubeforensics"
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "marshal", "jsonpickle", "joblib", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "execfile", "input"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_LOADERS = {"Loader", "FullLoader", "UnsafeLoader", "UnsafeConstructor"}
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"), ("os", "spawnl"),
               ("asyncio", "create_subprocess_shell"), ("subprocess", "getoutput"),
               ("subprocess", "getstatusoutput")}
PICKLE_METHODS = {"read_pickle", "to_pickle"}
CREDENTIAL_WORDS = ("password", "passwd", "token", "api_key", "apikey", "secret", "credential", "creds",
                    "private_key", "client_key", "bearer")
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
#: Reviewed exceptions: (path relative to the package, rule).
ALLOWED: set[tuple[str, str]] = set()


def _name(node: ast.AST) -> str:
    """Dotted name of a Name/Attribute chain ('' for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _idents(node: ast.AST) -> Iterator[str]:
    """Every identifier and attribute name inside an expression (not string contents)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) and isinstance(sub.slice.value, str):
            yield sub.slice.value


def problems_in(source: str, rel: str) -> list[tuple[str, int, str]]:
    """``(rule, line, detail)`` for every unsafe construct in one module's source."""
    tree = ast.parse(source, filename=rel)
    out: list[tuple[str, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(("deserialisation", node.lineno, f"import {a.name}"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            out.append(("deserialisation", node.lineno, f"from {node.module} import ..."))
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if isinstance(node.func, ast.Name) and name in FORBIDDEN_CALLS:
            out.append(("eval/exec", node.lineno, f"{name}(...)"))
        if name == "__import__" and not (node.args and isinstance(node.args[0], ast.Constant)):
            out.append(("eval/exec", node.lineno, "__import__ of a computed name"))
        if name.startswith("yaml.") and last in UNSAFE_YAML:
            loader = _name(kw["Loader"]) if "Loader" in kw else (_name(node.args[1]) if len(node.args) > 1 else "")
            if last.startswith(("unsafe", "full")) or not loader.endswith(("SafeLoader", "CSafeLoader")):
                out.append(("yaml", node.lineno, f"{name}(...) without SafeLoader"))
        if "Loader" in kw and _name(kw["Loader"]).rsplit(".", 1)[-1] in UNSAFE_LOADERS:
            out.append(("yaml", node.lineno, f"Loader={_name(kw['Loader'])}"))
        if "shell" in kw and not (isinstance(kw["shell"], ast.Constant) and kw["shell"].value is False):
            out.append(("shell", node.lineno, f"{name}(..., shell=...)"))
        if tuple(name.rsplit(".", 1)) in SHELL_CALLS:
            out.append(("shell", node.lineno, f"{name}(...)"))
        if last in PICKLE_METHODS:
            out.append(("deserialisation", node.lineno, f"{name}(...)"))
        if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant) and not kw["allow_pickle"].value):
            out.append(("deserialisation", node.lineno, f"{name}(allow_pickle=...)"))
        if last in LOG_METHODS and isinstance(node.func, ast.Attribute) and _name(node.func.value).split(".")[-1] in (
                "log", "logger", "logging", "LOG", "_log"):
            for arg in [*node.args[1:], *[k.value for k in node.keywords]] + (node.args[:1] if node.args and not isinstance(node.args[0], ast.Constant) else []):
                hits = [i for i in _idents(arg) if any(w in i.lower() for w in CREDENTIAL_WORDS)]
                if hits:
                    out.append(("credentials-in-log", node.lineno, f"{name}(...) logs {sorted(set(hits))}"))
    return out


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_scan_sees_the_whole_package() -> None:
    mods = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert {"cli.py", "redact.py", "sources/base.py", "case/store.py"} <= mods
    assert len(mods) > 40


def test_no_unsafe_construct_in_the_package() -> None:
    found = []
    for p in _modules():
        rel = p.relative_to(PACKAGE).as_posix()
        for rule, lineno, detail in problems_in(p.read_text(encoding="utf-8"), rel):
            if (rel, rule) not in ALLOWED:
                found.append(f"{rel}:{lineno}: [{rule}] {detail}")
    assert found == [], "unsafe constructs:\n" + "\n".join(found)


@pytest.mark.parametrize(("source", "rule"), [
    ("import pickle\npickle.loads(b'')", "deserialisation"),
    ("from dill import loads", "deserialisation"),
    ("import pandas as pd\npd.read_pickle('x')", "deserialisation"),
    ("import numpy as np\nnp.load('x.npy', allow_pickle=True)", "deserialisation"),
    ("eval(data)", "eval/exec"),
    ("exec(code)", "eval/exec"),
    ("m = __import__(name)", "eval/exec"),
    ("import yaml\nyaml.load(text)", "yaml"),
    ("import yaml\nyaml.load(text, Loader=yaml.Loader)", "yaml"),
    ("import yaml\nyaml.full_load(text)", "yaml"),
    ("import yaml\nyaml.unsafe_load(text)", "yaml"),
    ("import subprocess\nsubprocess.run(cmd, shell=True)", "shell"),
    ("import subprocess\nsubprocess.Popen(cmd, shell=flag)", "shell"),
    ("import os\nos.system(cmd)", "shell"),
    ("import logging\nlog = logging.getLogger()\nlog.info('using %s', creds['password'])", "credentials-in-log"),
    ("log.debug('auth with %s', self.api_key)", "credentials-in-log"),
    ("log.warning(f'token {token}')", "credentials-in-log"),
])
def test_the_scan_catches(source: str, rule: str) -> None:
    assert rule in {r for r, _, _ in problems_in(source, "probe.py")}


@pytest.mark.parametrize("source", [
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(text, yaml.CSafeLoader)",
    "import re\nre.compile('x')",
    "import subprocess\nsubprocess.run(['git', 'status'], check=True)",
    "import subprocess\nsubprocess.run(args, shell=False)",
    "h = __import__('hashlib')",
    "log.info('read %d records from %s', n, path)",
    "log.warning('pickle and eval are forbidden')",
])
def test_the_scan_allows(source: str) -> None:
    assert problems_in(source, "probe.py") == []


def test_yaml_evidence_cannot_construct_python_objects() -> None:
    """Whatever YAML the package loads goes through safe_load: Python tags are refused."""
    import yaml

    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("!!python/object/apply:os.system ['echo pwned']")


def test_ingest_parameters_with_credentials_stay_out_of_the_manifest(tmp_path: Path) -> None:
    """A collector passing connection parameters must not put a credential into manifest.json or the log."""
    src = write(tmp_path / "a.json", lines([RECORDS["falco"](1)]))
    case = Case.create(tmp_path / "case")
    secrets = {"password": "mf-pw-123456", "api_key": "mf-apikey-7890", "token": "mf-token-abcdef",
               "url": "https://elastic:mf-urlpw-4321@es.example:9200"}
    try:
        case.ingest(src, collected_by="elasticsearch", parameters={**secrets, "index": "audit-*"})
    except Exception as exc:  # noqa: BLE001 - refusing credentials outright is fine too
        assert not any(v in str(exc) for v in secrets.values())
        return
    manifest = (case.path / "manifest.json").read_text()
    log = (case.path / "log.jsonl").read_text()
    assert json.loads(manifest)["evidence"][0]["parameters"]["index"] == "audit-*"
    for value in secrets.values():
        assert value not in manifest and value not in log, value
