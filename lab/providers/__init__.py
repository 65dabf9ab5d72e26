"""Model providers behind one small async interface, chosen by a model string."""

from .base import Completion, Provider, finish_reason
from .registry import ProviderEntry, batch_api, get_provider, has_batch_api, register_provider, split_model

__all__ = ["Completion", "Provider", "ProviderEntry", "finish_reason", "get_provider", "batch_api", "has_batch_api",
           "register_provider", "split_model"]
