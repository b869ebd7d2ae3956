"""The redaction rules one by one, and the pre-check's contract.

``redact.might_contain_secret`` is a cheap pre-check (mirrored in SQL by the audit
fast path): whenever it says False, ``redact.text`` must leave the string unchanged.
That is checked with hypothesis on short strings (regex path) and on strings past
the long-string threshold (case-folded substring path).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeforensics import redact
from kubeforensics.redact import MARK

WORDS = ["bearer ", "Basic ", "token", "TOKEN=", "passw", "password: ", "secret", "api-key ", "API_KEY=", "eyJ",
         "://u:p@", "cookie: ", "Set-Cookie=", "authorization: ", 'Authorization":"', "PRIVATE KEY",
         "-----BEGIN RSA PRIVATE KEY-----", "client-key-data: ", "LS0tLS1CRUdJT", "\u017f", "K", "\u0131", "\u0130", "Bas\u0131c ", "p\u0130vate key", "--", "&", "?", " "]
pieces = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(pieces, max_size=12), long=st.booleans())
def test_precheck_is_a_superset_of_the_patterns(parts: list[str], long: bool) -> None:
    value = "".join(parts)
    if redact._MAYBE_SECRET.search(value):  # the folded path never says no where the pattern says yes
        assert redact.might_contain_secret(value)
    if long:
        value = "x" * 30 + value
    if not redact.might_contain_secret(value):
        assert redact.text(value) == value


@pytest.mark.parametrize(("value", "expected"), [
    ('curl -H "Cookie: sid=abc123; theme=dark" x', f'curl -H "Cookie: {MARK}" x'),
    ("Set-Cookie: sid=abc123", f"Set-Cookie: {MARK}"),
    ('"authorization": "Digest username=admin, response=6629fae4"', f'"authorization": "{MARK}"'),
    ("Authorization: Bearer abcdefgh12345", f"Authorization: Bearer {MARK}"),
    ("x-api-key: 0123456789abcdef", f"x-api-key: {MARK}"),
    ('{"password":"hunter2","user":"bob"}', f'{{"password":"{MARK}","user":"bob"}}'),
    ("db_password=hunter2 other=1", f"db_password={MARK} other=1"),
    ("    token: kc-abc-123\n    username: x", f"    token: {MARK}\n    username: x"),
    ("client-key-data: QUJDREVGR0g=", f"client-key-data: {MARK}"),
    ("k: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo= end", f"k: {MARK} end"),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nrest", f"{MARK}\nrest"),
    ("git clone https://deploy:s3cr3t@git.example.com/x.git", f"git clone https://deploy:{MARK}@git.example.com/x.git"),
    ("mysql --password hunter2 -u root", f"mysql --password {MARK} -u root"),
    ("command=DB_PASSWORD=hunter2", f"command=DB_PASSWORD={MARK}"),
    ("/api/v1/namespaces/x/pods/p/exec?command=env&command=DB_PASSWORD%3Dhunter2&container=c",
     f"/api/v1/namespaces/x/pods/p/exec?command=env&command=DB_PASSWORD%3D{MARK}&container=c"),
    ("sh%20-c%20export%20API_TOKEN%3Dabc123", f"sh%20-c%20export%20API_TOKEN%3D{MARK}"),
    ("/x?token=abc%2Fdef&y=1", f"/x?token={MARK}&y=1"),
    ("secrets \"db\" is forbidden: User cannot get resource", "secrets \"db\" is forbidden: User cannot get resource"),
    ("GET /api/v1/namespaces/shop/pods?limit=500", "GET /api/v1/namespaces/shop/pods?limit=500"),
])
def test_text_patterns(value: str, expected: str) -> None:
    assert redact.text(value) == expected


@pytest.mark.parametrize("value", ["Bas\u0131c abcdefgh12345", "author\u0130zation: Digest abc123",
                                   "DB_PA\u017fSWORD=hunter2", "api_\u212aey=abcdef123"])
def test_non_ascii_letters_that_match_ascii_ones_are_not_skipped(value: str) -> None:
    """re.IGNORECASE equates U+0131/U+0130 with "i", U+017F with "s", U+212A with "k": the patterns redact
    such text, so the long-string pre-check must not skip it (it did for U+0131 and U+0130)."""
    short, long = redact.text(value), redact.text("x" * 30 + " " + value)
    assert MARK in short
    assert long == "x" * 30 + " " + short


def test_long_strings_are_redacted_like_short_ones() -> None:
    pad = "A" * 10_000
    assert redact.text(pad + " --token=abc " + pad) == pad + f" --token={MARK} " + pad
    assert redact.text(pad + " cookie: sid=1") == pad + f" cookie: {MARK}"
    assert redact.text(pad + " https://u:pw@h/") == pad + f" https://u:{MARK}@h/"
    assert redact.text(pad + " Authorization: Digest x") == pad + f" Authorization: {MARK}"
    assert redact.text(pad) == pad


def test_object_keys_flags_and_env() -> None:
    obj = {
        "kind": "ConfigMap",
        "data": {"DB_PASSWORD": "p1", "github_token": "t1", "auth": "dXNlcjpwYXNz", "app.secret-key": "k1",
                 "secretName": "db-creds", "token-ttl": "3600", "credential-id": "JTI=1"},
        "spec": {"containers": [{"args": ["--api-key", "a1", "--port", "80", "--token-file", "/var/t"],
                                 "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "e1"},
                                         {"name": "LOG_LEVEL", "value": "debug"}]}]},
        "metadata": {"annotations": {"authorization.k8s.io/decision": "allow"}},
    }
    out = redact.k8s_object(obj)
    assert out["data"] == {"DB_PASSWORD": MARK, "github_token": MARK, "auth": MARK, "app.secret-key": MARK,
                           "secretName": "db-creds", "token-ttl": "3600", "credential-id": "JTI=1"}
    c = out["spec"]["containers"][0]
    assert c["args"] == ["--api-key", MARK, "--port", "80", "--token-file", MARK]
    assert c["env"] == [{"name": "AWS_SECRET_ACCESS_KEY", "value": MARK}, {"name": "LOG_LEVEL", "value": "debug"}]
    assert out["metadata"] == obj["metadata"]
    assert obj["data"]["DB_PASSWORD"] == "p1"  # the input is not modified


def test_headers() -> None:
    hs = [{"key": "Cookie", "value": "a=1"}, {"key": "X-Amz-Security-Token", "value": "t"},
          {"key": "X-Session-Id", "value": "s"}, {"key": "User-Agent", "value": "curl/8"},
          {"key": "Referer", "value": "https://x/?access_token=abc"}]
    assert redact.headers(hs) == [{"key": "Cookie", "value": MARK}, {"key": "X-Amz-Security-Token", "value": MARK},
                                  {"key": "X-Session-Id", "value": MARK}, {"key": "User-Agent", "value": "curl/8"},
                                  {"key": "Referer", "value": f"https://x/?access_token={MARK}"}]


# --- k8s_object's whole-subtree check (redact._clean) against the plain walk -----------------------------------
SECRETISH = ["password", "PASSWD", "secret", "Token", "api-key", "access_key", "private key", "credential", "auth",
             "bearer", "Basic", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlMTIz", "cookie", "key-data",
             "LS0tLS1CRUdJTiBSU0E=", "client-certificate-data", "kubectl.kubernetes.io/last-applied-configuration",
             "https://u:pw@h/", "registry@sha256:abc", "docker://x", "Bas\u0131c abcdefgh1234", "\u017fecret",
             "--password", "--token", "hunter2", "apikey", "APIKEY=abc12345", "accesskey", "AccessKey", "privatekey",
             "private-key", "private_key", "-----BEGIN RSA PRIVATE KEY-----", "client-key-data: QUJDREVGR0g=",
             "Cookie: sid=abc123", "authorization: Digest abc", "x-api-key", "access_key_id", "secret_key", "api_key",
             "access-key", "DB_API_KEY", "name", "value", "kind", "Secret", "TokenRequest", "status", "data",
             "stringData", "items", "env", "DB_PASSWORD", "x", "image", "web:1", "/var/run/secrets/sa"]
_keys = st.sampled_from(SECRETISH)
_scalars = st.one_of(st.sampled_from(SECRETISH), st.text(max_size=8), st.integers(), st.booleans(), st.none())
_trees = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                       st.dictionaries(_keys, kids, max_size=5)), max_leaves=30)


def _plain_walk(obj):
    """k8s_object without the subtree check: the walk from a level past redact._CHECKED_LEVELS."""
    return redact._walk(obj, obj.get("kind") if isinstance(obj, dict) else None, redact._CHECKED_LEVELS)


@settings(max_examples=600, deadline=None)
@given(tree=st.dictionaries(_keys, _trees, max_size=6), kind=st.sampled_from([None, "Pod", "Secret", "TokenRequest"]))
def test_subtree_check_gives_the_plain_walk(tree, kind) -> None:
    """Objects with secret words (keys, values, kinds, flags, env pairs, last-applied, URLs with user info,
    non-ASCII letters) at every depth: k8s_object equals the walk that checks no subtree."""
    if kind is not None:
        tree = {**tree, "kind": kind}
    assert redact.k8s_object(tree) == _plain_walk(tree)


def test_subtree_check_on_sample_and_conformance_objects() -> None:
    """Every object of the sample data's k8s dumps, request objects of its audit logs, and the conformance pods."""
    import gzip
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    docs = []
    for p in sorted((root / "sample_data").glob("*/k8s/*.json")):
        docs += json.loads(p.read_text()).get("items", [])
    for p in sorted((root / "sample_data").glob("*/audit/*")):
        with (gzip.open(p, "rt") if p.suffix == ".gz" else open(p)) as f:
            for line in f:
                ev = json.loads(line)
                docs += [ev[k] for k in ("requestObject", "responseObject") if isinstance(ev.get(k), dict)]
    conf = root.parent / "shared" / "conformance" / "pods"
    for p in sorted(conf.glob("*.json")) if conf.is_dir() else []:
        d = json.loads(p.read_text())
        docs += d.get("items", [d]) if isinstance(d, dict) else []
    assert len(docs) > 500
    changed = 0
    for d in docs:
        got = redact.k8s_object(d)
        assert got == _plain_walk(d)
        changed += got != d
    assert changed > 0  # some of them are redacted: the comparison is not between untouched objects


