"""``openai:<model>`` and ``openai-compatible:<base_url>#<model>`` through the official openai SDK.

Keys come from the environment only: ``OPENAI_API_KEY`` for OpenAI (the SDK also reads
``OPENAI_BASE_URL``), ``OPENAI_COMPATIBLE_API_KEY`` for other servers (most local servers need none).
Retries and timeouts are the SDK's own (``max_retries``, ``timeout``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from ..errors import ModelSpecError, ProviderError
from ._errors import count
from ._utf8 import post_json, sdk_client_options
from .base import LOGPROB_PARAMS, Completion, Provider, mapping, token_logprobs


def request_body(model_name: str, messages: list[dict[str, str]], params: dict[str, Any], *,
                 compatible: bool = False) -> dict[str, Any]:
    """The chat-completions request for one call, as sent live and inside an OpenAI Batch.
    OpenAI itself wants ``max_completion_tokens``; compatible servers keep ``max_tokens``."""
    body: dict[str, Any] = {"model": model_name, "messages": messages}
    for k, v in params.items():
        if v is not None:
            body["max_completion_tokens" if k == "max_tokens" and not compatible else k] = v
    return body


def _shape(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


class OpenAIProvider(Provider):
    default_concurrency = 8
    honours_seed = False  # OpenAI documents seed as best-effort
    returns_logprobs = True  # chat completions take logprobs / top_logprobs (so does llama_cpp.server)
    supported_params = Provider.supported_params | LOGPROB_PARAMS

    def __init__(self, model: str, rest: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_retries: int = 2, timeout: float = 60.0, compatible: bool = False, **_: Any):
        super().__init__(model)
        self.model_name = rest
        self.base_url = base_url
        self.is_compatible = compatible
        self.max_retries = max_retries
        self.timeout = timeout
        key = os.environ.get(api_key_env)
        if not key:
            if compatible:
                key = "not-needed"  # most self-hosted servers ignore the key; the SDK insists on one
            else:
                raise ModelSpecError(
                    f"model {model!r} needs {api_key_env} in the environment (keys are never read from files or parameters)"
                )
        self._key = key
        self._client = None
        if compatible:
            self.supported_params = frozenset(self.supported_params | {"top_k", "repeat_penalty"})

    @classmethod
    def compatible(cls, model: str, rest: str, **options: Any) -> OpenAIProvider:
        if "#" not in rest:
            raise ModelSpecError(
                f"model {model!r}: write openai-compatible:<base_url>#<model>, e.g. "
                "'openai-compatible:http://127.0.0.1:8080/v1#smollm2'"
            )
        base_url, name = rest.rsplit("#", 1)
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ModelSpecError(f"model {model!r}: base URL {base_url!r} is not an http(s) URL with a host")
        if not name:
            raise ModelSpecError(f"model {model!r}: no model name after '#'")
        options.setdefault("api_key_env", "OPENAI_COMPATIBLE_API_KEY")
        options.setdefault("default_concurrency", None)
        conc = options.pop("default_concurrency")
        p = cls(model, name, base_url=base_url, compatible=True, **options)
        if conc:
            p.default_concurrency = conc
        else:
            p.default_concurrency = 4
        return p

    def _get_client(self):
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(**sdk_client_options(self, openai.DefaultAsyncHttpxClient))
        return self._client

    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        """One chat completion, its body sent as built and its JSON answer read here (:func:`post_json`:
        ``chat.completions.create`` would cost about a fifth of the SDK's CPU a call more)."""
        body = request_body(self.model_name, messages, params, compatible=self.is_compatible)
        return self._completion(await post_json(self._get_client(), "/chat/completions", body, self.model))

    def _completion(self, answer: Any) -> Completion:
        """The answer in ``answer`` (the JSON body); a body of another shape (or with no text) is a
        ``malformed`` error."""
        choices = mapping(answer).get("choices")
        if not isinstance(choices, list) or not choices:
            raise ProviderError(f"{self.model}: response had no choices (got {_shape(answer)})", kind="malformed")
        choice = mapping(choices[0])
        message = mapping(choice.get("message"))
        content = message.get("content")
        if not isinstance(content, str):
            refusal = message.get("refusal")
            why = f"refused: {str(refusal)[:500]}" if refusal else f"content is {_shape(content)}"
            raise ProviderError(f"{self.model}: the answer has no text ({why})", kind="malformed")
        usage = mapping(answer.get("usage"))
        try:
            tokens = token_logprobs(mapping(choice.get("logprobs")).get("content"))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"{self.model}: unreadable logprobs ({type(exc).__name__}: {str(exc)[:200]})",
                                kind="malformed") from None
        return Completion(
            text=content,
            input_tokens=count(usage.get("prompt_tokens")),
            output_tokens=count(usage.get("completion_tokens")),
            finish_reason=str(choice.get("finish_reason") or "") or None,
            logprobs=tokens,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
