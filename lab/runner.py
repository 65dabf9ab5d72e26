"""The calls: one model call (:class:`Call`, its cache key and seed), made by a :class:`Runner` on one
event loop with a concurrency limit per model that adapts to rate limits, retries with backoff,
replay from the log, a budget, and every finished call written to the run log at once.

A failed call (after the provider's own retries) becomes a row with outcome ``error`` and the
reason; it does not stop the batch. What to call is planned by :class:`lab.experiments.Experiment`;
:func:`run_sync` runs a coroutine from sync code, also inside Jupyter.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from .errors import BudgetExceeded, ProviderError
from .inputs import InputRow
from .logprobs import summarize
from .pricing import price_of
from .progress import Progress
from .prompts import EscapeHatch, Variant
from .providers import Completion, Provider, get_provider
from .store import RunLog, RunRecord, new_id, now

T = TypeVar("T")


def run_sync(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also inside Jupyter (whose loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make_coro())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="promptlab-run")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], repeat: int) -> str:
    blob = json.dumps([model, messages, params, repeat], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()  # any text hashes


@dataclass
class Call:
    """One model call, fully specified before it is made."""

    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    repeat: int = 0
    seed: int | None = None
    seed_chosen_by_user: bool = False
    variant: Variant | None = None
    row: InputRow | None = None
    escape_hatch: EscapeHatch | None = None
    conversation_id: str = field(default_factory=new_id)
    turn: int = 0
    attempt: int = 0
    round: int = 0
    parent_id: str | None = None
    role: str = "answer"
    run_id: str = field(default_factory=new_id)

    @functools.cached_property  # a call's fields are not changed once planned (dataclasses.replace makes a new one)
    def key(self) -> str:
        """Cache key: model, messages, parameters (with the seed only if the user chose it) and repeat."""
        params = self.params if self.seed_chosen_by_user else {k: v for k, v in self.params.items() if k != "seed"}
        return cache_key(self.model, self.messages, params, self.repeat)

    @property
    def resume_key(self) -> tuple:
        return (self.variant.name if self.variant else None, self.row.id if self.row else None, self.model,
                self.repeat, self.turn, self.attempt, self.round, self.role)


class _Limiter:
    """A concurrency limit that can be changed while calls are in flight, and that adapts (AIMD).

    Waiters queue first in, first out and a release wakes only as many as there are free slots
    (a Condition with notify_all woke every waiter on every release: quadratic in the batch size).
    ``rate_limited`` halves the limit (at most once per ``epoch``: the 429s of calls that started
    before the last cut say nothing new); ``succeeded`` adds one slot per ``limit`` successes, up to
    ``ceiling``, the limit the user asked for.
    """

    def __init__(self, limit: int):
        self.ceiling = max(1, int(limit))
        self._limit = self.ceiling
        self.in_flight = 0
        self.epoch = 0
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = max(1, int(value))
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self._limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1  # the slot passes to the waiter directly
                fut.set_result(None)

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch the call starts in."""
        if self.in_flight < self._limit and not self._waiters:
            self.in_flight += 1
            return self.epoch
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted as we were cancelled: hand the slot on
                self.release()
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    async def __aenter__(self) -> int:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def rate_limited(self, epoch: int) -> None:
        if epoch == self.epoch:
            self.epoch += 1
            self._successes = 0
            self._limit = max(1, self._limit // 2)

    def succeeded(self, epoch: int) -> None:
        if epoch == self.epoch and self._limit < self.ceiling:
            self._successes += 1
            if self._successes >= self._limit:
                self._successes = 0
                self.limit = self._limit + 1


@dataclass
class _Attempt:
    """One try of a call: what came back, or the error and its kind."""

    completion: Completion | None
    error: str | None
    kind: str | None
    started: str
    latency_ms: float


class Runner:
    """Makes calls for one experiment on one event loop: providers, concurrency, replay, budget, logging.

    Rate limits: a call that fails with ``rate_limit`` (429) or ``overloaded`` (529) halves its model's
    concurrency limit and is retried by the runner (tenacity), up to ``rate_limit_retries`` times with exponential
    backoff (``backoff_s`` doubling, with jitter, capped at ``max_backoff_s``); successes raise the limit
    again, one slot at a time, up to the ``concurrency`` asked for. The SDKs keep their own retries too
    (``max_retries``, 2 by default, honouring ``retry-after``; set it per model with
    ``provider_options={model: {"max_retries": 0}}``): the runner sees a 429 only once the SDK gave up
    on it, so the SDK handles a passing 429 and the runner a sustained one.
    """

    RETRY_KINDS = frozenset({"rate_limit", "overloaded"})
    rate_limit_retries: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0

    def __init__(self, log: RunLog, experiment_id: str, *, concurrency: int | None = None,
                 budget_usd: float | None = None, replay: bool = False,
                 provider_options: dict[str, dict[str, Any]] | None = None):
        self.log = log
        self.experiment_id = experiment_id
        self.concurrency = concurrency
        self.budget_usd = budget_usd
        self.replay = replay
        self.provider_options = provider_options or {}
        self.providers: dict[str, Provider] = {}
        self._limiters: dict[str, _Limiter] = {}
        self.spent_usd = 0.0
        self._reserved_usd = 0.0
        self.stopped: str | None = None
        self.counts = {"made": 0, "replayed": 0}
        self.cancelled = False

    def provider(self, model: str) -> Provider:
        p = self.providers.get(model)
        if p is None:
            p = self.providers[model] = get_provider(model, **self.provider_options.get(model, {}))
        return p

    def limiter(self, model: str) -> _Limiter:
        lim = self._limiters.get(model)
        if lim is None:
            lim = self._limiters[model] = _Limiter(self.concurrency or self.provider(model).default_concurrency)
        return lim

    def _estimate_usd(self, call: Call) -> float | None:
        price = price_of(call.model)
        if price is None:
            return None
        chars = sum(len(m["content"]) for m in call.messages)
        est_in = chars // 2 + 8 * len(call.messages) + 16  # generous: about 2 characters a token
        return price.cost(est_in, int(call.params.get("max_tokens") or 1024))

    def _reserve(self, call: Call) -> float:
        if self.budget_usd is None:
            return 0.0
        est = self._estimate_usd(call) or 0.0
        if self.stopped or self.spent_usd + self._reserved_usd + est > self.budget_usd:
            if not self.stopped:
                self.stopped = "budget"
                self.log.add_event(self.experiment_id, "stopped", reason="budget", spent_usd=self.spent_usd,
                                   budget_usd=self.budget_usd, next_call_estimate_usd=est)
            raise BudgetExceeded(
                f"budget ${self.budget_usd:.4f} reached: ${self.spent_usd:.4f} spent, the next call could cost "
                f"up to ${est:.4f}"
            )
        self._reserved_usd += est
        return est

    async def call(self, call: Call) -> RunRecord:
        """Make one call (or replay it from the log) and append its row; returns once the row is
        committed. Raises BudgetExceeded."""
        rec = await self._make(call)
        await self.log.append_run(rec)  # committed (or kept in the recovery file) before the call counts as done
        return rec

    async def _make(self, call: Call) -> RunRecord:
        """Make one call (or replay it from the log): its row, not yet written. Raises BudgetExceeded."""
        if self.cancelled:
            raise asyncio.CancelledError()
        if self.replay:
            cached = self.log.find_cached(call.key)
            if cached is not None:
                self.counts["replayed"] += 1
                return self._replayed(call, cached)
        attempt = await self._attempts(self.provider(call.model), self.limiter(call.model), call)
        completion, error, started, latency_ms = attempt.completion, attempt.error, attempt.started, attempt.latency_ms
        self.counts["made"] += 1
        cost = None
        if completion is not None:
            price = price_of(call.model)
            cost = price.cost(completion.input_tokens, completion.output_tokens) if price else None
            self.spent_usd += cost or 0.0
        rec = self.record(
            call, output=completion.text if completion else None, error=error, started=started,
            latency_ms=latency_ms, input_tokens=completion.input_tokens if completion else None,
            output_tokens=completion.output_tokens if completion else None, cost=cost, replayed_from=None,
            confidence=summarize(completion.logprobs, call.escape_hatch.text if call.escape_hatch else None)
            if completion is not None and completion.logprobs else None,
            finish_reason=completion.finish_reason if completion else None,
        )
        return rec

    async def _attempts(self, provider: Provider, limiter: _Limiter, call: Call) -> _Attempt:
        """The call's first try and, after a rate limit or overload, up to ``rate_limit_retries`` more with
        backoff (tenacity). The first try goes straight to the provider: most calls need no retry, and
        tenacity's set-up costs about as much CPU as the lab's whole row."""
        attempt = await self._attempt(provider, limiter, call)
        retries = 0
        if attempt.kind in self.RETRY_KINDS and not self.cancelled and self.rate_limit_retries >= 1:
            await asyncio.sleep(self._wait(1))  # the wait before the first retry; tenacity waits before the rest
            if not self.cancelled:
                retrying = tenacity.AsyncRetrying(
                    retry=tenacity.retry_if_result(lambda a: a.kind in self.RETRY_KINDS and not self.cancelled),
                    stop=tenacity.stop_after_attempt(self.rate_limit_retries), wait=self._backoff,
                    retry_error_callback=lambda state: state.outcome.result() if state.outcome else None)
                attempt = await retrying(self._attempt, provider, limiter, call)
                retries = retrying.statistics.get("attempt_number", 0)
        if attempt.kind in self.RETRY_KINDS:
            attempt = dataclasses.replace(attempt, error=f"{attempt.error} (gave up after {retries} retries by the runner)")
        return attempt

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        """The wait before retry number ``attempt_number + 1`` (the first retry's wait is taken before tenacity starts)."""
        return self._wait(state.attempt_number + 1)

    def _wait(self, retry: int) -> float:
        """Exponential backoff with jitter: ``backoff_s`` doubling per retry, capped at ``max_backoff_s``,
        each wait drawn between half and all of it."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)

    async def _attempt(self, provider: Provider, limiter: _Limiter, call: Call) -> _Attempt:
        """One try of a call under its model's concurrency limit; the limiter learns how it went."""
        epoch = await limiter.acquire()
        try:
            reserved = self._reserve(call)
            started = now()
            t0 = time.perf_counter()
            try:
                completion = await provider.complete(call.messages, call.params)
                error, kind = None, None
            except ProviderError as exc:
                completion, error, kind = None, f"{exc.kind}: {exc}", exc.kind
            except asyncio.CancelledError:
                self._reserved_usd -= reserved
                raise
            except Exception as exc:  # a provider bug must not lose the batch
                completion, error, kind = None, f"other: {type(exc).__name__}: {exc}", "other"
            latency_ms = (time.perf_counter() - t0) * 1000
            self._reserved_usd -= reserved
        finally:
            limiter.release()
        if kind is None:
            limiter.succeeded(epoch)
        elif kind in self.RETRY_KINDS:
            limiter.rate_limited(epoch)
        return _Attempt(completion, error, kind, started, latency_ms)

    def _replayed(self, call: Call, hit: dict[str, Any]) -> RunRecord:
        """The row for ``call`` served from an earlier logged call (free: it costs nothing again).
        An unseeded call takes the seed of the call it replays, which is the seed that made its output."""
        if not call.seed_chosen_by_user and "seed" in call.params:
            call = dataclasses.replace(call, seed=hit["seed"], params={**call.params, "seed": hit["seed"]})
        conf = hit.get("confidence")
        return self.record(call, output=hit["output"], error=None, started=now(), latency_ms=hit["latency_ms"],
                            input_tokens=hit["input_tokens"], output_tokens=hit["output_tokens"], cost=0.0,
                            replayed_from=hit["id"], confidence=json.loads(conf) if isinstance(conf, str) else conf,
                            finish_reason=hit.get("finish_reason"))

    def record(self, call: Call, *, output: str | None, error: str | None, started: str, latency_ms: float | None,
                input_tokens: int | None, output_tokens: int | None, cost: float | None,
                replayed_from: str | None, confidence: dict[str, Any] | None = None,
                finish_reason: str | None = None) -> RunRecord:
        if error is not None:
            outcome = "error"
        elif call.escape_hatch is not None and call.escape_hatch.detect(output):
            outcome = "escaped"
        else:
            outcome = "answered"
        v, row = call.variant, call.row
        return RunRecord(
            id=call.run_id, experiment_id=self.experiment_id, model=call.model, messages=call.messages,
            outcome=outcome, prompt_path=v.path if v else None, task=v.task if v else None,
            variant=v.name if v else None, prompt_version=v.version if v else None,
            input_id=row.id if row else None, input_tags=list(row.tags) if row else None,
            input_vars=row.vars if row else None, expected=row.expected if row else None,
            params=call.params, seed=call.seed, repeat=call.repeat, output=output, error=error,
            input_tokens=input_tokens, output_tokens=output_tokens, latency_ms=latency_ms, cost_usd=cost,
            started_at=started, cache_key=call.key, replayed_from=replayed_from,
            conversation_id=call.conversation_id, turn=call.turn, attempt=call.attempt, round=call.round,
            parent_id=call.parent_id, role=call.role, confidence=confidence, finish_reason=finish_reason,
        )

    async def run_all(self, calls: Iterable[Call], progress: Progress, *, workers: int | None = None) -> list[RunRecord]:
        """Run independent calls concurrently; stop scheduling (not logging) when the budget is reached.

        ``calls`` may be a lazy iterable: a fixed number of workers (``workers``, by default the
        concurrency limit of each model seen so far, summed) pull calls from it one at a time, so a
        million-call plan never exists in memory at once.
        """
        records: list[RunRecord] = []
        it = iter(calls)
        if self.replay:
            it = self._replay_from_log(it, records, progress)
        first = next(it, None)
        if first is None:
            return records
        it = itertools.chain([first], it)
        if workers is None:
            workers = self.concurrency or self.provider(first.model).default_concurrency
            workers = max(workers, sum(lim.ceiling for lim in self._limiters.values()))
            if self.concurrency is None:  # other models' limits are known only once their calls come up
                workers = max(workers, 16)

        # A worker hands each finished row to the log's writer thread and goes on to its next call;
        # the call is reported (kept in ``records``, counted by ``progress``) only once its row is
        # committed. Waiting for the commit in the worker would keep a slot idle for as long as a
        # commit takes to be acknowledged, which on a busy event loop is longer than a call (80-110 ms
        # against 50 ms at 4k calls, concurrency 64). At most ``unacked`` rows wait at once: a log
        # that stops taking rows (locked by another process) stops the run after that many.
        unacked = asyncio.Semaphore(max(16, 2 * workers))
        pending: set[asyncio.Future] = set()
        failed: list[BaseException] = []

        def committed(rec: RunRecord, fut: asyncio.Future) -> None:
            pending.discard(fut)
            unacked.release()
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                failed.append(exc)
                return
            records.append(rec)
            progress.update(rec.outcome)

        async def worker() -> None:
            for c in it:  # a shared iterator: each call is taken by exactly one worker
                if failed:
                    return
                try:
                    rec = await self._make(c)
                except BudgetExceeded:
                    return
                await unacked.acquire()
                fut = self.log.submit_run(rec)
                pending.add(fut)
                fut.add_done_callback(functools.partial(committed, rec))

        tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, workers))]
        try:
            await asyncio.gather(*tasks)
            while pending:  # the last rows' commits
                await asyncio.wait(list(pending))
        finally:
            for t in tasks:
                t.cancel()
            for fut in list(pending):  # interrupted: the writer still commits these rows; nobody reports them
                fut.cancel()
        if failed:
            raise failed[0]
        return records

    def _replay_from_log(self, calls: Iterator[Call], records: list[RunRecord], progress: Progress,
                         chunk: int = 1000) -> Iterator[Call]:
        """Serve every call the log already answered, a chunk at a time with one read and one
        transaction each (a replayed row costs nothing to redo, so it needs no commit of its own);
        yields the calls left to make."""
        while True:
            batch = list(itertools.islice(calls, chunk))
            if not batch:
                return
            cached = self.log.find_cached_many(c.key for c in batch)
            hits, rest = [], []
            for c in batch:
                hit = cached.get(c.key)
                if hit is None:
                    rest.append(c)
                else:
                    hits.append(self._replayed(c, hit))
            if hits:
                self.log.add_runs(hits)
            for rec in hits:
                records.append(rec)
                progress.update(rec.outcome)
            self.counts["replayed"] += len(hits)
            yield from rest

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()