def _placements(word: str):
    """``word`` in every role the walk looks at: a key of a string, a string, a kind, a flag, an env name."""
    yield {word: "v"}
    yield {"k": word}
    yield {"k": "x" * 30 + " " + word + " abcdefgh12345"}  # a long string (the folded pre-check)
    yield {"kind": word, "data": {"a": "b"}, "stringData": {"c": "d"}, "status": {"token": "t"}}
    yield {"kind": word, "nested": {"data": {"a": "b"}, "stringData": {"c": "d"}}}  # the kind is inherited
    yield {"args": [word, "v"]}
    yield {"args": ["-" + word, "v"]}
    yield {"name": word, "value": "v"}
    yield {"k": [word]}


def test_subtree_check_on_each_word_in_each_role_at_each_depth() -> None:
    """Each secret-looking word of SECRETISH, alone in an otherwise plain pod, in every role and at depths 0-5:
    k8s_object equals the plain walk (a word missing from redact._REDACTABLE fails here)."""
    plain = {"kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
             "spec": {"containers": [{"name": "c", "image": "web:1", "args": ["--port", "80"]}]},
             "status": {"phase": "Running"}}
    checked = 0
    for word in SECRETISH:
        for part in _placements(word):
            node = part
            for depth in range(6):
                obj = {**plain, "spec": {**plain["spec"], "extra": node}}
                got = redact.k8s_object(obj)
                assert got == _plain_walk(obj), (word, part, depth)
                checked += got != obj
                node = {"level": [node] if depth % 2 else node}
    assert checked > 100


def test_remembered_texts_follow_the_opt_out() -> None:
    """Short texts are redacted once and remembered; turning redaction off (and on again) still applies at once."""
    value = "--token=abc123 --port 80"
    assert redact.text(value) == f"--token={MARK} --port 80"
    assert redact.text(value) == f"--token={MARK} --port 80"  # remembered
    redact.set_enabled(False, reason="test")
    try:
        assert redact.text(value) == value
    finally:
        redact.set_enabled(True)
    assert redact.text(value) == f"--token={MARK} --port 80"
    long = "x" * 300 + " " + value  # past the remembered length: redacted each time
    assert redact.text(long) == "x" * 300 + f" --token={MARK} --port 80"
