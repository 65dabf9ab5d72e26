"""Why an answer ended: every provider's finish reason is logged in one vocabulary (``length`` when
it stopped at max tokens), old logs and recovery files without it still open, and the grid, the
workbench cards and ``python -m lab show --outputs`` say "stopped at max tokens"."""

from __future__ import annotations

import json

import pytest

import lab
from lab.cli import main
from lab.grid import results_grid
from lab.migrations import migrate
from lab.providers import Completion
from lab.store import RunRecord
from lab.store.backend import connect
from lab.store.record import log_target
from lab.widgets import Workbench
from tests.loopback import AnthropicServer, OpenAIServer

PROMPT = """\
task: t
params: {temperature: 0, max_tokens: 3}
variants:
  a:
    user: "Say {{ word }} and then say a good many more words than three"
"""
ROWS = [{"id": "r1", "word": "hello"}]


@pytest.fixture
def prompt(write):
    return write("p.yaml", PROMPT)


@pytest.mark.parametrize("said, stored", [
    ("length", "length"), ("max_tokens", "length"), ("end_turn", "stop"), ("stop_sequence", "stop"),
    ("stop", "stop"), ("content_filter", "content_filter"), ("tool_use", "tool_calls"), (None, None), ("", None),
    ("pause_turn", "pause_turn"),  # a word the lab does not know is kept, not lost
])
def test_each_providers_word_for_why_an_answer_ended_is_stored_in_one_vocabulary(said, stored):
    assert Completion("x", finish_reason=said).finish_reason == stored


def test_an_openai_compatible_answer_cut_at_max_tokens_is_logged_as_length_and_the_grid_says_so(prompt, run_log):
    with OpenAIServer() as srv:
        model = f"openai-compatible:{srv.base_url}#gpt-loopback"
        cut = lab.experiment(prompt, ROWS, model=model, log=run_log).run()
        whole = lab.experiment(prompt, ROWS, model=model, log=run_log, params={"max_tokens": 64}).run()
    assert cut.df.finish_reason.tolist() == ["length"] and whole.df.finish_reason.tolist() == ["stop"]
    grid = results_grid(run_log.runs(experiment=cut.experiment_id)).html
    assert "stopped at max tokens" in grid and "finish reason length" in grid
    assert "stopped at max tokens" not in results_grid(run_log.runs(experiment=whole.experiment_id)).html


def test_anthropic_max_tokens_is_logged_as_length_and_end_turn_as_stop(prompt, run_log, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-0123456789")
    with AnthropicServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)
        model = "anthropic:claude-loopback-1"
        cut = lab.experiment(prompt, ROWS, model=model, log=run_log).run()
        whole = lab.experiment(prompt, ROWS, model=model, log=run_log, params={"max_tokens": 64}).run()
    assert run_log.runs(experiment=cut.experiment_id).finish_reason.tolist() == ["length"]
    assert run_log.runs(experiment=whole.experiment_id).finish_reason.tolist() == ["stop"]


def test_a_replayed_call_keeps_the_finish_reason_of_the_call_it_replays(prompt, run_log):
    first = lab.experiment(prompt, ROWS, model="scripted:rambles", log=run_log).run()
    again = lab.experiment(prompt, ROWS, model="scripted:rambles", log=run_log, replay=True).run()
    assert again.df.replayed_from.tolist() == first.df.id.tolist()
    assert again.df.finish_reason.tolist() == ["length"]


def test_show_outputs_marks_an_answer_that_stopped_at_max_tokens(prompt, run_log, capsys):
    runs = lab.experiment(prompt, ROWS + [{"id": "r2", "word": "hi"}], model="scripted:rambles", log=run_log,
                          params={"max_tokens": 12}).run()
    short = lab.experiment(prompt, ROWS, model="scripted:rambles", log=run_log).run()
    capsys.readouterr()
    assert main(["--log", str(run_log.path), "show", short.experiment_id, "--outputs"]) == 0
    said = capsys.readouterr().out
    assert "[a | input r1 | repeat 0 | answered | stopped at max tokens]" in said
    assert "1 of 1 answers stopped at max tokens and may be cut short" in said  # the findings' caveat
    assert main(["--log", str(run_log.path), "show", runs.experiment_id, "--outputs"]) == 0
    assert "stopped at max tokens" not in capsys.readouterr().out


def test_a_workbench_card_says_stopped_at_max_tokens(run_log):
    wb = Workbench("prompts/sentiment.yaml", "prompts/sentiment_inputs.yaml", model="scripted:rambles",
                   log=run_log)
    wb.variant.value, wb.input.value, wb.max_tokens.value = "honest", "love-it", 3
    wb.run_button.click()
    wb.wait(30)
    assert run_log.runs(experiment=wb.experiment_id).finish_reason.tolist() == ["length"]
    assert "stopped at max tokens" in wb.cards[0].html.value


def test_an_old_log_without_the_column_opens_and_its_rows_read_with_no_finish_reason(backend):
    db = connect(log_target(backend), 5.0)
    migrate(db, upto="m007_summary_index")  # a log written before finish reasons were kept
    db.begin_write()
    db.execute("INSERT INTO runs (id, experiment_id, variant, input_id, model, messages, output, outcome, finished_at, seq) "
               "VALUES ('r-old', 'e-old', 'v', 'i1', 'scripted:echo', '[]', 'kept', 'answered', "
               "'2026-01-01T00:00:00+00:00', 1)")
    db.commit()
    db.close()
    log = lab.log(backend)
    log.add_run(RunRecord(experiment_id="e-old", variant="v", input_id="i2", model="scripted:echo", messages=[],
                          outcome="answered", output="new", finish_reason="length"))
    df = log.runs(experiment="e-old")
    assert df.output.tolist() == ["kept", "new"]
    assert df.finish_reason.isna().tolist() == [True, False] and df.finish_reason.iloc[1] == "length"
    assert "stopped at max tokens" in results_grid(df).html


def test_a_recovery_row_kept_before_finish_reasons_existed_is_ingested(backend):
    log = lab.log(backend)
    row = {"id": "r-kept", "experiment_id": "e-rec", "model": "scripted:echo", "messages": "[]",
           "output": "kept", "outcome": "answered", "finished_at": "2026-01-01T00:00:00+00:00"}
    log.recovery_path.write_text(json.dumps({"table": "runs", "columns": list(row), "values": list(row.values()),
                                             "ignore": False}) + "\n")
    log.close()
    df = lab.log(backend).runs(experiment="e-rec")
    assert df.output.tolist() == ["kept"] and df.finish_reason.isna().all()


@pytest.mark.slow
def test_the_local_model_stopped_at_two_tokens_is_logged_as_length(prompt, run_log):
    runs = lab.experiment(prompt, ROWS, model="local:smollm2", log=run_log, params={"max_tokens": 2}).run()
    assert runs.df.finish_reason.tolist() == ["length"] and runs.df.output_tokens.tolist() == [2]
