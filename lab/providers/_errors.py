"""Map an SDK exception (anthropic or openai) to a ProviderError with a short reason kind."""

from __future__ import annotations

import json

from ..errors import ProviderError
from ..secrets import redact

_BY_STATUS = {400: "bad_request", 401: "auth", 403: "auth", 404: "not_found", 408: "timeout",
              413: "bad_request", 422: "bad_request", 429: "rate_limit", 529: "overloaded"}


def to_provider_error(exc: BaseException, model: str) -> ProviderError:
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if "Timeout" in name:
        kind = "timeout"
    elif "Connection" in name:
        kind = "connection"
    elif status is not None:
        kind = _BY_STATUS.get(status, "server" if status >= 500 else "other")
    elif isinstance(exc, (json.JSONDecodeError, ValueError, KeyError, TypeError, RecursionError)) or "Decode" in name:
        kind = "malformed"
    else:
        kind = "other"
    detail = str(exc) or name
    status_txt = f" {status}" if status is not None else ""
    return ProviderError(redact(f"{model}: {name}{status_txt}: {detail}")[:2000], kind=kind, status=status)


def count(value: object) -> int | None:
    """A token count from a server's ``usage``: a non-negative whole number, else None (unknown)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return None
