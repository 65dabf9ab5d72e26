"""The registry that picks a provider by model string (``local:smollm2``, ``anthropic:...``, ...).

The built-in providers are registered here and imported on first use, so an SDK loads only when
a model string names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ModelSpecError
from .base import Provider

ProviderFactory = Callable[[str, str, dict[str, Any]], Provider]


_REGISTRY: dict[str, ProviderFactory] = {}


def register_provider(prefix: str, factory: ProviderFactory) -> None:
    """Make ``prefix:<rest>`` model strings resolve to ``factory(model, rest, options)``."""
    _REGISTRY[prefix] = factory


def split_model(model: str) -> tuple[str, str]:
    if not isinstance(model, str) or ":" not in model:
        raise ModelSpecError(
            f"model {model!r} is not a model string; use one of "
            f"{', '.join(sorted(p + ':...' for p in _REGISTRY))} (e.g. 'local:smollm2')"
        )
    prefix, rest = model.split(":", 1)
    return prefix, rest


def get_provider(model: str, **options: Any) -> Provider:
    """A new provider for ``model`` (``local:smollm2``, ``anthropic:...``, ``openai:...``,
    ``openai-compatible:<base_url>#<model>``). Raises :class:`ModelSpecError` before any call."""
    prefix, rest = split_model(model)
    factory = _REGISTRY.get(prefix)
    if factory is None:
        raise ModelSpecError(
            f"unknown provider {prefix!r} in model {model!r}; known: {sorted(_REGISTRY)}"
        )
    if not rest:
        raise ModelSpecError(f"model {model!r} names no model after '{prefix}:'")
    return factory(model, rest, options)


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
