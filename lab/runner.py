"""Turn an experiment (variants x inputs x models x repeats) into model calls, and run them.

Every finished call is written to the run log at once, as it finishes. A failed call (after
the provider's own retries) becomes a row with outcome ``error`` and the reason; it does not
stop the batch. Everything that can be checked is checked before the first call: prompt file,
input set, template variables, model strings and keys, parameters, budget.

Repeats are real samples: each (input, repeat) gets its own seed, shared by every variant and
model so that comparisons are paired. Identical calls are served from the log only when
``replay=True``; ``resume=True`` skips the calls an experiment (same ``id``) already finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import collections
import os
import hashlib
import itertools
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Iterator, TypeVar

from .seeds import derive_seed
from .errors import BudgetExceeded, InputSetError, ParameterError, ProviderError
from .holdout import Part, choose_part
from .inputs import InputRow, InputSet, load_inputs, rows_from_records
from .names import check_id, html_text
from .logprobs import TOP_LOGPROBS, summarize
from .pricing import price_of
from .progress import Progress, ProgressMode
from .prompts import KNOWN_PARAMS, EscapeHatch, PromptFile, Variant, load_prompt
from .prompts import _check_params as _check_param_values
from .providers import Provider, get_provider
from .secrets import looks_like_secret, redact
from .text import unstorable
from .runs import Runs
from .store import RunLog, RunRecord, new_id, now

if TYPE_CHECKING:  # pandas is imported when a table is read, not to run calls: it is 100 MB of RSS
    import pandas as pd

DEFAULT_MODEL = "local:smollm2"
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.7, "max_tokens": 256}
MAX_CALLS = 1_000_000  # a bigger plan needs max_calls=... (or $PROMPTLAB_MAX_CALLS, CLI --max-calls)


def default_max_calls() -> int:
    """The largest plan run without an explicit ``max_calls``: $PROMPTLAB_MAX_CALLS or 1,000,000."""
    raw = os.environ.get("PROMPTLAB_MAX_CALLS")
    if raw is None:
        return MAX_CALLS
    try:
        return _check_positive_int("PROMPTLAB_MAX_CALLS", int(raw))
    except ValueError:
        raise ParameterError(f"PROMPTLAB_MAX_CALLS must be a whole number of calls, got {raw!r}") from None

T = TypeVar("T")


def run_sync(make_coro: Callable[[], Awaitable[T]]) -> T:
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


class Runner:
    """Makes calls for one experiment on one event loop: providers, concurrency, replay, budget, logging.

    Rate limits: a call that fails with ``rate_limit`` (429) or ``overloaded`` (529) halves its model's
    concurrency limit and is retried by the runner, up to ``rate_limit_retries`` times with exponential
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
        provider = self.provider(call.model)
        limiter = self.limiter(call.model)
        retries = 0
        while True:
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
            if kind not in self.RETRY_KINDS:
                if kind is None:
                    limiter.succeeded(epoch)
                break
            limiter.rate_limited(epoch)
            if retries >= self.rate_limit_retries or self.cancelled:
                error += f" (gave up after {retries} retries by the runner)"
                break
            retries += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (retries - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
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
            confidence=summarize(completion.logprobs, call.escape_hatch and call.escape_hatch.text)
            if completion is not None and completion.logprobs else None,
            finish_reason=completion.finish_reason if completion else None,
        )
        return rec

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


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and (
            math.isnan(value) or not value.is_integer())):
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


