"""A loopback server that speaks the Anthropic Messages API.

POST /v1/messages (JSON or, with "stream": true, server-sent events) and GET /v1/models.
Point the official SDK at it with `anthropic.Anthropic(base_url=srv.base_url, api_key="test")`.
Run standalone: `python -m tests.loopback.anthropic_server --port 0 --latency 0.1`.
"""

from __future__ import annotations

import functools
import re
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
    from tests.loopback.anthropic_batches import AnthropicBatches

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


def _prompt_text(request: Mapping[str, Any]) -> str:
    parts = [text_of(request.get("system"))]
    parts.extend(text_of(m.get("content")) for m in request.get("messages", ()) if isinstance(m, dict))
    return " ".join(parts)


def _sse(event: str, data: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class AnthropicServer(LoopbackServer):
    """Fake Anthropic API. base_url is "http://127.0.0.1:PORT" (the SDK adds /v1/...)."""

    completion_path = "/v1/messages"
    models_path = "/v1/models"
    url_suffix = ""
    request_id_header = "request-id"
    request_id_prefix = "req_"
    default_models = ("claude-loopback-1", "claude-loopback-2")

    def _error(self, status: int, message: str) -> Reply:
        error_type = _ERROR_TYPES.get(status, "api_error")
        return Reply(status, dumps({"type": "error", "error": {"type": error_type, "message": message}}))

    def _validate(self, headers: Mapping[str, str], body: object) -> Reply | None:
        if not (headers.get("x-api-key") or headers.get("authorization")):
            return self._error(401, "x-api-key header is required")
        if not headers.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            return self._error(400, "request body must be a JSON object")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self._error(400, "model: Field required")
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return self._error(400, "max_tokens: Field required")
        if max_tokens < 1:
            return self._error(400, "max_tokens: must be greater than or equal to 1")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "messages: Field required (at least one message)")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant") or "content" not in msg:
                return self._error(400, f"messages.{i}: each message needs role user|assistant and content")
        return None

    def _answer(self, request: dict[str, Any], text: str, serial: int) -> Reply:
        text, cut = truncate_words(text, request["max_tokens"])
        message = {
            "id": f"msg_{serial:024x}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if cut else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": count_tokens(_prompt_text(request)), "output_tokens": count_tokens(text)},
        }
        if request.get("stream"):
            return Reply(200, self._stream(message), "text/event-stream")
        return Reply(200, dumps(message))

    def _stream(self, message: dict[str, Any]) -> bytes:
        text = message["content"][0]["text"]
        usage = message["usage"]
        start = dict(
            message,
            content=[],
            stop_reason=None,
            usage={"input_tokens": usage["input_tokens"], "output_tokens": 1},
        )
        events = [
            _sse("message_start", {"type": "message_start", "message": start}),
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            _sse("ping", {"type": "ping"}),
        ]
        for piece in re.findall(r"\s*\S+\s*", text) or [text]:
            events.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            )
        events += [
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            ),
            _sse("message_stop", {"type": "message_stop"}),
        ]
        return b"".join(events)

    @functools.cached_property
    def batches(self) -> AnthropicBatches:
        """The batch endpoints; set `.plan` (a tests.loopback._batches.BatchPlan) for timing and failures."""
        from tests.loopback.anthropic_batches import AnthropicBatches

        return AnthropicBatches(self)

    def _route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply | None:
        return self.batches.route(method, path, headers, raw)

    def _models(self) -> Reply:
        data = [
            {
                "type": "model",
                "id": model_id,
                "display_name": model_id.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
                "lifecycle": "active",
            }
            for model_id in self.models
        ]
        return Reply(
            200,
            dumps(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            ),
        )


if __name__ == "__main__":
    serve_main(AnthropicServer)
