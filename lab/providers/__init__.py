"""Model providers behind one small async interface, chosen by a model string."""

from .base import Completion, Provider, finish_reason
from .registry import get_provider, register_provider, split_model

__all__ = ["Completion", "Provider", "finish_reason", "get_provider", "register_provider", "split_model"]