class Experiment:
    """A planned experiment. Nothing is called until :meth:`run`; :meth:`plan` validates everything."""

    def __init__(self, prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
                 model: str | list[str] = DEFAULT_MODEL, repeats: int = 1, variants: list[str] | None = None,
                 params: dict[str, Any] | None = None, seed: int | None = None, concurrency: int | None = None,
                 budget_usd: float | None = None, replay: bool = False, resume: bool = False,
                 log: RunLog | str | Path | None = None, id: str | None = None, name: str | None = None,
                 tags: list[str] | None = None, provider_options: dict[str, dict[str, Any]] | None = None,
                 progress: ProgressMode = None, confidence: bool = False, max_calls: int | None = None,
                 split: Part | None = None, new_version: bool = False):
        self.prompt = prompt if isinstance(prompt, PromptFile) else load_prompt(prompt)
        if inputs is None:
            needed = sorted(set().union(*(v.variables for v in self.prompt.variants.values())))
            if needed:
                raise InputSetError(
                    f"{self.prompt.path}: the templates use {needed}; give an input set (inputs=... or --inputs)"
                )
            self.inputs = InputSet("<no inputs>", (InputRow(id="default", vars={}),), "default")
        elif isinstance(inputs, InputSet):
            self.inputs = inputs
        elif isinstance(inputs, list):
            self.inputs = rows_from_records(inputs)
        else:
            self.inputs = load_inputs(inputs)
        if tags:
            self.inputs = self.inputs.tagged(*tags)
            if not len(self.inputs):
                raise ParameterError(f"no input in {self.inputs.path} carries any of the tags {tags}")
        self.models = [model] if isinstance(model, str) else list(model)
        if not self.models:
            raise ParameterError("model: give at least one model string")
        self.repeats = _check_positive_int("repeats", repeats)
        self.variants = self.prompt.select(variants)
        self.params = dict(params or {})
        if "seed" in self.params:  # params={"seed": 3} / --param seed=3 mean seed=3
            if seed is not None and seed != self.params["seed"]:
                raise ParameterError(f"two seeds given: seed={seed!r} and params['seed']={self.params['seed']!r}")
            seed = self.params.pop("seed")
        if seed is not None:
            seed = _check_positive_int("seed", seed, minimum=0)
        self.seed = seed
        self.concurrency = None if concurrency is None else _check_positive_int("concurrency", concurrency)
        if budget_usd is not None and (not isinstance(budget_usd, (int, float)) or isinstance(budget_usd, bool)
                                       or math.isnan(budget_usd) or budget_usd < 0):
            raise ParameterError(f"budget_usd must be a non-negative number of US dollars, got {budget_usd!r}")
        self.budget_usd = budget_usd
        self.replay = replay
        self.resume = resume
        self.new_version = bool(new_version)  # resume an experiment whose prompt changed, with the new version
        if resume and id is None:
            raise ParameterError("resume=True needs the id of the experiment to resume (id=...)")
        self.log = log if isinstance(log, RunLog) else RunLog(log)
        # an input set with a split (lab.holdout) runs on its dev part unless split= says otherwise
        self.split: str | None = None
        self.split_note: str | None = None
        if inputs is not None:
            self.inputs, self.split, self.split_note = choose_part(self.inputs, self.log, split)
        self.name = name or self.prompt.task
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.id = id or f"{self.name}-{stamp}-{new_id()[:4]}"
        # the id names folders (results/<id>/, exports), so it keeps to the name rule; see lab.names
        check_id(self.id, "experiment id" if id else f"experiment name {self.name!r} makes an id that", ParameterError)
        self.provider_options = provider_options or {}
        self.progress = progress
        if not isinstance(confidence, bool):
            raise ParameterError(f"confidence must be True or False, got {confidence!r}")
        self.confidence = confidence  # ask for token log-probabilities where the provider returns them
        self.no_confidence: list[str] = []  # models that return none: "no confidence available"
        try:  # the same value rules as a prompt file's params; providers check the names
            _check_param_values({k: v for k, v in self.params.items() if k in KNOWN_PARAMS})
        except ValueError as exc:
            raise ParameterError(f"params: {exc}") from None
        for k, v in self.params.items():
            if unstorable(v) or unstorable(k):
                raise ParameterError(f"parameter {ascii(k)} {unstorable(v) or unstorable(k)}; pass it as UTF-8 text")
            if looks_like_secret(k, v):
                raise ParameterError(f"parameter {k!r} looks like a secret; keys come from the environment only")
        self.max_calls = _check_positive_int("max_calls", max_calls) if max_calls is not None else default_max_calls()
        self._calls: list[Call] | None = None
        self._checked: tuple[dict[str, Provider], dict[str, dict[str, Any]], list[dict[str, list]]] | None = None

    @property
    def size(self) -> int:
        """How many calls the plan holds (variants x inputs x models x repeats), without planning them."""
        return len(self.variants) * len(self.inputs) * len(self.models) * self.repeats

    def describe(self) -> str:
        """The plan in one line: its size, how it is made up, and what it could cost."""
        return (f"{self.size:,} calls ({len(self.variants)} variants x {len(self.inputs)} inputs x "
                f"{len(self.models)} models x {self.repeats:,} repeats); {self.cost_estimate()}")

    def cost_estimate(self) -> str:
        """An upper estimate of the plan's cost in words, from the first input's rendered prompts and
        ``max_tokens`` (about 2 characters a token, as the budget check reckons)."""
        unknown = [m for m in self.models if price_of(m) is None]
        if unknown:
            return f"cost unknown (no price for {', '.join(map(redact, unknown))}; lab.pricing.set_price declares one)"
        row = next(iter(self.inputs))
        total = 0.0
        for v in self.variants:
            try:
                messages = v.render(row.vars, input_id=row.id)
            except Exception:  # reported properly by check(); an estimate must not fail first
                return "cost unknown (the first input does not render)"
            params = {**DEFAULT_PARAMS, **v.params, **self.params}
            for m in self.models:
                price = price_of(m)
                chars = sum(len(x["content"]) for x in messages)
                total += price.cost(chars // 2 + 8 * len(messages) + 16, int(params.get("max_tokens") or 1024))
        per_input = total
        est = per_input * len(self.inputs) * self.repeats
        return f"estimated cost up to ${est:,.2f}" if est else "no cost (local or free models)"

    def check(self) -> None:
        """Validate everything a run needs before any call: the plan's size against ``max_calls``,
        template variables and rendering for every input, model strings, keys, parameters and prices.
        Cheap in the number of repeats: calls themselves are made one at a time as the run pulls them."""
        if self._checked is not None:
            return
        if self.size > self.max_calls:
            raise ParameterError(
                f"the plan is {self.describe()}: more than max_calls={self.max_calls:,}; pass max_calls={self.size} "
                f"(CLI: --max-calls {self.size}) to run it anyway, or set PROMPTLAB_MAX_CALLS")
        self.inputs.check_variables({v.name: v.variables for v in self.variants})
        self.inputs.check_text_values({v.name: v.text_variables for v in self.variants})
        providers = {m: get_provider(m, **self.provider_options.get(m, {})) for m in self.models}
        if self.budget_usd is not None:
            unknown = [m for m in self.models if price_of(m) is None]
            if unknown:
                raise ParameterError(
                    f"a budget needs known prices, and {unknown} have none; declare one with lab.pricing.set_price(...)"
                )
        params = {}
        for v in self.variants:
            params[v.name] = {**DEFAULT_PARAMS, **v.params, **self.params}
            for provider in providers.values():
                provider.check_params(params[v.name])
            params[v.name].pop("seed", None)  # each call gets its own, below
        self.no_confidence = [m for m, p in providers.items() if self.confidence and not p.returns_logprobs]
        for m in self.no_confidence:
            print(f"{redact(m)}: no confidence available (it returns no token log-probabilities); the rest runs as usual")
        # rendered once per (input, variant): the repeats and models share it
        rendered = [{v.name: v.render(row.vars, input_id=row.id) for v in self.variants} for row in self.inputs]
        self._checked = (providers, params, rendered)

    def iter_plan(self) -> Iterator[Call]:
        """The plan's calls one at a time, in plan order (input, repeat, model, variant), built as
        they are taken. :meth:`plan` returns the same calls as a list once it has been called."""
        if self._calls is not None:
            yield from self._calls
            return
        self.check()
        providers, params, rendered = self._checked
        rng = random.SystemRandom()
        user_seed = self.seed is not None
        for row, messages in zip(self.inputs, rendered):
            for repeat in range(self.repeats):
                seed = derive_seed(self.seed, row.id, repeat) if user_seed else rng.randrange(2**31 - 1)
                for m, provider in providers.items():
                    # a provider that honours seeds always gets one (recorded, so any sample can be redone)
                    sent_seed = seed if (user_seed or provider.honours_seed) else None
                    for v in self.variants:
                        call_params = dict(params[v.name])
                        if sent_seed is not None:
                            call_params["seed"] = sent_seed
                        if self.confidence and provider.returns_logprobs:
                            call_params.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
                        yield Call(model=m, messages=messages[v.name], params=call_params, repeat=repeat,
                                   seed=sent_seed, seed_chosen_by_user=user_seed, variant=v, row=row,
                                   escape_hatch=v.escape_hatch)

    def _plan_keys(self) -> Iterator[tuple]:
        """Each planned call's resume key, in plan order, without building the calls (the model as
        the log holds it: secrets in a model string are redacted there)."""
        shown = {m: redact(m) for m in self.models}
        for row in self.inputs:
            for repeat in range(self.repeats):
                for m in self.models:
                    for v in self.variants:
                        yield (v.name, row.id, shown[m], repeat, 0, 0, 0, "answer")

    def _resumed(self, calls: Iterable[Call]) -> tuple[Iterable[Call], int]:
        """The calls a resumed run still makes, and how many it skips: those finished before (with
        ``new_version``, only those finished with the variant's current version)."""
        versions = {v.name: v.version for v in self.variants} if self.new_version else None
        done = self.log.finished_keys(self.id, versions=versions)
        skipped = sum(1 for k in self._plan_keys() if k in done)
        shown = {m: redact(m) for m in self.models}
        return (c for c in calls if (c.resume_key[:2] + (shown[c.model],) + c.resume_key[3:]) not in done), skipped

    def _check_resume_versions(self) -> None:
        """Refuse to resume with a variant whose prompt changed since the experiment ran it (the rows
        would mix two versions under one name) unless ``new_version`` asks for it."""
        if self.new_version:
            return
        logged = self.log.finished_versions(self.id)
        for v in self.variants:
            old = sorted(logged.get(v.name, set()) - {v.version})
            if old:
                raise ParameterError(
                    f"cannot resume {self.id!r}: variant {v.name!r} of {v.path} ran as version {', '.join(old)} and "
                    f"the file now gives version {v.version}; resume with new_version=True (CLI: --new-version) to "
                    "run the new version's calls under this id, or start a new experiment")

    def __repr__(self) -> str:
        return (f"Experiment({self.id!r}: {len(self.variants)} variant(s) x {len(self.inputs)} input(s) x "
                f"{len(self.models)} model(s) x {self.repeats} repeat(s), log={str(self.log.path)!r})")

    def plan(self) -> list[Call]:
        """Every call this experiment will make, rendered and checked, as a list; makes no model call.
        A run does not need it (it pulls calls from :meth:`iter_plan`); once made, a run uses this list."""
        if self._calls is None:
            self._calls = list(self.iter_plan())
        return self._calls

    def register(self, **extra: Any) -> None:
        """Record this experiment (once) and its prompt versions in the log: every way of running
        one (here, :mod:`lab.batch`, the workbench's input sets) goes through this. ``extra`` is
        added to the recorded parameters (e.g. ``mode="batch"``)."""
        self.log.add_experiment(self.id, name=self.name, prompt_path=self.prompt.path, inputs_path=self.inputs.path,
                                models=self.models, variants=[v.name for v in self.variants], repeats=self.repeats,
                                params={**self._params_record(), **extra})
        for v in self.variants:
            record_prompt_version(self.log, v)
        if self.split_note:  # the part of a split input set this runs on, said each time it runs
            print(self.split_note)

    def _params_record(self) -> dict[str, Any]:
        return {"prompt": self.prompt.path, "inputs": self.inputs.path, "models": self.models,
                "variants": [v.name for v in self.variants], "repeats": self.repeats, "params": self.params,
                "seed": self.seed, "concurrency": self.concurrency, "budget_usd": self.budget_usd,
                "replay": self.replay, "versions": {v.name: v.version for v in self.variants},
                "confidence": self.confidence, "no_confidence": self.no_confidence, "split": self.split}

    async def arun(self) -> "Runs":
        """Run the experiment on the current event loop (``await exp.arun()`` in async code)."""
        self.check()
        if self.resume:
            self._check_resume_versions()
        self.register()
        total = self.size
        calls: Iterable[Call] = self.iter_plan()
        skipped = 0
        if self.resume:
            calls, skipped = self._resumed(calls)
        todo = total - skipped
        runner = Runner(self.log, self.id, concurrency=self.concurrency, budget_usd=self.budget_usd,
                        replay=self.replay, provider_options=self.provider_options)
        self.log.add_event(self.id, "started", calls=todo, skipped=skipped)
        progress = Progress(todo, self.id, self.progress)
        t0 = time.perf_counter()
        try:
            workers = sum(runner.limiter(m).ceiling for m in self.models)
            records = await runner.run_all(calls, progress, workers=min(workers, max(1, todo)))
        finally:
            progress.close()
            await runner.aclose()
        wall = time.perf_counter() - t0
        if runner.stopped:
            skipped_by_budget = todo - len(records)
            msg = (f"stopped by budget: {len(records)} of {todo} calls made, ${runner.spent_usd:.4f} spent "
                   f"of ${self.budget_usd:.4f}; {skipped_by_budget} not made")
            print(msg)
        self.log.add_event(self.id, "finished", made=runner.counts["made"], replayed=runner.counts["replayed"],
                           skipped=skipped, stopped=runner.stopped, wall_s=round(wall, 3))
        return Runs(self.id, self.log, records, skipped=skipped, stopped=runner.stopped,
                    spent_usd=runner.spent_usd, wall_s=wall)

    def run(self) -> "Runs":
        """Run every planned call (with a progress bar); works in scripts and in notebooks."""
        return run_sync(self.arun)


def experiment(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None,
               **kwargs: Any) -> Experiment:
    """Plan an experiment: every variant of ``prompt`` over ``inputs`` for each model and repeat.

    Keyword arguments: ``model`` (a string or list, default ``local:smollm2``), ``repeats``,
    ``variants`` (names; default all), ``params`` (override the file's: temperature,
    max_tokens, ...), ``seed`` (makes runs reproducible and pairs variants on the same seeds),
    ``concurrency`` (per model), ``budget_usd``, ``replay``, ``resume`` with ``id``, ``log``,
    ``tags`` (only inputs with these tags), ``progress`` (``auto``, ``text``, ``off``),
    ``confidence`` (True: ask providers that can for token log-probabilities and keep a small
    confidence record per run, see :mod:`lab.logprobs`; others say "no confidence available"),
    ``max_calls`` (a plan larger than this, 1,000,000 by default or ``$PROMPTLAB_MAX_CALLS``, is refused),
    ``split`` (an input set split by ``lab.split_inputs`` runs on its ``"dev"`` part by default;
    ``"held_out"`` or ``"all"`` say otherwise, explicitly).
    Errors in any of them are raised here or by :meth:`Experiment.plan`, before any call.
    """
    exp = Experiment(prompt, inputs, **kwargs)
    exp.check()
    return exp


def record_prompt_version(log: RunLog, v: Variant) -> None:
    """Keep ``v``'s templates in the log under its version, so any earlier version can be read back."""
    log.add_prompt_version(v.version, prompt_path=v.path, task=v.task, variant=v.name, templates=v.templates,
                           params=v.params, escape_hatch=v.escape_hatch.text if v.escape_hatch else None)
