"""Loopback HTTP servers that fake the Anthropic and OpenAI APIs for tests and benchmarks.

Exports AnthropicServer, OpenAIServer, FaultPlan, RequestRecord, FAULT_NAMES, echo_responder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.loopback._http import FAULT_NAMES, FaultPlan, RequestRecord, echo_responder

if TYPE_CHECKING:
    from tests.loopback.anthropic_server import AnthropicServer
    from tests.loopback.openai_server import OpenAIServer

__all__ = ["AnthropicServer", "FAULT_NAMES", "FaultPlan", "OpenAIServer", "RequestRecord", "echo_responder"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m tests.loopback.openai_server` does not import itself twice (runpy warns).
    if name == "AnthropicServer":
        from tests.loopback.anthropic_server import AnthropicServer

        return AnthropicServer
    if name == "OpenAIServer":
        from tests.loopback.openai_server import OpenAIServer

        return OpenAIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
