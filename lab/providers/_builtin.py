"""Registers the providers that ship with promptlab (imported lazily: SDKs load only when used)."""

from __future__ import annotations

from typing import Any

from .base import Provider, register_provider


def _local(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .local import LocalProvider

    return LocalProvider(model, rest, **options)


def _anthropic(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .anthropic import AnthropicProvider

    return AnthropicProvider(model, rest, **options)


def _openai(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .openai import OpenAIProvider

    return OpenAIProvider(model, rest, **options)


def _openai_compatible(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .openai import OpenAIProvider

    return OpenAIProvider.compatible(model, rest, **options)


register_provider("local", _local)
register_provider("anthropic", _anthropic)
register_provider("openai", _openai)
register_provider("openai-compatible", _openai_compatible)
