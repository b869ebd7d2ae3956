"""Redaction of secret material before it reaches tables, widgets, reports or logs.

The raw evidence in a case stays untouched (and hashed); the normalised tables
hold the redacted form, where every removed value is replaced by
:data:`MARK`.  Redaction is on by default; :func:`set_enabled` is the
explicit, logged opt-out for investigators who must see secrets.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger(__name__)

MARK = "[REDACTED]"
_enabled = True

SECRET_HEADER = re.compile(r"^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-auth-token)$", re.I)
SECRET_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth)", re.I
)
_TEXT_PATTERNS = [
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), lambda m: f"{m.group(1)} {MARK}"),
    # --token=xxx, --password xxx, token=xxx in URLs and command lines
    (
        re.compile(
            r"(?i)((?:--?|[?&;\s]|^)(?:token|access[_-]?token|id[_-]?token|password|passwd|secret|client[_-]?secret|api[_-]?key)(?:=|\s+))([^\s&\"']+)"
        ),
        lambda m: f"{m.group(1)}{MARK}",
    ),
    # JWTs anywhere (service-account tokens)
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), lambda m: MARK),
    # user:password@ in URLs
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@/\s]+)(@)"), lambda m: f"{m.group(1)}{MARK}{m.group(3)}"),
]


#: Every pattern above needs one of these words: a cheap test that skips most strings.
_MAYBE_SECRET = re.compile(r"(?i)bearer|basic|token|passw|secret|api[-_]?key|eyJ|://[^/\s]*@")


def might_contain_secret(value: str) -> bool:
    """Cheap pre-check: False means :func:`text` would leave ``value`` unchanged."""
    return _MAYBE_SECRET.search(value) is not None


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
    if not value or not _enabled or not _MAYBE_SECRET.search(value):
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
    material, env values with secret-like names, and secret strings anywhere."""
    if not _enabled or obj is None:
        return obj
    # RecursionError propagates: the reader engine quarantines such a record ("nested too deeply").
    return _walk(obj, kind=obj.get("kind") if isinstance(obj, dict) else None)


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


def _walk(node: Any, kind: str | None) -> Any:
    if isinstance(node, dict):
        node_kind = node.get("kind") if isinstance(node.get("kind"), str) else kind
        out: dict[str, Any] = {}
        is_env = "name" in node and "value" in node and len(node) <= 3
        for k, v in node.items():
            if node_kind in ("Secret", "TokenRequest") and k in ("data", "stringData") and isinstance(v, dict):
                out[k] = {key: MARK for key in v}
            elif node_kind == "TokenRequest" and k == "status" and isinstance(v, dict) and "token" in v:
                out[k] = {**v, "token": MARK}
            elif k in ("token", "client-key-data", "client-certificate-data", "password", "bearerToken") and isinstance(v, str):
                out[k] = MARK
            elif k == LAST_APPLIED and isinstance(v, str):
                out[k] = _last_applied(v, node_kind)
            elif is_env and k == "value" and isinstance(v, str) and SECRET_NAME.search(str(node.get("name", ""))):
                out[k] = MARK
            else:
                out[k] = _walk(v, node_kind if k not in ("items",) else None)
        return out
    if isinstance(node, list):
        return [_walk(v, kind) for v in node]
    if isinstance(node, str):
        return text(node)
    return node
