"""Batch mode through the official SDKs against loopback Message Batches and OpenAI Batch endpoints:
submit, poll from a fresh process by experiment id, ingest rows matched by custom id, partial
failures and expired or canceled requests as error rows, batch prices, idempotent polling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import lab
from lab import pricing
from lab.errors import BatchError, BudgetExceeded, ModelSpecError
from lab.providers.batch_adapters import AnthropicBatches
from tests.loopback import AnthropicServer, OpenAIServer
from tests.loopback._batches import BatchPlan

ROOT = Path(__file__).resolve().parents[1]
PROMPT = """\
task: t
escape_hatch: UNSURE
params: {max_tokens: 16, temperature: 0}
variants:
  a:
    system: "Answer in one word."
    user: "A: {{ text }}"
  b:
    user: "B: {{ text }}"
"""
INPUTS = "- {id: r1, text: one}\n- {id: r2, text: two, tags: [edge]}\n- {id: r3, text: three}\n"
CLAUDE = "anthropic:claude-loopback-1"
GPT = "openai:gpt-loopback"


def reply(request: dict) -> str:
    """Echo the user's text, except 'three', which takes the way out."""
    text = request["messages"][-1]["content"]
    return "UNSURE" if "three" in text else f"seen {text}"


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key")
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key")
    # prices for the loopback models, for this test only
    monkeypatch.setitem(pricing._PRICES, "anthropic:claude-loopback", pricing.Price(1.0, 5.0))
    monkeypatch.setitem(pricing._PRICES, "openai:gpt-loopback", pricing.Price(2.0, 8.0))


@pytest.fixture
def claude_srv(keys):
    with AnthropicServer(responder=reply) as srv:
        yield srv


@pytest.fixture
def gpt_srv(keys):
    with OpenAIServer(responder=reply) as srv:
        yield srv


@pytest.fixture
def files(write):
    return write("p.yaml", PROMPT), write("in.yaml", INPUTS)


def plan(files, srv, model, run_log, **kw):
    prompt, inputs = files
    return lab.experiment(prompt, inputs, model=model, log=run_log, seed=3,
                          provider_options={model: {"base_url": srv.base_url, "max_retries": 0}}, **kw)


