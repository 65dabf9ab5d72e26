"""Exceptions a user sees. Each message says what is wrong, where, and what to do."""

from __future__ import annotations


class LabError(Exception):
    """Base class for every error promptlab raises on purpose."""


class PromptFileError(LabError):
    """A prompt file cannot be read, parsed, validated or rendered."""


class InputSetError(LabError):
    """An input set cannot be read or does not fit the prompt that will use it."""


class ModelSpecError(LabError):
    """A model string names no known provider, or a provider cannot be configured."""


class ParameterError(LabError):
    """An experiment parameter (repeats, concurrency, budget, ...) is out of range."""


class ProviderError(LabError):
    """A model call failed after the provider's own retries.

    ``kind`` is a short machine-readable reason (``rate_limit``, ``timeout``, ``server``,
    ``connection``, ``bad_request``, ``auth``, ``malformed``, ``other``) that ends up in the
    run log's ``error`` column together with the message.
    """

    def __init__(self, message: str, kind: str = "other", status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


class BudgetExceeded(LabError):
    """A run stopped because the next call could take it past its budget."""


class StoreError(LabError):
    """The run log cannot be opened or written."""


class BatchError(LabError):
    """A provider batch cannot be submitted, found, polled or canceled."""
