"""The clock and outcome rules shared by the fake Anthropic and OpenAI batch endpoints.

A batch's requests finish one after another over `BatchPlan.seconds` (request i of n at
seconds * (i + 1) / n after creation, measured on the monotonic clock when a client asks, so no
thread runs in the background). The batch ends when its last request has finished, when its
window closes (`expire_after`: unfinished requests expire), or shortly after a cancel
(`cancel_seconds`: unfinished requests are canceled). Per-request failures come from
`BatchPlan.outcomes` and from requests the server itself refuses (e.g. no max_tokens).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: outcome of one request that ran: "ok" or "error" (the provider answers it with an error)
Outcome = str
OutcomeRule = Callable[[int, str, dict[str, Any]], Outcome]  # (index, custom_id, body) -> outcome


@dataclass
class BatchPlan:
    """How the fake provider runs the batches created after it is set.

    seconds: time from creation until the last request has run.
    outcomes: per request in submission order, "ok" or "error" (missing ones are "ok"); or a
        function (index, custom_id, body) -> outcome.
    expire_after: seconds until the batch's window closes (None: never); requests not run by
        then end as expired.
    cancel_seconds: how long a canceled batch stays canceling before it ends.
    validate_seconds, finalize_seconds: OpenAI's validating and finalizing phases.
    error_status, error_message: how an "error" request is answered.
    """

    seconds: float = 0.0
    outcomes: Sequence[Outcome] | OutcomeRule = ()
    expire_after: float | None = None
    cancel_seconds: float = 0.0
    validate_seconds: float = 0.0
    finalize_seconds: float = 0.0
    error_status: int = 400
    error_message: str = "injected batch request failure"

    def outcome(self, index: int, custom_id: str, body: dict[str, Any]) -> Outcome:
        if callable(self.outcomes):
            return self.outcomes(index, custom_id, body)
        return self.outcomes[index] if index < len(self.outcomes) else "ok"


@dataclass
class FakeBatch:
    """One batch on the fake server: its requests and its clock."""

    id: str
    requests: list[tuple[str, dict[str, Any]]]  # (custom_id, request body)
    plan: BatchPlan
    created: float = field(default_factory=time.monotonic)
    created_unix: float = field(default_factory=time.time)
    canceled: float | None = None  # seconds after creation
    results: dict[str, Any] | None = None  # filled once, when the batch ends
    meta: dict[str, Any] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.created

    def done_at(self, i: int) -> float:
        n = len(self.requests)
        return self.plan.seconds * (i + 1) / n if n else 0.0

    def cutoff(self) -> tuple[float, str]:
        """(seconds after creation when requests stop running, why: "done" | "expired" | "canceled")."""
        end, why = self.plan.seconds, "done"
        if self.plan.expire_after is not None and self.plan.expire_after < end:
            end, why = self.plan.expire_after, "expired"
        if self.canceled is not None and self.canceled < end:
            end, why = self.canceled, "canceled"
        return end, why

    def end_time(self) -> float:
        end, why = self.cutoff()
        return end + self.plan.cancel_seconds if why == "canceled" else end

    def ended(self) -> bool:
        return self.elapsed() >= self.end_time()

    def ran(self, i: int, at: float | None = None) -> bool:
        """Whether request i has run by `at` seconds (default: now), given how the batch ends."""
        at = self.elapsed() if at is None else at
        return self.done_at(i) <= min(at, self.cutoff()[0])

    def fate(self, i: int) -> str:
        """Final outcome of request i: "ok", "error", "expired" or "canceled" (only once ended)."""
        if self.ran(i, self.end_time()):
            return self.plan.outcome(i, *self.requests[i])
        return self.cutoff()[1]

    def result_order(self) -> list[int]:
        """Results come back in no particular order: clients must match them by custom id."""
        order = list(range(len(self.requests)))
        random.Random(self.id).shuffle(order)
        return order


class BatchBook:
    """The batches (and files) one fake server holds, with a lock and id counters."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.plan = BatchPlan()
        self.batches: dict[str, FakeBatch] = {}
        self.lock = threading.RLock()  # re-entered when finishing a batch writes its files
        self._n = 0

    def next_id(self, prefix: str | None = None) -> str:
        with self.lock:
            self._n += 1
            return f"{prefix or self.prefix}{self._n:024x}"


class BatchEndpoints:
    """Base of the fake batch endpoints: a server, a BatchBook, and ``plan`` (a BatchPlan) to set
    timing and failures from a test."""

    def __init__(self, server: Any, id_prefix: str) -> None:
        self.server = server
        self.book = BatchBook(id_prefix)

    @property
    def plan(self) -> BatchPlan:
        return self.book.plan

    @plan.setter
    def plan(self, value: BatchPlan) -> None:
        self.book.plan = value
