"""Redaction of secret material before it reaches tables, widgets, reports or logs.

The raw evidence in a case stays untouched (and hashed); the normalised tables
hold the redacted form, where every removed value is replaced by
:data:`MARK`.  Redaction is on by default; :func:`set_enabled` is the
explicit, logged opt-out for investigators who must see secrets.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

MARK = "[REDACTED]"
_enabled = True

SECRET_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-auth-token"
    r"|.*(token|secret|passw|api[-_]?key|session|credential).*)$",
    re.IGNORECASE,
)
SECRET_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth)", re.IGNORECASE
)
#: Object keys whose string value is a secret wherever they appear (kubeconfigs, docker configs,
#: ConfigMap data, Helm values): a secret word as a whole ``_.-``-separated part of the key.
SECRET_KEY = re.compile(
    r"(?i)^(?!.*[-_.](?:id|uid|name|names|ref|file|path|ttl|expir\w*|seconds|type)$)(?:.*[_.\-/])?(pass(word|wd)?|secret|token|api[-_]?key|access[-_]?key|secret[-_]?key|private[-_]?key"
    r"|client[-_]?secret|credentials?|client-key-data|auth|bearer[-_]?token)(?:[_.\-].*)?$"
)
#: A command-line flag whose value is the next argument (``["--password", "hunter2"]``).
SECRET_FLAG = re.compile(r"(?i)^--?[\w.-]*(pass(word|wd)?|secret|token|api[-_]?key|credential)[\w.-]*$")
_KEYS = r"(?:[\w.-]*[_.-])?(?:token|password|passwd|secret|client[_-]?secret|api[_-]?key)"
_TEXT_PATTERNS = [
    # PEM private keys, and base64 PEM ("-----BEGIN" encodes to LS0tLS1CRUdJT...; kubeconfig *-data values)
    (re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)"), lambda m: MARK),
    (re.compile(r"LS0tLS1CRUdJT[A-Za-z0-9+/=]*"), lambda m: MARK),
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), lambda m: f"{m.group(1)} {MARK}"),
    # Authorization headers of any other scheme, Cookie / Set-Cookie headers in free text (curl -H, logs)
    (
        re.compile(r"(?i)(\b(?:proxy-)?authorization\"?\s*[:=]\s*\"?)(?![\s\"]|(?:bearer|basic)\s)([^\"'\r\n}]+)"),
        lambda m: f"{m.group(1)}{MARK}",
    ),
    (re.compile(r"(?i)(\b(?:set-)?cookie\"?\s*[:=]\s*\"?)([^\"'\r\n}]+)"), lambda m: f"{m.group(1)}{MARK}"),
    # --token=xxx, --password xxx, token=xxx in URLs and command lines, "password": "x" and password: x
    (
        # also after "=" and in URL-encoded text: exec URIs carry ``command=DB_PASSWORD%3Dhunter2``
        re.compile(r"(?i)((?:--?|[?&;\s\"'{,=]|%20|%3[dD]|^)" + _KEYS
                   + r"\"?(?:\s*[:=]\s*\"?|%3[dD]|\s+))([^\s&\"',}]+)"),
        lambda m: f"{m.group(1)}{MARK}",
    ),
    # kubeconfig client-key-data: xxx
    (re.compile(r"(?i)(client-key-data\"?\s*[:=]\s*\"?)([^\s\"',}]+)"), lambda m: f"{m.group(1)}{MARK}"),
    # JWTs anywhere (service-account tokens)
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), lambda m: MARK),
    # user:password@ in URLs
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@/\s]+)(@)"), lambda m: f"{m.group(1)}{MARK}{m.group(3)}"),
]


#: Every pattern above needs one of these: a cheap test that skips most strings.  Mirrored in SQL
#: (RE2 syntax) by ``kubeforensics.sources.audit_fast.MAYBE_SECRET_RE2``: change both together.
#: Written in the common subset of Python ``re`` and RE2, so that the vectorised audit path
#: (DuckDB ``regexp_matches``) applies the very same pre-check.
MAYBE_SECRET_PATTERN = (
    r'(?i)bearer|basic|token|passw|secret|api[-_]?key|eyJ|://[^/\s]*@|cookie|authorization"?\s*[:=]'
    r"|private key|key-data|LS0tLS1CRUdJT"
)
_MAYBE_SECRET = re.compile(MAYBE_SECRET_PATTERN)

#: From this length on the pre-check folds case once and looks for plain substrings: a
#: case-insensitive alternation costs ~90 ns per character on short strings in Python ``re``
#: (15 us for a 150-character Falco output, against 1.5 us folded; 0.7 s on a 50 MB line).
#: The folded test is a superset of the pattern (tests/hardening/test_redact_rules.py).
_LONG = 24
_WORDS = ("bearer", "basic", "token", "passw", "secret", "eyj", "apikey", "api-key", "api_key", "cookie",
          "private key", "key-data", "ls0tls1crudjt")
_SLOW_PARTS = re.compile(r"(?i)://[^/\s]*@|authorization\"?\s*[:=]")


_FOLD_I = str.maketrans({"\u0131": "i", "\u0307": None})


def _maybe_secret(value: str) -> bool:
    if len(value) < _LONG:
        return _MAYBE_SECRET.search(value) is not None
    # casefold() folds what re.IGNORECASE equates with an ASCII letter (U+017F to "s", U+212A to "k"), except
    # U+0131 (dotless i, left as it is) and U+0130 (to "i" + U+0307): the translation completes it, a superset.
    folded = value.casefold()
    if not value.isascii():
        folded = folded.translate(_FOLD_I)
    if any(w in folded for w in _WORDS):
        return True
    return ("@" in value or "uthorization" in folded) and _SLOW_PARTS.search(value) is not None


def might_contain_secret(value: str) -> bool:
    """Cheap pre-check: False means :func:`text` would leave ``value`` unchanged.

    Parameters
    ----------
    value
        Any text.

    Returns
    -------
    bool
        True when ``value`` holds one of the words every redaction pattern needs.
    """
    return _maybe_secret(value)


def set_enabled(enabled: bool, *, reason: str = "") -> None:
    """Turn redaction off (or back on).  Turning it off is logged as a warning with the reason."""
    global _enabled
    if not enabled:
        log.warning("secret redaction DISABLED by the investigator%s", f": {reason}" if reason else "")
    _enabled = enabled


def enabled() -> bool:
    return _enabled


def text(value: str | None) -> str | None:
    """Redact tokens, passwords and bearer credentials inside free text (args, URLs, messages)."""
    if not value or not _enabled:
        return value
    if len(value) <= _CACHED_CHARS:
        return _short_text(value)
    return _text(value)


#: Texts up to this long are redacted once and remembered (:func:`_short_text`): names, images, paths,
#: arguments and URLs repeat from record to record.
_CACHED_CHARS = 256


@lru_cache(maxsize=32768)
def _short_text(value: str) -> str:
    return _text(value)


def _text(value: str) -> str:
    if not _maybe_secret(value):
        return value
    for pattern, repl in _TEXT_PATTERNS:
        value = pattern.sub(repl, value)
    return value


def headers(items: Any) -> Any:
    """Hubble-style header lists ``[{"key", "value"}]`` or a mapping: secret headers lose their value."""
    if not _enabled or items is None:
        return items
    if isinstance(items, dict):
        return {k: (MARK if SECRET_HEADER.match(str(k)) else text(v) if isinstance(v, str) else v) for k, v in items.items()}
    if isinstance(items, list):
        out = []
        for h in items:
            if isinstance(h, dict) and SECRET_HEADER.match(str(h.get("key", ""))):
                out.append({**h, "value": MARK})
            elif isinstance(h, dict) and isinstance(h.get("value"), str):
                out.append({**h, "value": text(h["value"])})
            else:
                out.append(h)
        return out
    return items


def k8s_object(obj: Any) -> Any:
    """Redact a Kubernetes object (or request/response body): Secret data, kubeconfig/token
    material, env values with secret-like names, and secret strings anywhere.

    The input is not modified; the result shares with it the subtrees that needed no change
    (the whole object when nothing in it could be redacted), so treat both as read-only."""
    if not _enabled or obj is None:
        return obj
    # RecursionError propagates: the reader engine quarantines such a record ("nested too deeply").
    if isinstance(obj, (dict, list)) and _clean(obj):
        return obj  # (most Events, most Falco output fields: one serialisation instead of a walk)
    return _walk(obj, obj.get("kind") if isinstance(obj, dict) else None, 0)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied(value: str, kind: str | None) -> str:
    """The last-applied annotation holds the whole object (a Secret's values too): redact inside it."""
    import orjson

    try:
        inner = orjson.loads(value)
    except orjson.JSONDecodeError:
        return MARK
    if not isinstance(inner, dict) or inner.get("kind") == "Secret" or kind == "Secret":
        return MARK
    return orjson.dumps(_walk(inner, inner.get("kind"))).decode()


@lru_cache(maxsize=8192)
def _secret_key(key: str) -> bool:
    """``SECRET_KEY.match(key)``, cached: object keys repeat (``proc.cmdline``, ``metadata``...)."""
    return SECRET_KEY.match(key) is not None


#: The first levels of an object, where each subtree is first checked as a whole (:func:`_clean`) and
#: kept as it is when nothing in it could be redacted: a pod's ``status``, a node's ``images``...
_CHECKED_LEVELS = 3
#: Every change :func:`_walk` makes needs one of these in the subtree's JSON (lowercased ASCII): the
#: secret words of SECRET_KEY, SECRET_NAME and SECRET_FLAG, the Secret/TokenRequest kinds, the
#: last-applied annotation, client-certificate-data, and the words of MAYBE_SECRET_PATTERN.
_REDACTABLE = (b"pass", b"secret", b"token", b"credential", b"auth", b"bearer", b"basic", b"eyj", b"cookie",
               b"ls0tls1crudjt", b"client-certificate-data", b"last-applied")
#: ... and those with "key" (looked for only in text with a "key": tolerations have one, few have these).
_KEY_WORDS = (b"apikey", b"api-key", b"api_key", b"accesskey", b"access-key", b"access_key", b"privatekey",
              b"private-key", b"private_key", b"private key", b"key-data")


_USERINFO = re.compile(rb"://[^/\s]*@")  # the user-info part of MAYBE_SECRET_PATTERN (container image ids are not)


def _clean(node: Any) -> bool:
    """True when :func:`_walk` would give ``node`` back unchanged: its JSON is ASCII (so lowercasing folds
    every case ``re.IGNORECASE`` equates) and holds none of :data:`_REDACTABLE`, :data:`_KEY_WORDS` nor
    a ``://...@``.
    Conservative: False whenever in doubt (not serialisable, too deep, non-ASCII)."""
    import orjson

    try:
        data = orjson.dumps(node)
    except (TypeError, orjson.JSONEncodeError):
        return False
    if not data.isascii():
        return False
    low = data.lower()
    if b"@" in low and _USERINFO.search(low):
        return False
    if any(w in low for w in _REDACTABLE):
        return False
    return b"key" not in low or not any(w in low for w in _KEY_WORDS)


def _walk(node: Any, kind: str | None, level: int = _CHECKED_LEVELS) -> Any:
    if isinstance(node, dict):
        node_kind = node.get("kind") if isinstance(node.get("kind"), str) else kind
        out: dict[str, Any] = {}
        is_env = "name" in node and "value" in node and len(node) <= 3
        for k, v in node.items():
            if node_kind in ("Secret", "TokenRequest") and k in ("data", "stringData") and isinstance(v, dict):
                out[k] = {key: MARK for key in v}
            elif node_kind == "TokenRequest" and k == "status" and isinstance(v, dict) and "token" in v:
                out[k] = {**v, "token": MARK}
            elif isinstance(v, str) and (k in ("client-certificate-data", "bearerToken") or _secret_key(str(k))):
                out[k] = MARK
            elif k == LAST_APPLIED and isinstance(v, str):
                out[k] = _last_applied(v, node_kind)
            elif is_env and k == "value" and isinstance(v, str) and SECRET_NAME.search(str(node.get("name", ""))):
                out[k] = MARK
            elif (level < _CHECKED_LEVELS and node_kind not in ("Secret", "TokenRequest")
                  and isinstance(v, (dict, list)) and _clean(v)):
                out[k] = v  # (a Secret's or TokenRequest's subtrees inherit its kind: always walked)
            else:
                out[k] = _walk(v, node_kind if k not in ("items",) else None, level + 1)
        return out
    if isinstance(node, list):
        out_list = [_walk(v, kind, level + 1) for v in node]
        for n in range(len(node) - 1):  # ["--password", "hunter2"]: the flag's value is the next argument
            flag = node[n]
            if isinstance(flag, str) and isinstance(node[n + 1], str) and SECRET_FLAG.match(flag):
                out_list[n + 1] = MARK
        return out_list
    if isinstance(node, str):
        return text(node)
    return node
