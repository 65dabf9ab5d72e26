"""``anthropic:<model>`` through the official anthropic SDK.

The key comes from ``ANTHROPIC_API_KEY`` only; the SDK also reads ``ANTHROPIC_BASE_URL``.
System messages are joined into the Messages API's ``system`` field. ``temperature``, ``top_p``
and ``top_k`` are sent in the request body (the 1.x+ SDK no longer has them as arguments). Calls go
through the SDK's client (``client.post``); retries (429, 529, 5xx, honouring ``retry-after``) and
timeouts are the SDK's own.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelSpecError, ProviderError
from ._errors import count
from ._utf8 import post_json, sdk_client_options
from .base import Completion, Provider, mapping

_SAMPLING = ("temperature", "top_p", "top_k")


def request_body(model_name: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
    """The Messages API request for one call, as sent live and inside a Message Batch. System
    messages are joined into ``system``; the API has no seed (it is logged, not sent)."""
    body: dict[str, Any] = {
        "model": model_name,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"],
        "max_tokens": params.get("max_tokens") or 1024,
    }
    body.update({k: params[k] for k in _SAMPLING if params.get(k) is not None})
    if params.get("stop"):
        stop = params["stop"]
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    if system:
        body["system"] = system
    return body


class AnthropicProvider(Provider):
    default_concurrency = 8
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "top_k", "stop", "seed"})
    honours_seed = False

    def __init__(self, model: str, rest: str, *, base_url: str | None = None, max_retries: int = 2,
                 timeout: float = 60.0, **_: Any):
        super().__init__(model)
        self.model_name = rest
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ModelSpecError(
                f"model {model!r} needs ANTHROPIC_API_KEY in the environment (keys are never read from files or parameters)"
            )
        self._key = key
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self._client = None

    def _get_client(self):
        if self._client is None:
            import anthropic

            self._client = anthropic.AsyncAnthropic(**sdk_client_options(self, anthropic.DefaultAsyncHttpxClient))
        return self._client

    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        """One message, its body sent as built and its JSON answer read here (:func:`post_json`)."""
        body = request_body(self.model_name, messages, params)
        answer = mapping(await post_json(self._get_client(), "/v1/messages", body, self.model))
        content = answer.get("content")
        if not isinstance(content, list):
            raise ProviderError(f"{self.model}: response had no content list", kind="malformed")
        texts = [mapping(block).get("text", "") for block in content]
        if not all(isinstance(t, str) for t in texts):
            raise ProviderError(f"{self.model}: a content block's text is not text", kind="malformed")
        usage = mapping(answer.get("usage"))
        return Completion(
            text="".join(texts),
            input_tokens=count(usage.get("input_tokens")),
            output_tokens=count(usage.get("output_tokens")),
            finish_reason=str(answer.get("stop_reason") or "") or None,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
