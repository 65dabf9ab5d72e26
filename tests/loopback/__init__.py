"""Loopback HTTP servers that fake the Anthropic and OpenAI APIs for tests and benchmarks."""

from tests.loopback._http import FAULT_NAMES, FaultPlan, RequestRecord, echo_responder
from tests.loopback.anthropic_server import AnthropicServer
from tests.loopback.openai_server import OpenAIServer

__all__ = ["AnthropicServer", "FAULT_NAMES", "FaultPlan", "OpenAIServer", "RequestRecord", "echo_responder"]
