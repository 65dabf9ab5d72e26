"""Provider batch APIs behind one small interface: Anthropic Message Batches and OpenAI Batch.

A provider declares its batch API in :mod:`lab.providers.registry` (``batch_api(model)`` makes one).

A batch takes many fully rendered calls at once, runs them within the provider's window
(24 hours) at half the list price, and hands back one result per call, matched by a custom id.
These adapters only speak to the provider (official SDKs, keys from the environment); recording
batches and turning results into run rows is :mod:`lab.batch`'s job.

Request bodies are built exactly as the live providers build them (same system joining, same
parameter names), so a batch row and a live row of the same call saw the same request.
"""

from __future__ import annotations

import abc
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ModelSpecError, ProviderError
from ._errors import _BY_STATUS, to_provider_error
from .base import Completion


@dataclass(frozen=True)
class BatchRequest:
    """One call to put in a batch."""

    custom_id: str
    messages: list[dict[str, str]]
    params: dict[str, Any]


@dataclass(frozen=True)
class BatchState:
    """A batch as the provider reports it. ``state`` is the provider's own word (``in_progress``,
    ``ended``, ``validating``, ``completed``, ...); ``ended`` says its results are final."""

    batch_id: str
    state: str
    ended: bool
    counts: dict[str, int] = field(default_factory=dict)
    #: why the whole batch failed (e.g. OpenAI validation), when it did
    reason: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """One call's result: a completion, or an error in the run log's ``kind: message`` form."""

    custom_id: str
    completion: Completion | None = None
    error: str | None = None


