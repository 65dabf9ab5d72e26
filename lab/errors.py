"""Every exception promptlab raises on purpose. Each message says what is wrong, where, and what to do.

This is the one place they are defined (the base layer: it imports nothing from the lab), so any
module can raise them and a user can catch them all with ``except lab.LabError``. Older import
locations (``lab.grades.GraderError``, ``lab.report.NotebookError``, ...) name the same classes.
"""

from __future__ import annotations

__all__ = [
    "LabError", "PromptFileError", "InputSetError", "ModelSpecError", "ParameterError", "ProviderError",
    "WorkerDied", "BudgetExceeded", "StoreError", "BatchError", "GraderError", "ConversationError", "CallCancelled",
    "NotebookError",
]


class LabError(Exception):
    """Base class for every error promptlab raises on purpose."""


class PromptFileError(LabError):
    """A prompt file cannot be read, parsed, validated or rendered."""


class InputSetError(LabError):
    """An input set cannot be read or does not fit the prompt that will use it."""


class ModelSpecError(LabError):
    """A model string names no known provider, or a provider cannot be configured."""


class ParameterError(LabError, ValueError):
    """A parameter (repeats, concurrency, budget, a price, a display option, ...) is out of range.

    It is also a :class:`ValueError`, so code written against Python's own convention still catches it.
    """


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


class WorkerDied(ProviderError):
    """The local model's worker process ended during a call (crash, abort, kill)."""

    def __init__(self, message: str, returncode: int | None):
        super().__init__(message, kind="crash")
        self.returncode = returncode


class BudgetExceeded(LabError):
    """A run stopped because the next call could take it past its budget."""


class StoreError(LabError):
    """The run log cannot be opened or written."""


class BatchError(LabError):
    """A provider batch cannot be submitted, found, polled or canceled."""


class GraderError(LabError):
    """A grader is misconfigured (bad option, bad pattern or schema), or grading input is wrong."""


class ConversationError(LabError):
    """A conversation cannot take this step (e.g. continuing after a turn that ended in an error)."""


class CallCancelled(LabError):
    """The user cancelled a call before it finished; nothing was logged."""


class NotebookError(LabError):
    """A notebook cannot be found, parameterized, executed or exported."""