def poll_in_fresh_process(experiment_id: str, log_path: Path) -> subprocess.CompletedProcess:
    """A later session: nothing but the experiment id and the log."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab", "--log", str(log_path), "batch", "poll", experiment_id],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_anthropic_batch_rows_arrive_in_a_later_process_matched_by_custom_id(files, claude_srv, run_log):
    exp = plan(files, claude_srv, CLAUDE, run_log)
    submitted = lab.batch.submit(exp)
    assert not submitted.done
    assert list(submitted.batches.state) == ["in_progress"]
    assert run_log.runs(experiment=exp.id).empty  # nothing lands before the batch ends

    done = poll_in_fresh_process(exp.id, run_log.path)
    assert done.returncode == 0, done.stderr
    assert "every batch is in the log" in done.stdout

    df = lab.log(run_log.path).runs(experiment=exp.id)
    planned = {c.run_id: c for c in exp.plan()}
    assert sorted(df.id) == sorted(planned)  # one row per planned call, under its own run id
    for row in df.itertuples():
        call = planned[row.id]
        assert (row.variant, row.input_id, row.repeat) == (call.variant.name, call.row.id, call.repeat)
        assert row.messages == call.messages
        expected = "UNSURE" if call.row.id == "r3" else f"seen {call.messages[-1]['content']}"
        assert row.output == expected
    assert set(df[df.input_id == "r3"].outcome) == {"escaped"}
    assert set(df[df.input_id != "r3"].outcome) == {"answered"}
    assert set(df.finish_reason) == {"stop"}  # the batch's end_turn, in the lab's words
    # half the list price: $1 / $5 per million tokens, halved
    for row in df.itertuples():
        assert row.cost_usd == pytest.approx((row.input_tokens * 1.0 + row.output_tokens * 5.0) / 1e6 / 2)
    assert list(lab.log(run_log.path).experiments().id) == [exp.id]


def test_batch_rows_have_the_columns_and_request_a_live_run_has(files, claude_srv, run_log, tmp_path):
    seen: list[dict] = []
    claude_srv.responder = lambda req: seen.append(req) or reply(req)
    prompt, inputs = files
    live = lab.experiment(prompt, inputs, model=CLAUDE, log=run_log, seed=3, variants=["a"], tags=["edge"],
                          provider_options={CLAUDE: {"base_url": claude_srv.base_url}}).run()
    exp = plan(files, claude_srv, CLAUDE, run_log, variants=["a"], tags=["edge"])
    lab.batch.submit(exp)
    lab.batch.poll(exp.id, log=run_log)
    assert len(seen) == 2
    assert seen[0] == seen[1]  # the batch sent exactly what the live provider sent
    a, b = live.df.iloc[0], run_log.runs(experiment=exp.id).iloc[0]
    assert list(a.index) == list(b.index)
    same = ["variant", "prompt_version", "input_id", "input_tags", "input_vars", "model", "params", "seed", "repeat",
            "messages", "output", "outcome", "input_tokens", "output_tokens", "cache_key", "role", "turn"]
    assert a[same].to_dict() == b[same].to_dict()
    assert b.cost_usd == pytest.approx(a.cost_usd / 2)


def test_partial_failures_and_expired_requests_become_error_rows_with_reasons(files, claude_srv, run_log):
    # six requests over 1.5 s; the window closes at 1.0 s (the first poll comes well before, even under
    # load); the second one fails
    claude_srv.batches.plan = BatchPlan(seconds=1.5, expire_after=1.0, outcomes=["ok", "error"])
    exp = plan(files, claude_srv, CLAUDE, run_log)
    lab.batch.submit(exp)
    first = lab.batch.poll(exp.id, log=run_log)
    assert not first.done and first.ingested == 0
    run = lab.batch.poll(exp.id, log=run_log, wait=True, interval_s=0.05, timeout_s=10)
    assert run.done and run.ingested == 6
    df = run.df.set_index("id")
    order = [c.run_id for c in exp.plan()]
    outcomes = list(df.loc[order].outcome)
    assert outcomes[:4] == ["answered", "error", "answered", "answered"]
    assert outcomes[4:] == ["error", "error"]
    errors = list(df.loc[order].error)
    assert errors[1].startswith("bad_request: anthropic:claude-loopback-1: batch request errored: "
                                "invalid_request_error: injected batch request failure")
    assert errors[4] == errors[5] == "expired: the batch's 24-hour window ended before this request ran"
    assert df.loc[order[1]].cost_usd is None or df.loc[order[1]].cost_usd != df.loc[order[1]].cost_usd  # NaN
    b = run.batches.iloc[0]
    assert b.state == "ended"
    assert b.counts == {"processing": 0, "succeeded": 3, "errored": 1, "canceled": 0, "expired": 2}
    kinds = list(run_log.events(exp.id).kind)
    assert kinds == ["batch_submitted", "batch_state", "batch_ingested"]


def test_openai_batch_goes_through_its_states_and_reads_output_and_error_files(files, gpt_srv, run_log):
    # finalizing lasts long enough that a poll every 0.03 s sees it even on a loaded 2-core machine
    gpt_srv.batches.plan = BatchPlan(seconds=0.3, validate_seconds=0.1, finalize_seconds=0.6,
                                     outcomes=["ok", "ok", "ok", "error"])
    exp = plan(files, gpt_srv, GPT, run_log)
    assert lab.batch.submit(exp).batches.state.tolist() == ["validating"]
    run = lab.batch.poll(exp.id, log=run_log, wait=True, interval_s=0.03, timeout_s=10)
    assert run.done
    states = [e["state"] for e in run_log.events(exp.id).detail if "state" in e]
    assert states[0] == "in_progress" and "finalizing" in states and states[-1] == "completed"
    df = run.df.set_index("id").loc[[c.run_id for c in exp.plan()]]
    assert list(df.outcome) == ["answered", "answered", "answered", "error", "escaped", "escaped"]
    assert df.error.iloc[3] == ("bad_request: openai:gpt-loopback: batch request status 400: "
                                "injected batch request failure")
    ok = df[df.outcome != "error"]
    assert list(ok.cost_usd) == pytest.approx(list((ok.input_tokens * 2.0 + ok.output_tokens * 8.0) / 1e6 / 2))
    assert set(ok.finish_reason) == {"stop"} and pd.isna(df.finish_reason.iloc[3])
    assert run.batches.counts.iloc[0] == {"completed": 5, "failed": 1, "total": 6}


def test_openai_expired_batch_keeps_the_answers_it_has(files, gpt_srv, run_log):
    gpt_srv.batches.plan = BatchPlan(seconds=0.3, expire_after=0.1)
    exp = plan(files, gpt_srv, GPT, run_log)
    lab.batch.submit(exp)
    run = lab.batch.poll(exp.id, log=run_log, wait=True, interval_s=0.05, timeout_s=10)
    assert run.batches.state.tolist() == ["expired"]
    df = run.df.set_index("id").loc[[c.run_id for c in exp.plan()]]
    assert list(df.outcome)[:2] == ["answered", "answered"]
    assert set(df.error.iloc[2:]) == {"expired: openai:gpt-loopback: batch request batch_expired: "
                                      "This request could not be executed before the completion window expired."}


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_cancel_keeps_finished_answers_and_marks_the_rest_canceled(files, claude_srv, gpt_srv, run_log, model):
    srv = claude_srv if model == CLAUDE else gpt_srv
    srv.batches.plan = BatchPlan(seconds=60, cancel_seconds=0.1)
    exp = plan(files, srv, model, run_log)
    lab.batch.submit(exp)
    canceled = lab.batch.cancel(exp.id, log=run_log)
    assert canceled.batches.state.tolist() == ["canceling" if model == CLAUDE else "cancelling"]
    run = lab.batch.poll(exp.id, log=run_log, wait=True, interval_s=0.05, timeout_s=10)
    assert run.batches.state.tolist() == ["ended" if model == CLAUDE else "cancelled"]
    assert len(run.df) == 6 and set(run.df.outcome) == {"error"}
    assert all(e.startswith("canceled: ") for e in run.df.error)


def test_polling_again_or_after_a_crash_never_duplicates_rows(files, claude_srv, run_log, monkeypatch):
    exp = plan(files, claude_srv, CLAUDE, run_log)
    lab.batch.submit(exp)
    # the process dies after writing the rows but before noting the batch as ingested
    real = lab.store.RunLog.update_batch

    def crash(self, *a, ingested=False, **kw):
        if ingested:
            raise KeyboardInterrupt
        return real(self, *a, ingested=ingested, **kw)

    monkeypatch.setattr(lab.store.RunLog, "update_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        lab.batch.poll(exp.id, log=run_log)
    monkeypatch.setattr(lab.store.RunLog, "update_batch", real)
    assert len(run_log.runs(experiment=exp.id)) == 6
    again = lab.batch.poll(exp.id, log=lab.log(run_log.path))  # a new RunLog on the same file
    assert again.done and again.ingested == 0
    assert lab.batch.poll(exp.id, log=run_log).ingested == 0
    assert len(run_log.runs(experiment=exp.id)) == 6


def test_large_runs_are_split_into_several_batches(files, claude_srv, run_log, monkeypatch):
    monkeypatch.setattr(AnthropicBatches, "max_requests", 4)
    exp = plan(files, claude_srv, CLAUDE, run_log, repeats=2)  # 12 calls
    run = lab.batch.submit(exp)
    assert run.batches.request_count.tolist() == [4, 4, 4]
    assert lab.batch.poll(exp.id, log=run_log).ingested == 12
    assert sorted(run_log.runs(experiment=exp.id).id) == sorted(c.run_id for c in exp.plan())


def test_submit_refuses_what_it_cannot_do_before_sending_anything(files, claude_srv, run_log, monkeypatch):
    prompt, inputs = files
    with pytest.raises(ModelSpecError, match="has no batch API"):
        lab.batch.submit(lab.experiment(prompt, inputs, model="local:smollm2", log=run_log))
    with pytest.raises(BudgetExceeded, match="at batch prices"):
        lab.batch.submit(plan(files, claude_srv, CLAUDE, run_log, budget_usd=1e-6))
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ModelSpecError, match="ANTHROPIC_API_KEY"):
        lab.batch.submit(plan(files, claude_srv, CLAUDE, run_log))
    assert claude_srv.batches.book.batches == {}
    assert run_log.batches().empty
    with pytest.raises(BatchError, match="no batches for experiment 'nope'"):
        lab.batch.poll("nope", log=run_log)


def test_an_experiment_with_batches_in_flight_cannot_be_submitted_twice_but_can_resume(files, claude_srv, run_log):
    claude_srv.batches.plan = BatchPlan(seconds=0.1, outcomes=["error"])
    exp = plan(files, claude_srv, CLAUDE, run_log)
    lab.batch.submit(exp)
    with pytest.raises(BatchError, match="already has batches in flight"):
        lab.batch.submit(plan(files, claude_srv, CLAUDE, run_log, id=exp.id, resume=True))
    lab.batch.poll(exp.id, log=run_log, wait=True, interval_s=0.05, timeout_s=10)
    claude_srv.batches.plan = BatchPlan()
    again = lab.batch.submit(plan(files, claude_srv, CLAUDE, run_log, id=exp.id, resume=True))
    assert again.batches.request_count.tolist() == [6, 1]  # only the failed call goes again
    lab.batch.poll(exp.id, log=run_log)
    df = run_log.runs(experiment=exp.id)
    assert len(df) == 7 and (df.outcome != "error").sum() == 6


def test_cli_submits_and_polls(files, claude_srv, run_log, capsys, monkeypatch):
    from lab.cli import main

    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude_srv.base_url)  # the SDK's own variable
    prompt, inputs = files
    assert main(["--log", str(run_log.path), "batch", "submit", str(prompt), "-i", str(inputs), "-m", CLAUDE,
                 "--id", "cli-batch"]) == 0
    assert "6 calls submitted in 1 batch(es)" in capsys.readouterr().out
    assert main(["--log", str(run_log.path), "batch", "poll", "cli-batch", "--wait", "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "6 row(s) ingested now; every batch is in the log." in out
    assert len(run_log.runs(experiment="cli-batch")) == 6


def test_suggest_batch_mode_for_large_runs_with_the_cost_at_batch_prices(files, claude_srv, run_log):
    from lab.stats import PowerEstimate

    small = plan(files, claude_srv, CLAUDE, run_log)
    assert lab.batch.suggest(small).startswith("6 calls: run them live")
    big = plan(files, claude_srv, CLAUDE, run_log, repeats=200)  # 1,200 calls
    advice = lab.batch.suggest(big)
    est = lab.batch.estimate_cost(big)
    assert advice.startswith("1,200 calls: submit them as a provider batch")
    assert f"up to ${est:,.2f} at batch prices instead of ${2 * est:,.2f} live" in advice
    power = PowerEstimate(difference=0.1, power=0.8, confidence=0.95, sd_of_differences=0.5, pairs_needed=2000,
                          inputs=100, repeats_needed=20, calls_needed=4000, cost_usd=12.0, batch_cost_usd=6.0,
                          note="")
    assert "about $6.00 at batch prices instead of $12.00 live" in lab.batch.suggest(power, CLAUDE)
    assert "has no batch API" in lab.batch.suggest(power, "local:smollm2")


def test_an_openai_batch_that_fails_validation_turns_every_call_into_an_error_row(files, gpt_srv, run_log,
                                                                                   monkeypatch):
    from lab.providers.batch_adapters import OpenAIBatches

    real = OpenAIBatches.request_body
    models = iter(["gpt-loopback", "gpt-loopback-mini"] * 3)
    monkeypatch.setattr(OpenAIBatches, "request_body", lambda self, m, p: {**real(self, m, p), "model": next(models)})
    exp = plan(files, gpt_srv, GPT, run_log)
    lab.batch.submit(exp)
    run = lab.batch.poll(exp.id, log=run_log)
    assert run.done and run.batches.state.tolist() == ["failed"]
    assert len(run.df) == 6 and set(run.df.error) == {
        "failed: openai:gpt-loopback: the batch failed: mismatched_model: all requests in a batch must use one model"}


def test_a_key_pasted_into_an_input_never_reaches_the_log_through_a_batch(write, claude_srv, run_log, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "abcd1234secretvalue")
    prompt = write("p.yaml", PROMPT)
    exp = lab.experiment(prompt, [{"id": "x", "text": "my key is abcd1234secretvalue"}], model=CLAUDE, log=run_log,
                         provider_options={CLAUDE: {"base_url": claude_srv.base_url}})
    lab.batch.submit(exp)
    lab.batch.poll(exp.id, log=run_log)
    run_log.close()
    assert b"abcd1234secretvalue" not in b"".join(p.read_bytes() for p in run_log.path.parent.glob("runs.db*"))
