"""Server answers whose bytes are not valid UTF-8: kept rather than lost.

The SDKs parse a JSON body with a strict UTF-8 decoder, so one bad byte in an answer would turn the
whole call into an error and drop the text. The transport here rewrites such a body before the SDK
reads it: each byte that is not UTF-8 becomes the four characters ``\\xNN`` (a JSON-escaped
backslash), so the answer arrives as text that says which bytes were there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._errors import to_provider_error

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def repair_json_bytes(body: bytes) -> bytes:
    """``body`` unchanged when it is UTF-8; else with each bad byte written as ``\\\\xNN`` (JSON text)."""
    try:
        body.decode("utf-8")
        return body
    except UnicodeDecodeError:
        text = body.decode("utf-8", "surrogateescape")
    return _ESCAPED_BYTE.sub(lambda m: f"\\\\x{ord(m.group()) - 0xDC00:02x}", text).encode("utf-8")


def lenient_http_client(default_client: type) -> Any:
    """An SDK's default async client (``openai.DefaultAsyncHttpxClient``, ...) whose JSON answers go
    through :func:`repair_json_bytes`."""
    import httpx2

    class Repairing(httpx2.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=1000,
                                                                         max_keepalive_connections=100))

        async def handle_async_request(self, request: Any) -> Any:
            resp = await self._inner.handle_async_request(request)
            if "json" not in resp.headers.get("content-type", ""):
                return resp
            try:
                body = await resp.aread()
            finally:
                await resp.aclose()
            fixed = repair_json_bytes(body)
            if fixed is body:  # valid UTF-8 (nearly always): the response as read, its body kept
                return resp
            headers = [(k, v) for k, v in resp.headers.multi_items()
                       if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
            return httpx2.Response(resp.status_code, headers=headers, content=fixed, extensions=resp.extensions)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return default_client(transport=Repairing())


async def post_json(client: Any, path: str, body: dict[str, Any], model: str) -> Any:
    """``body`` sent through an SDK's client as it is (``client.post``: the SDK's auth, headers,
    retries, timeout and error classes apply) and the JSON answer, parsed here rather than by the
    SDK's typed methods (their request transform and pydantic answer models cost about 0.2-0.3 ms of
    CPU a call). Any failure is a :class:`lab.errors.ProviderError` for ``model``."""
    import httpx2

    try:
        resp = await client.post(path, cast_to=httpx2.Response, body=body)
        return json.loads(resp.content)
    except Exception as exc:  # the SDK has already retried what it retries
        raise to_provider_error(exc, model) from None


def sdk_client_options(provider: Any, default_client: type) -> dict[str, Any]:
    """What an SDK's async client is made with for ``provider``: its key, base URL, retries and
    timeout, and an HTTP client whose JSON answers are repaired (see :func:`lenient_http_client`)."""
    return {"api_key": provider._key, "base_url": provider.base_url, "max_retries": provider.max_retries,
            "timeout": provider.timeout, "http_client": lenient_http_client(default_client)}
