"""Run an experiment through a provider's batch API: submit now, poll later, results land in the log.

    import lab
    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml",
                         model="anthropic:claude-haiku-4-5", repeats=20, seed=7)
    lab.batch.submit(exp)             # Anthropic Message Batches / OpenAI Batch; ids go in the log
    ...                               # hours later, in any session, even after a restarted kernel:
    lab.batch.poll(exp.id)            # ingests what has ended; call again until .done
    lab.batch.poll(exp.id, wait=True) # or block until every batch has ended

Each planned call is submitted with its run id as the custom id and kept, fully rendered, in
the log; results come back as ordinary run rows (the same columns a live run writes), so every
table, plot and notebook works unchanged. Errored, expired and canceled requests become
``error`` rows with the reason. Costs are at batch prices (half the list price). Polling is
idempotent: a run id is written once, however often (or from however many processes) you poll.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse, urlunparse

import pandas as pd

from .errors import BatchError, BudgetExceeded
from .experiments import Experiment, LoggedRows
from .names import html_text
from .pricing import Price, price_of
from .prompts import EscapeHatch
from .providers.batch_adapters import BatchAPI, BatchRequest, BatchResult, BatchState
from .providers.registry import batch_api, has_batch_api
from .runner import Call, Runner
from .store import RunLog, RunRecord, now

if TYPE_CHECKING:
    from .stats import Plan, PowerEstimate

#: run rows written per transaction while ingesting
_CHUNK = 1000
#: from about this many calls, half price is worth waiting (up to 24 hours) for
BATCH_SUGGESTED_CALLS = 1000


@dataclass
class BatchRun(LoggedRows):
    """Where an experiment's batches stand. ``batches`` is the log's view (one row per provider
    batch); ``ingested`` counts the run rows this call added; ``done`` is True once every batch
    has ended and all its results are run rows."""

    experiment_id: str
    log: RunLog
    batches: pd.DataFrame
    ingested: int = 0

    @property
    def done(self) -> bool:
        return bool(len(self.batches)) and bool(self.batches["ingested_at"].notna().all())

    def __repr__(self) -> str:
        states = ", ".join(f"{r.batch_id} {r.state} ({r.request_count})" for r in self.batches.itertuples())
        status = "done" if self.done else "pending"
        return (f"BatchRun({self.experiment_id!r}: {status}; {len(self.batches)} batch(es): {states}; "
                f"{self.ingested} row(s) ingested by this call)")

    def _repr_html_(self) -> str:
        cols = ["provider", "model", "batch_id", "state", "request_count", "created_at", "ingested_at"]
        status = "done" if self.done else "pending: poll again later"
        return (f"<p><b>{html_text(self.experiment_id)}</b>: {status}; {self.ingested} row(s) ingested by this call</p>"
                + self.batches[cols].to_html(index=False))


def _open(log: RunLog | str | Path | None) -> RunLog:
    return log if isinstance(log, RunLog) else RunLog(log)


def _safe_url(url: str | None) -> str | None:
    """A base URL fit for the log: no user name or password in it."""
    if not url:
        return None
    p = urlparse(url)
    if p.username or p.password:
        p = p._replace(netloc=(p.hostname or "") + (f":{p.port}" if p.port else ""))
    return urlunparse(p)


def _chunks(api: BatchAPI, calls: list[Call]) -> list[list[Call]]:
    """Split one model's calls into batches within the provider's request and size limits."""
    out: list[list[Call]] = [[]]
    size = 0
    for c in calls:
        n = len(repr(c.messages).encode()) + 512  # rough request size; the limits are in the 100s of MB
        if out[-1] and (len(out[-1]) >= api.max_requests or size + n > api.max_bytes):
            out.append([])
            size = 0
        out[-1].append(c)
        size += n
    return [chunk for chunk in out if chunk]


def _planned_row(runner: Runner, call: Call) -> dict[str, Any]:
    rec = runner.record(call, output=None, error=None, started=now(), latency_ms=None, input_tokens=None,
                         output_tokens=None, cost=None, replayed_from=None)
    row = dataclasses.asdict(rec)
    for k in ("outcome", "output", "error", "finished_at"):
        row.pop(k)
    hatch = call.escape_hatch
    price = price_of(call.model)  # kept: a later session may not know a price set with lab.pricing.set_price
    return {"record": row, "escape_hatch": dataclasses.asdict(hatch) if hatch else None,
            "price": dataclasses.asdict(price) if price else None}


def estimate_cost(exp: Experiment) -> float | None:
    """Upper estimate of an experiment's cost at batch prices (None when a model has no known price):
    about two characters a token for the input and every call using its full ``max_tokens``."""
    total = 0.0
    for c in exp.plan():
        price = price_of(c.model)
        if price is None:
            return None
        chars = sum(len(m["content"]) for m in c.messages)
        total += price.cost(chars // 2 + 8 * len(c.messages) + 16, int(c.params.get("max_tokens") or 1024),
                            batch=True) or 0.0
    return total


def submit(exp: Experiment, *, provider_options: dict[str, dict[str, Any]] | None = None) -> BatchRun:
    """Submit every planned call of ``exp`` as provider batches (one or more per model) and record
    them in the experiment's log. Returns at once; results arrive through :func:`poll`.

    Works for ``anthropic:`` and ``openai:`` models (keys from the environment). Everything is
    checked before the first batch is sent: models, keys, and ``budget_usd`` against an upper
    estimate at batch prices. ``resume=True`` submits only the calls the experiment has not yet
    finished. ``provider_options`` (or the experiment's own) may set ``base_url``; it is kept in
    the log so a later :func:`poll` talks to the same server.
    Raises :class:`BatchError` while batches of this experiment are still running.
    """
    log = exp.log
    options = {**exp.provider_options, **(provider_options or {})}
    existing = log.batches(exp.id)
    if len(existing) and existing["ingested_at"].isna().any():
        raise BatchError(f"experiment {exp.id!r} already has batches in flight; poll them with "
                         f"lab.batch.poll({exp.id!r}) or cancel them with lab.batch.cancel({exp.id!r})")
    calls = exp.plan()
    skipped = 0
    if exp.resume:
        done = log.finished_keys(exp.id)
        todo = [c for c in calls if c.resume_key not in done]
        skipped, calls = len(calls) - len(todo), todo
    if not calls:
        raise BatchError(f"experiment {exp.id!r}: every planned call has already finished; nothing to submit")
    apis = {m: batch_api(m, **options.get(m, {})) for m in exp.models}  # checks models and keys
    try:
        if exp.budget_usd is not None:
            est = estimate_cost(exp)
            if est is None or est > exp.budget_usd:
                raise BudgetExceeded(
                    f"budget ${exp.budget_usd:.4f}: this batch could cost up to ${est or float('nan'):.4f} at batch "
                    "prices; raise budget_usd, or plan fewer calls")
        exp.register(mode="batch")
        runner = Runner(log, exp.id)
        for model, api in apis.items():
            mine = [c for c in calls if c.model == model]
            for chunk in _chunks(api, mine):
                requests = [BatchRequest(c.run_id, c.messages, c.params) for c in chunk]
                state = api.create(requests, metadata={"experiment_id": exp.id[:512]})
                log.add_batch(exp.id, provider=api.provider, model=model, batch_id=state.batch_id,
                              base_url=_safe_url(options.get(model, {}).get("base_url")), state=state.state,
                              counts=state.counts, requests={c.run_id: _planned_row(runner, c) for c in chunk})
                log.add_event(exp.id, "batch_submitted", provider=api.provider, model=model,
                              batch_id=state.batch_id, requests=len(chunk), skipped=skipped)
    finally:
        for api in apis.values():
            api.close()
    return BatchRun(exp.id, log, log.batches(exp.id))


def _row_from(planned: dict[str, Any], result: BatchResult | None, missing_reason: str) -> RunRecord:
    rec = dict(planned["record"])
    hatch = EscapeHatch(**planned["escape_hatch"]) if planned["escape_hatch"] else None
    if result is None or result.completion is None:
        error = result.error if result is not None else missing_reason
        return RunRecord(**rec, outcome="error", output=None, error=error)
    comp = result.completion
    price = Price(**planned["price"]) if planned.get("price") else price_of(rec["model"])
    cost = price.cost(comp.input_tokens, comp.output_tokens, batch=True) if price else None
    outcome = "escaped" if hatch is not None and hatch.detect(comp.text) else "answered"
    rec.update(input_tokens=comp.input_tokens, output_tokens=comp.output_tokens, cost_usd=cost,
               finish_reason=comp.finish_reason)
    return RunRecord(**rec, outcome=outcome, output=comp.text, error=None)


def _write_new(log: RunLog, recs: list[RunRecord]) -> int:
    """Append the rows whose run id is not yet in the log. Another process polling the same batch
    may win a race; then the unique run id refuses the duplicate and we write only what is left."""
    for _ in range(3):
        present = log.run_ids_present(r.id for r in recs)
        todo = [r for r in recs if r.id not in present]
        if not todo:
            return 0
        try:
            log.add_runs(todo)
            return len(todo)
        except sqlite3.IntegrityError:
            continue
    raise BatchError(f"{log.path}: could not write batch results (run ids kept colliding)")


def _ingest(log: RunLog, api: BatchAPI, row: Any, state: BatchState) -> int:
    planned = log.batch_requests(row.batch_id)
    present = log.run_ids_present(planned)
    if len(present) == len(planned):
        return 0
    if state.reason:
        missing = f"failed: {api.model}: the batch failed: {state.reason}"
    else:
        missing = f"missing: {api.model}: batch {row.batch_id} ended ({state.state}) with no result for this request"
    written = 0
    seen: set[str] = set()
    pending: list[RunRecord] = []
    results = api.results(row.batch_id) if state.reason is None else iter(())
    for res in results:
        if res.custom_id not in planned or res.custom_id in present or res.custom_id in seen:
            continue  # not ours, or already a row
        seen.add(res.custom_id)
        pending.append(_row_from(planned[res.custom_id], res, missing))
        if len(pending) >= _CHUNK:
            written += _write_new(log, pending)
            pending = []
    done = present | seen
    pending += [_row_from(p, None, missing) for cid, p in planned.items() if cid not in done]
    for i in range(0, len(pending), _CHUNK):
        written += _write_new(log, pending[i:i + _CHUNK])
    return written


def poll(experiment_id: str, *, log: RunLog | str | Path | None = None, wait: bool = False,
         interval_s: float = 60.0, timeout_s: float | None = None,
         provider_options: dict[str, dict[str, Any]] | None = None) -> BatchRun:
    """Check every batch of an experiment and ingest the ones that have ended as run rows.

    Needs nothing but the experiment id and the log (``$PROMPTLAB_LOG`` by default): a restarted
    kernel or another machine with the same log picks up where the submitting session left off.
    Safe to call any number of times. ``wait=True`` polls every ``interval_s`` seconds until every
    batch is done (or ``timeout_s`` passes, then returns what it has). ``provider_options``
    (model -> options) overrides, e.g., the ``base_url`` recorded at submission.
    """
    log = _open(log)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    ingested = 0
    while True:
        batches = log.batches(experiment_id)
        if batches.empty:
            raise BatchError(f"no batches for experiment {experiment_id!r} in {log.path}; submit one with "
                             "lab.batch.submit(exp) or `python -m lab batch submit`")
        for row in batches[batches["ingested_at"].isna()].itertuples():
            ingested += _poll_one(log, row, provider_options or {})
        run = BatchRun(experiment_id, log, log.batches(experiment_id), ingested)
        if run.done or not wait or (deadline is not None and time.monotonic() >= deadline):
            return run
        time.sleep(interval_s if deadline is None else max(0.0, min(interval_s, deadline - time.monotonic())))


def _api_for(row: Any, provider_options: dict[str, dict[str, Any]]) -> BatchAPI:
    options = dict(provider_options.get(row.model, {}))
    if row.base_url and "base_url" not in options:
        options["base_url"] = row.base_url
    return batch_api(row.model, **options)


def _poll_one(log: RunLog, row: Any, provider_options: dict[str, dict[str, Any]]) -> int:
    api = _api_for(row, provider_options)
    try:
        state = api.retrieve(row.batch_id)
        if state.state != row.state:
            log.add_event(row.experiment_id, "batch_state", batch_id=row.batch_id, state=state.state,
                          counts=state.counts)
        if not state.ended:
            log.update_batch(row.provider, row.batch_id, state=state.state, counts=state.counts)
            return 0
        written = _ingest(log, api, row, state)
        log.update_batch(row.provider, row.batch_id, state=state.state, counts=state.counts, ingested=True)
        log.add_event(row.experiment_id, "batch_ingested", batch_id=row.batch_id, rows=written,
                      state=state.state)
        return written
    finally:
        api.close()


def cancel(experiment_id: str, *, log: RunLog | str | Path | None = None,
           provider_options: dict[str, dict[str, Any]] | None = None) -> BatchRun:
    """Ask the provider to cancel every batch of an experiment that has not ended. Requests already
    answered keep their results; the rest end as ``canceled``. Poll afterwards to ingest both."""
    log = _open(log)
    batches = log.batches(experiment_id)
    if batches.empty:
        raise BatchError(f"no batches for experiment {experiment_id!r} in {log.path}")
    for row in batches[batches["ingested_at"].isna()].itertuples():
        api = _api_for(row, provider_options or {})
        try:
            state = api.retrieve(row.batch_id)
            if not state.ended:
                state = api.cancel(row.batch_id)
        finally:
            api.close()
        log.update_batch(row.provider, row.batch_id, state=state.state, counts=state.counts)
        log.add_event(experiment_id, "batch_cancel", batch_id=row.batch_id, state=state.state)
    return BatchRun(experiment_id, log, log.batches(experiment_id))


def status(experiment_id: str, *, log: RunLog | str | Path | None = None) -> BatchRun:
    """What the log knows about an experiment's batches, without asking the provider."""
    log = _open(log)
    return BatchRun(experiment_id, log, log.batches(experiment_id))


def suggest(planned: Experiment | Plan | PowerEstimate, model: str | list[str] | None = None) -> str:
    """One line of advice on how to run a planned experiment: live, or as a provider batch.

    Give an :class:`Experiment` (its planned calls and an upper cost estimate at batch prices), or
    a :class:`lab.stats.Plan` from ``lab.stats.plan(pilot, ...)`` (or a :class:`lab.stats.PowerEstimate`) with the
    model(s) the full run will use. From about ``BATCH_SUGGESTED_CALLS`` calls on an ``anthropic:``
    or ``openai:`` model it suggests batch mode (half price, results within 24 hours); on other
    models it suggests a self-hosted OpenAI-compatible server with more concurrency.
    """
    if isinstance(planned, Experiment):
        calls, models = len(planned.plan()), planned.models
        batch_cost = estimate_cost(planned)
        live_cost = None if batch_cost is None else batch_cost * 2
        cost_word = "up to"
    else:
        calls, batch_cost, live_cost = planned.calls_needed, planned.batch_cost_usd, planned.cost_usd
        models = [model] if isinstance(model, str) else list(model or [])
        cost_word = "about"
    batchable = bool(models) and all(has_batch_api(m) for m in models)
    if calls < BATCH_SUGGESTED_CALLS:
        return (f"{calls:,} calls: run them live (exp.run()); batch mode pays off from about "
                f"{BATCH_SUGGESTED_CALLS:,} calls, since its results can take up to 24 hours.")
    if batchable:
        cost = ("" if batch_cost is None else
                f", {cost_word} ${batch_cost:,.2f} at batch prices instead of ${live_cost:,.2f} live")
        return (f"{calls:,} calls: submit them as a provider batch (lab.batch.submit(exp), or python -m lab "
                f"batch submit ...): half price, results within 24 hours{cost}.")
    if not models:
        return (f"{calls:,} calls: large enough for batch mode on anthropic: or openai: models (half price, "
                "results within 24 hours), or a self-hosted OpenAI-compatible server with concurrency=16 or more.")
    return (f"{calls:,} calls on {', '.join(models)}: this model has no batch API; serve it with vLLM or "
            "llama.cpp behind openai-compatible:<url>#<model> and raise concurrency (16-64 for vLLM).")
