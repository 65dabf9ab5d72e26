"""The one registry of providers: a model string's prefix (``local:``, ``anthropic:``, ...) names
a provider, which declares how to make its live calls and, if it has one, its batch API.

The built-in providers are registered here and imported on first use, so an SDK loads only when
a model string names it. Third parties add providers without editing the lab, through the
``promptlab.providers`` entry-point group: the entry point's name is the prefix, its object a
:class:`ProviderEntry` or a plain live factory ``(model, rest, options) -> Provider``:

    # pyproject.toml of a package `promptlab-echo`
    [project.entry-points."promptlab.providers"]
    echo = "promptlab_echo:echo"

Entry points are read the first time a model string names a prefix the lab does not know.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ModelSpecError
from .base import Provider

if TYPE_CHECKING:
    from .batch_adapters import BatchAPI

ProviderFactory = Callable[[str, str, dict[str, Any]], Provider]
BatchFactory = Callable[[str, str, dict[str, Any]], "BatchAPI"]

ENTRY_POINT_GROUP = "promptlab.providers"


@dataclass(frozen=True)
class ProviderEntry:
    """What a provider declares: ``live(model, rest, options)`` makes the provider for live calls;
    ``batch(model, rest, options)``, where the provider has a batch API, makes its
    :class:`lab.providers.batch_adapters.BatchAPI` (half-price batches, results within 24 hours)."""

    live: ProviderFactory
    batch: BatchFactory | None = None


_REGISTRY: dict[str, ProviderEntry] = {}
_plugins_read = False


def register_provider(prefix: str, factory: ProviderFactory, *, batch: BatchFactory | None = None) -> None:
    """Make ``prefix:<rest>`` model strings resolve to ``factory(model, rest, options)`` (and, with
    ``batch``, give them a batch API)."""
    _REGISTRY[prefix] = ProviderEntry(factory, batch)


def _read_plugins() -> None:
    """Register the providers other packages declare in the ``promptlab.providers`` group (once)."""
    global _plugins_read
    if _plugins_read:
        return
    _plugins_read = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue  # a built-in prefix is never taken over
        try:
            declared = ep.load()
        except Exception as exc:  # a broken plugin must not break the other providers
            raise ModelSpecError(f"provider plug-in {ep.name!r} ({ep.value}) failed to load: {exc!r}") from None
        if isinstance(declared, ProviderEntry):
            _REGISTRY[ep.name] = declared
        elif callable(declared):
            _REGISTRY[ep.name] = ProviderEntry(declared)
        else:
            raise ModelSpecError(f"provider plug-in {ep.name!r} ({ep.value}) is neither a ProviderEntry nor a factory")


def split_model(model: str) -> tuple[str, str]:
    if not isinstance(model, str) or ":" not in model:
        raise ModelSpecError(
            f"model {model!r} is not a model string; use one of "
            f"{', '.join(sorted(p + ':...' for p in _REGISTRY))} (e.g. 'local:smollm2')"
        )
    prefix, rest = model.split(":", 1)
    return prefix, rest


def _entry(model: str) -> tuple[ProviderEntry, str]:
    prefix, rest = split_model(model)
    if prefix not in _REGISTRY:
        _read_plugins()
    entry = _REGISTRY.get(prefix)
    if entry is None:
        raise ModelSpecError(
            f"unknown provider {prefix!r} in model {model!r}; known: {sorted(_REGISTRY)} "
            f"(other packages add providers through the {ENTRY_POINT_GROUP!r} entry points)"
        )
    if not rest:
        raise ModelSpecError(f"model {model!r} names no model after '{prefix}:'")
    return entry, rest


def get_provider(model: str, **options: Any) -> Provider:
    """A new provider for ``model`` (``local:smollm2``, ``anthropic:...``, ``openai:...``,
    ``openai-compatible:<base_url>#<model>``, or a plug-in's prefix). Raises
    :class:`ModelSpecError` before any call."""
    entry, rest = _entry(model)
    return entry.live(model, rest, options)


def has_batch_api(model: str) -> bool:
    """Whether ``model``'s provider declares a batch API (False for malformed or unknown models)."""
    try:
        return _entry(model)[0].batch is not None
    except ModelSpecError:
        return False


def batch_api(model: str, **options: Any) -> BatchAPI:
    """The batch API for a model string (``anthropic:...``, ``openai:...``, or a plug-in's that
    declares one). Options: ``base_url``, ``max_retries``, ``timeout``. Raises
    :class:`ModelSpecError` for models without a batch API."""
    entry, rest = _entry(model)
    if entry.batch is None:
        batchable = sorted(p + ":..." for p, e in _REGISTRY.items() if e.batch is not None)
        raise ModelSpecError(
            f"model {model!r} has no batch API; batch mode works for {', '.join(batchable)} models "
            "(for a self-hosted server, run the experiment live with a higher concurrency)")
    return entry.batch(model, rest, options)


def _local(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .local import LocalProvider

    return LocalProvider(model, rest, **options)


def _anthropic(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .anthropic import AnthropicProvider

    return AnthropicProvider(model, rest, **options)


def _anthropic_batches(model: str, rest: str, options: dict[str, Any]) -> BatchAPI:
    from .batch_adapters import AnthropicBatches

    return AnthropicBatches(model, rest, **options)


def _openai(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .openai import OpenAIProvider

    return OpenAIProvider(model, rest, **options)


def _openai_batches(model: str, rest: str, options: dict[str, Any]) -> BatchAPI:
    from .batch_adapters import OpenAIBatches

    return OpenAIBatches(model, rest, **options)


def _openai_compatible(model: str, rest: str, options: dict[str, Any]) -> Provider:
    from .openai import OpenAIProvider

    return OpenAIProvider.compatible(model, rest, **options)


register_provider("local", _local)
register_provider("anthropic", _anthropic, batch=_anthropic_batches)
register_provider("openai", _openai, batch=_openai_batches)
register_provider("openai-compatible", _openai_compatible)
