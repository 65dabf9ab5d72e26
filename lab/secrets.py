"""Keep API keys out of everything the lab writes: the log, notebooks, reports, error messages.

Keys come from the environment only. Before any text is persisted or shown, ``redact`` replaces
the value of every environment variable that looks like a secret with ``[REDACTED:NAME]``.
"""

from __future__ import annotations

import os
import re
from typing import Any

# API_KEY, ANTHROPIC_API_KEY, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, db_password ... but not max_tokens
_SECRET_NAME = re.compile(
    r"(api[_-]?key|secret|passw(or)?d|credential|(^|_)token$|(^|_)key$|^auth|_auth$)", re.IGNORECASE
)
# Shapes of common provider keys, caught even when the key is not in this process's environment.
_SECRET_SHAPES = re.compile(r"\b(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16})\b")


# A password in a URL (``http://user:sk-...@host``) and a key-like query value (``?api_key=...``).
_URL_PASSWORD = re.compile(r"(://[^/\s:@?#]*):([^/\s@?#]+)@")
_URL_QUERY_KEY = re.compile(r"([?&;](?:[A-Za-z0-9_\-]*(?:key|token|secret|passw(?:or)?d|sig|signature|auth)"
                            r"[A-Za-z0-9_\-]*)=)([^&#\s]+)", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with every URL's password (``user:PASSWORD@``) and key-like query value masked."""
    if "@" in text:
        text = _URL_PASSWORD.sub(r"\1:[REDACTED]@", text)
    if "=" in text:
        text = _URL_QUERY_KEY.sub(r"\1[REDACTED]", text)
    return text


_cached: tuple[frozenset, dict[str, str]] | None = None


def secret_values() -> dict[str, str]:
    """Environment variables whose name marks them as secrets, with values long enough to matter."""
    global _cached
    # redact() runs for every logged row: re-scan the environment only when it changed (comparing
    # the raw bytes snapshot is a C-level set compare, ~50x cheaper than decoding and matching names).
    raw = getattr(os.environ, "_data", None)
    snapshot = frozenset(raw.items()) if isinstance(raw, dict) else frozenset(os.environ.items())
    if _cached is not None and _cached[0] == snapshot:
        return dict(_cached[1])
    found = {
        name: value
        for name, value in os.environ.items()
        if _SECRET_NAME.search(name) and len(value) >= 8
    }
    _cached = (snapshot, found)
    return dict(found)


def redact(text: str, secrets: dict[str, str] | None = None) -> str:
    """Return ``text`` with every secret value from the environment, and key-shaped strings, masked.
    ``secrets``: :func:`secret_values`, when the caller already has them (redacting many strings)."""
    if not text:
        return text
    for name, value in (secret_values() if secrets is None else secrets).items():
        if value in text:
            text = text.replace(value, f"[REDACTED:{name}]")
    if "sk-" in text or "AKIA" in text:  # every key shape has one of these: skip the regex scan otherwise
        text = _SECRET_SHAPES.sub("[REDACTED]", text)
    if "://" in text:
        text = redact_url(text)
    return text


def redact_value(value: Any, secrets: dict[str, str] | None = None) -> Any:
    """:func:`redact` applied to every string inside lists and dicts (messages, input variables)."""
    if secrets is None:
        secrets = secret_values()
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, (list, tuple)):
        return [redact_value(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    return value


def looks_like_secret(name: str, value: object) -> bool:
    """True for a parameter that must not be recorded: a secret-like name, or a key-shaped value or a
    secret from the environment anywhere inside it (a ``stop`` list, say)."""
    if _SECRET_NAME.search(name):
        return True
    if isinstance(value, str):
        if _SECRET_SHAPES.search(value) or ("://" in value and redact_url(value) != value):
            return True
        return any(v in value for v in secret_values().values())
    if isinstance(value, (list, tuple)):
        return any(looks_like_secret("", v) for v in value)
    if isinstance(value, dict):
        return any(looks_like_secret(str(k), v) for k, v in value.items())
    return False
