"""A loopback server that speaks OpenAI chat completions.

POST /v1/chat/completions (JSON or, with "stream": true, server-sent events) and GET /v1/models.
Point the official SDK at it with `openai.OpenAI(base_url=srv.base_url, api_key="test")`.
Run standalone: `python -m tests.loopback.openai_server --port 8123 --latency 0.1`.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.loopback._http import (
    LoopbackServer,
    Reply,
    count_tokens,
    dumps,
    serve_main,
    text_of,
    truncate_words,
)

if TYPE_CHECKING:
    from tests.loopback.openai_batches import OpenAIBatches

# status -> (error.type, error.code), as the real API answers
_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    405: ("invalid_request_error", "method_not_allowed"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    529: ("server_error", "overloaded"),
}


def _prompt_text(request: Mapping[str, Any]) -> str:
    return " ".join(text_of(m.get("content")) for m in request.get("messages", ()) if isinstance(m, dict))


def _sse(data: object) -> bytes:
    return b"data: " + dumps(data) + b"\n\n"


class OpenAIServer(LoopbackServer):
    """Fake OpenAI API. base_url is "http://127.0.0.1:PORT/v1", as the SDK expects."""

    completion_path = "/v1/chat/completions"
    models_path = "/v1/models"
    url_suffix = "/v1"
    request_id_header = "x-request-id"
    request_id_prefix = "req_"
    default_models = ("gpt-loopback", "gpt-loopback-mini")

    def _error(self, status: int, message: str) -> Reply:
        error_type, code = _ERRORS.get(status, ("server_error", None))
        return Reply(status, dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}}))

    def _validate(self, headers: Mapping[str, str], body: object) -> Reply | None:
        if not headers.get("authorization"):
            return self._error(401, "You didn't provide an API key in an Authorization header.")
        if not isinstance(body, dict):
            return self._error(400, "request body must be a JSON object")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self._error(400, "you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "messages: a non-empty array is required")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or "role" not in msg:
                return self._error(400, f"messages[{i}]: each message needs a role")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            return self._error(400, "max_tokens must be a positive integer")
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
            return self._error(400, "n must be an integer between 1 and 128")
        return None

    def _answer(self, request: dict[str, Any], text: str, serial: int) -> Reply:
        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        cut = False
        if limit is not None:
            text, cut = truncate_words(text, limit)
        n = request.get("n", 1) or 1
        finish = "length" if cut else "stop"
        prompt_tokens = count_tokens(_prompt_text(request))
        completion_tokens = count_tokens(text) * n
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        head = {"id": f"chatcmpl-{serial:024x}", "created": int(time.time()), "model": request["model"]}
        if request.get("stream"):
            options = request.get("stream_options") or {}
            return Reply(200, self._stream(head, text, n, finish, usage if options.get("include_usage") else None),
                         "text/event-stream")
        completion = {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ],
            "usage": usage,
            "system_fingerprint": None,
        }
        return Reply(200, dumps(completion))

    def _stream(self, head: dict[str, Any], text: str, n: int, finish: str, usage: dict[str, int] | None) -> bytes:
        base = {**head, "object": "chat.completion.chunk"}

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return _sse({**base, "choices": choices, **extra})

        out = [chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                      for i in range(n)])]
        for piece in re.findall(r"\s*\S+\s*", text) or [text]:
            out.append(chunk([{"index": i, "delta": {"content": piece}, "finish_reason": None} for i in range(n)]))
        out.append(chunk([{"index": i, "delta": {}, "finish_reason": finish} for i in range(n)]))
        if usage is not None:
            out.append(chunk([], usage=usage))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    @functools.cached_property
    def batches(self) -> OpenAIBatches:
        """The batch endpoints; set `.plan` (a tests.loopback._batches.BatchPlan) for timing and failures."""
        from tests.loopback.openai_batches import OpenAIBatches

        return OpenAIBatches(self)

    def _route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply | None:
        return self.batches.route(method, path, headers, raw)

    def _models(self) -> Reply:
        data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "loopback"} for m in self.models]
        return Reply(200, dumps({"object": "list", "data": data}))


if __name__ == "__main__":
    serve_main(OpenAIServer)