class BatchAPI(abc.ABC):
    """One provider's batch endpoints for one model."""

    provider: str = ""
    #: the environment variable that holds the provider's key
    key_env: str = ""
    #: the provider's limits for one batch; larger runs are split into several batches
    max_requests: int = 10_000
    max_bytes: int = 100_000_000

    def __init__(self, model: str, model_name: str, *, base_url: str | None = None, max_retries: int = 2,
                 timeout: float = 120.0, **_: Any):
        self.model = model  # the lab's model string, e.g. "anthropic:claude-haiku-4-5"
        self.model_name = model_name  # the provider's name for it
        key = _key(self.key_env, model) if self.key_env else None
        self._client: Any = self._connect(api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout)

    def _connect(self, **client_options: Any) -> Any:
        """The provider's SDK client (the SDK is imported here, on first use)."""
        raise NotImplementedError

    def request_body(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        """The request one call sends, built by the live provider's own ``request_body`` (its module
        in this package is named like ``provider``)."""
        live = importlib.import_module(f"{__package__}.{self.provider}")
        return live.request_body(self.model_name, messages, params)

    @abc.abstractmethod
    def create(self, requests: list[BatchRequest], *, metadata: dict[str, str] | None = None) -> BatchState:
        """Submit a batch. Raises :class:`ProviderError` when the provider refuses it."""

    @abc.abstractmethod
    def retrieve(self, batch_id: str) -> BatchState:
        """The batch's current state."""

    @abc.abstractmethod
    def results(self, batch_id: str) -> Iterator[BatchResult]:
        """Every result of an ended batch (in any order)."""

    @abc.abstractmethod
    def cancel(self, batch_id: str) -> BatchState:
        """Ask the provider to stop the batch; requests not yet run end as canceled."""

    def close(self) -> None:
        """Release the SDK client."""


def _key(env: str, model: str) -> str:
    key = os.environ.get(env)
    if not key:
        raise ModelSpecError(
            f"model {model!r} needs {env} in the environment (keys are never read from files or parameters)")
    return key


def _counts(batch: Any) -> dict[str, int]:
    """The SDK batch's request counts by state."""
    return batch.request_counts.model_dump() if batch.request_counts is not None else {}


def _wrap(exc: Exception, model: str, what: str) -> ProviderError:
    err = to_provider_error(exc, model)
    return ProviderError(f"batch {what} failed: {err}", kind=err.kind, status=err.status)


# ---- Anthropic Message Batches ------------------------------------------------------------

_ANTHROPIC_KINDS = {"invalid_request_error": "bad_request", "authentication_error": "auth",
                    "permission_error": "auth", "not_found_error": "not_found", "request_too_large": "bad_request",
                    "rate_limit_error": "rate_limit", "api_error": "server", "overloaded_error": "overloaded"}


class AnthropicBatches(BatchAPI):
    provider = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    max_requests = 100_000
    max_bytes = 250_000_000  # the API's limit is 256 MB

    def _connect(self, **client_options: Any) -> Any:
        import anthropic

        return anthropic.Anthropic(**client_options)

    @staticmethod
    def _state(b: Any) -> BatchState:
        counts = _counts(b)
        return BatchState(b.id, b.processing_status, b.processing_status == "ended", counts)

    def create(self, requests: list[BatchRequest], *, metadata: dict[str, str] | None = None) -> BatchState:
        body: list[Any] = [{"custom_id": r.custom_id, "params": self.request_body(r.messages, r.params)} for r in requests]
        try:
            return self._state(self._client.messages.batches.create(requests=body))
        except Exception as exc:
            raise _wrap(exc, self.model, "create") from None

    def retrieve(self, batch_id: str) -> BatchState:
        try:
            return self._state(self._client.messages.batches.retrieve(batch_id))
        except Exception as exc:
            raise _wrap(exc, self.model, f"retrieve of {batch_id}") from None

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        try:
            lines = self._client.messages.batches.results(batch_id)
            for item in lines:
                yield self._result(item)
        except ProviderError:
            raise
        except Exception as exc:
            raise _wrap(exc, self.model, f"results of {batch_id}") from None

    def _result(self, item: Any) -> BatchResult:
        res = item.result
        if res.type == "succeeded":
            msg = res.message
            text = "".join(getattr(block, "text", "") for block in msg.content)
            return BatchResult(item.custom_id, Completion(text, msg.usage.input_tokens, msg.usage.output_tokens,
                                                          msg.stop_reason))
        if res.type == "errored":
            err = res.error.error
            kind = _ANTHROPIC_KINDS.get(err.type, "other")
            return BatchResult(item.custom_id, error=f"{kind}: {self.model}: batch request errored: "
                                                     f"{err.type}: {err.message}")
        if res.type == "canceled":
            return BatchResult(item.custom_id, error="canceled: the batch was canceled before this request ran")
        if res.type == "expired":
            return BatchResult(item.custom_id,
                               error="expired: the batch's 24-hour window ended before this request ran")
        return BatchResult(item.custom_id, error=f"malformed: unknown batch result type {res.type!r}")

    def cancel(self, batch_id: str) -> BatchState:
        try:
            return self._state(self._client.messages.batches.cancel(batch_id))
        except Exception as exc:
            raise _wrap(exc, self.model, f"cancel of {batch_id}") from None

    def close(self) -> None:
        self._client.close()


# ---- OpenAI Batch -------------------------------------------------------------------------

_OPENAI_ENDED = frozenset({"completed", "expired", "cancelled", "failed"})
_OPENAI_CODES = {"batch_expired": "expired", "batch_cancelled": "canceled"}


def _openai_error_kind(status: int | None, code: str | None) -> str:
    if code in _OPENAI_CODES:
        return _OPENAI_CODES[code]
    if status is None:
        return "other"
    return _BY_STATUS.get(status, "server" if status >= 500 else "other")


class OpenAIBatches(BatchAPI):
    provider = "openai"
    max_requests = 50_000
    max_bytes = 190_000_000  # the API's limit is 200 MB per input file
    endpoint: Literal["/v1/chat/completions"] = "/v1/chat/completions"
    key_env = "OPENAI_API_KEY"

    def _connect(self, **client_options: Any) -> Any:
        import openai

        return openai.OpenAI(**client_options)

    @staticmethod
    def _state(b: Any) -> BatchState:
        counts = _counts(b)
        reason = None
        if b.status == "failed":
            errors = (b.errors.data or []) if b.errors else []
            reason = "; ".join(f"{e.code}: {e.message}" for e in errors) or "the provider gave no reason"
        return BatchState(b.id, b.status, b.status in _OPENAI_ENDED, counts, reason)

    def create(self, requests: list[BatchRequest], *, metadata: dict[str, str] | None = None) -> BatchState:
        lines = [json.dumps({"custom_id": r.custom_id, "method": "POST", "url": self.endpoint,
                             "body": self.request_body(r.messages, r.params)}, ensure_ascii=False)
                 for r in requests]
        data = ("\n".join(lines) + "\n").encode()
        try:
            f = self._client.files.create(file=("requests.jsonl", data, "application/jsonl"), purpose="batch")
            b = self._client.batches.create(input_file_id=f.id, endpoint=self.endpoint, completion_window="24h",
                                            metadata=metadata)
        except Exception as exc:
            raise _wrap(exc, self.model, "create") from None
        return self._state(b)

    def retrieve(self, batch_id: str) -> BatchState:
        try:
            return self._state(self._client.batches.retrieve(batch_id))
        except Exception as exc:
            raise _wrap(exc, self.model, f"retrieve of {batch_id}") from None

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        try:
            b = self._client.batches.retrieve(batch_id)
            files = [fid for fid in (b.output_file_id, b.error_file_id) if fid]
            texts = [self._client.files.content(fid).text for fid in files]
        except Exception as exc:
            raise _wrap(exc, self.model, f"results of {batch_id}") from None
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    yield self._result(json.loads(line))

    def _result(self, line: dict[str, Any]) -> BatchResult:
        cid = line.get("custom_id", "")
        resp = line.get("response") or {}
        err = line.get("error")
        status = resp.get("status_code")
        body = resp.get("body") or {}
        if err is None and status == 200:
            try:
                choice = body["choices"][0]
                usage = body.get("usage") or {}
                return BatchResult(cid, Completion(choice["message"].get("content") or "",
                                                   usage.get("prompt_tokens"), usage.get("completion_tokens"),
                                                   choice.get("finish_reason")))
            except (KeyError, IndexError, TypeError) as exc:
                return BatchResult(cid, error=f"malformed: {self.model}: batch output line: {exc!r}")
        if err is None and isinstance(body, dict):
            err = body.get("error")
        err = err if isinstance(err, dict) else {}
        code, message = err.get("code"), err.get("message") or "no message"
        kind = _openai_error_kind(status, code)
        where = f"status {status}" if status is not None else (code or "error")
        return BatchResult(cid, error=f"{kind}: {self.model}: batch request {where}: {message}")

    def cancel(self, batch_id: str) -> BatchState:
        try:
            return self._state(self._client.batches.cancel(batch_id))
        except Exception as exc:
            raise _wrap(exc, self.model, f"cancel of {batch_id}") from None

    def close(self) -> None:
        self._client.close()
