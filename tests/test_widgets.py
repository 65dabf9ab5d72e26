"""The workbench and the comparison view, driven from Python as a user drives them in JupyterLab:
set ``.value``, ``.click()``, then check what the log holds and what the widgets show."""

from __future__ import annotations

import re
import threading
import time

import pytest

import lab
from lab.widgets import Workbench, compare_view
from lab.widgets.compare import side_by_side
from lab.widgets.workbench import ErrorCard, GroupHeading, SampleCard
from tests import scripted

PROMPT = "prompts/sentiment.yaml"
INPUTS = "prompts/sentiment_inputs.yaml"


@pytest.fixture
def wb(run_log) -> Workbench:
    return lab.workbench(PROMPT, INPUTS, model="scripted:seeded", log=run_log)


def click(wb: Workbench, button) -> None:
    button.click()
    wb.wait(30)


def test_run_logs_one_call_and_shows_it_as_a_sample(wb, run_log):
    wb.variant.value = "honest"
    wb.input.value = "recipe"
    click(wb, wb.run_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["variant"], row["input_id"], row["role"], row["turn"]) == ("honest", "recipe", "answer", 0)
    assert len(wb.cards) == 1 and row["id"] == wb.cards[0].record.id
    assert "done" in wb.status.value
    assert "Preheat the oven" in wb.context.value  # the whole context the model saw


def test_retry_adds_independent_samples_side_by_side_with_frequencies(wb, run_log):
    click(wb, wb.run_button)
    click(wb, wb.retry_button)
    click(wb, wb.retry_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    assert list(runs["repeat"]) == [0, 1, 2]
    assert runs["messages"].map(str).nunique() == 1  # the same call
    assert runs["seed"].nunique() == 3  # ... sampled afresh each time
    assert len(wb.cards) == 3 and len(wb.samples_box.children) == 3
    assert "/3</td>" in wb.frequencies.value


def test_escaped_outputs_are_marked(wb):
    wb.model.value = "scripted:unsure"
    click(wb, wb.run_button)
    assert wb.cards[0].record.outcome == "escaped"
    assert "ESCAPED" in wb.cards[0].html.value and 'data-outcome="escaped"' in wb.cards[0].html.value


def test_model_output_with_html_is_shown_as_text_never_live(wb):
    scripted.SCRIPTS["xss"] = lambda m, p: '<script>alert(1)</script><img src=x onerror="alert(2)">'
    wb.model.value = "scripted:xss"
    click(wb, wb.run_button)
    click(wb, wb.retry_button)
    shown = wb.cards[0].html.value + wb.frequencies.value
    assert "<script" not in shown and "<img" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in wb.cards[0].html.value


def test_follow_up_continues_the_conversation_and_reset_starts_a_clean_one(wb, run_log):
    click(wb, wb.run_button)
    wb.follow_text.value = "Are you sure?"
    click(wb, wb.follow_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    first, second = runs.iloc[0], runs.iloc[1]
    assert second["conversation_id"] == first["conversation_id"] and second["turn"] == 1
    assert second["parent_id"] == first["id"]
    assert [m["role"] for m in second["messages"]][-2:] == ["assistant", "user"]
    assert second["messages"][-1]["content"] == "Are you sure?"
    click(wb, wb.reset_button)
    assert wb.cards == [] and "reset" in wb.status.value
    click(wb, wb.run_button)
    third = run_log.runs(experiment=wb.experiment_id).iloc[2]
    assert third["conversation_id"] != first["conversation_id"] and third["turn"] == 0
    assert third["messages"] == first["messages"]


def test_self_critique_logs_each_rounds_critique_and_revision(wb, run_log):
    click(wb, wb.run_button)
    wb.rounds.value = 2
    click(wb, wb.critique_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    assert list(zip(runs["role"], runs["round"])) == [("answer", 0), ("critique", 1), ("revision", 1),
                                                      ("critique", 2), ("revision", 2)]
    assert runs.iloc[2]["parent_id"] == runs.iloc[1]["id"]
    assert "round 1" in wb.critique_view.value and "round 2" in wb.critique_view.value


def test_rating_is_stored_as_a_grade_row(wb, run_log):
    click(wb, wb.run_button)
    card = wb.cards[0]
    card.rate_button.click()  # no score yet: a readable message, no rating stored
    human = lambda: run_log.grades().query("grader.str.startswith('human:')", engine="python")  # noqa: E731
    assert "pick a score" in card.rated.value and human().empty
    card.score.value = 4
    card.note.value = "right, but terse"
    card.rate_button.click()
    g = human().iloc[0]
    assert (g["run_id"], g["grader"], g["score"]) == (card.record.id, "human:me", 4.0)
    assert g["detail"]["note"] == "right, but terse"


def test_a_blind_round_reveals_nothing_before_its_last_rating_then_one_reveal_shows_the_means_with_n(wb, run_log):
    wb.blind.value = True
    click(wb, wb.run_button)
    assert sorted(c.label for c in wb.cards) == ["sample A", "sample B"]
    assert set(run_log.runs(experiment=wb.experiment_id)["variant"]) == {"persona", "honest"}

    def nothing_tells():
        for c in wb.cards:
            for name in ("persona", "honest", "token", "version"):
                assert name not in c.html.value + c.rated.value, f"{name!r} shows on a blind card"
        assert "persona" not in wb.reveal_view.value and "honest" not in wb.reveal_view.value

    nothing_tells()
    first, second = wb.cards
    first.score.value = 2
    first.rate_button.click()
    nothing_tells()
    assert wb.reveal_button.layout.display == "none" and "1 sample" in wb.reveal_view.value
    second.score.value = 4
    second.rate_button.click()
    nothing_tells()  # every sample rated: still nothing until Reveal
    assert wb.reveal_button.layout.display is None
    wb.reveal_button.click()
    assert all(c.record.variant in c.html.value for c in wb.cards)
    shown = wb.reveal_view.value
    assert "n = 1" in shown and "2.0 / 5" in shown and "4.0 / 5" in shown
    human = run_log.grades().query("grader.str.startswith('human:')", engine="python")
    assert len(human) == 2 and all("rated blind" in d["note"] for d in human["detail"])
    first.score.value = 3  # a rating after the reveal is not blind
    first.rate_button.click()
    latest = run_log.grades().query("grader.str.startswith('human:')", engine="python").sort_values("seq").iloc[-1]
    assert "rated blind" not in ((latest["detail"] or {}).get("note") or "")


def test_editing_the_template_makes_a_new_logged_version_and_the_old_one_is_a_click_away(wb, run_log):
    wb.variant.value = "persona"
    old = wb.version.value
    wb.user.value = "Positive or negative? {{ text }}"
    wb.save_version.click()
    new = wb.version.value
    assert new != old and {old, new} <= {v for _, v in wb.version.options}
    assert new in set(run_log.prompt_versions(PROMPT)["version"])
    click(wb, wb.run_button)
    assert run_log.runs(experiment=wb.experiment_id).iloc[0]["prompt_version"] == new
    wb.version.value = old  # one click back
    assert wb.session.variant.version == old and "Classify the sentiment" in wb.user.value


def test_typed_input_fills_the_template_variable(wb, run_log):
    wb.input.value = "(typed input)"
    wb.typed.value = "Brilliant blender"
    click(wb, wb.run_button)
    row = run_log.runs(experiment=wb.experiment_id).iloc[0]
    assert row["input_vars"] == {"text": "Brilliant blender"} and row["input_tags"] == ["typed"]


def test_errors_show_as_a_readable_message_not_a_traceback(wb, run_log):
    wb.model.value = "nope:model"
    click(wb, wb.run_button)
    assert "error: unknown provider 'nope'" in wb.status.value.replace("&#x27;", "'")
    assert "Traceback" not in wb.status.value
    assert not wb.run_button.disabled
    wb.user.value = "{{ unclosed"
    wb.save_version.click()
    assert "template" in wb.status.value and "error" in wb.status.value


def test_a_failed_call_shows_its_reason_and_keeps_the_earlier_samples(wb, run_log):
    calls = []

    def dies_on_the_second_call(messages, params):
        calls.append(1)
        if len(calls) == 2:
            raise lab.ProviderError("local model worker died: signal 11 (SIGSEGV)", kind="crash")
        return "positive"

    scripted.SCRIPTS["dies-second"] = dies_on_the_second_call
    wb.model.value = "scripted:dies-second"
    click(wb, wb.run_button)
    click(wb, wb.retry_button)
    assert "error" in wb.status.value and "worker died: signal 11 (SIGSEGV)" in wb.status.value
    assert wb.progress.bar_style == "danger" and not wb.retry_button.disabled
    assert [c.record.outcome for c in wb.cards] == ["answered", "error"]
    assert "positive" in wb.cards[0].html.value and "SIGSEGV" in wb.cards[1].html.value
    click(wb, wb.retry_button)  # the next call works, and the earlier samples stay
    assert [c.record.outcome for c in wb.cards] == ["answered", "error", "answered"]
    assert "done" in wb.status.value
    assert list(run_log.runs(experiment=wb.experiment_id).outcome) == ["answered", "error", "answered"]


def test_input_set_runs_every_input_through_the_runner_with_progress(wb, run_log):
    click(wb, wb.run_set_button)
    assert len(run_log.runs(experiment=wb.experiment_id)) == 8
    assert wb.progress.value == wb.progress.max == 8


def test_a_slow_call_leaves_the_kernel_free_and_can_be_cancelled(wb, run_log):
    wb.session.provider_options = {"scripted:seeded": {"delay": 5.0}}
    wb.model.value = "scripted:seeded"
    t0 = time.perf_counter()
    wb.run_button.click()
    assert time.perf_counter() - t0 < 1.0  # the click returns at once: the call is in a worker thread
    assert wb.run_button.disabled and not wb.cancel_button.disabled
    deadline = time.time() + 5
    while wb.session._task is None and time.time() < deadline:
        time.sleep(0.01)
    wb.cancel_button.click()
    wb.wait(5)
    assert time.perf_counter() - t0 < 4.0
    assert "cancelled" in wb.status.value and not wb.run_button.disabled
    assert "promptlab-error" not in wb.status.value and wb.progress.bar_style != "danger"  # a cancel is no error
    assert not any(isinstance(c, ErrorCard) for c in wb.cards)
    assert run_log.runs(experiment=wb.experiment_id).empty
    assert not any(t.name.startswith("promptlab-run") and t.is_alive() for t in threading.enumerate())


@pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL
def test_compare_view_selects_experiments_variants_and_tags(run_log):
    exp = lab.experiment(PROMPT, inputs=INPUTS, model="scripted:seeded", repeats=2, seed=1, log=run_log)
    exp.run()
    view = compare_view(run_log, experiments=[exp.id])
    assert set(view.variants.options) == {"persona", "honest"}
    assert "unanswerable" in view.tags.options
    assert view.status.value == "32 calls selected"
    view.tags.value = ("unanswerable",)
    assert view.status.value == "8 calls selected"
    view.variants.value = ("honest",)
    assert set(view.selected_runs()["variant"]) == {"honest"}
    view.figure.value = "paired difference"
    assert "two variants" in view.status.value
    view.variants.value = ()
    assert len(view.plot.outputs) == 1 and "application/vnd.plotly.v1+json" in view.plot.outputs[0]["data"]


def test_blind_side_by_side_hides_variant_names(run_log):
    exp = lab.experiment(PROMPT, inputs=INPUTS, model="scripted:seeded", repeats=2, seed=1, log=run_log)
    exp.run()
    runs = run_log.runs(experiment=exp.id)
    shown = set(side_by_side(runs).columns.get_level_values(0))
    assert {"persona", "honest"} <= shown
    hidden = set(side_by_side(runs, blind=True).columns.get_level_values(0))
    assert {"variant A", "variant B"} <= hidden and not ({"persona", "honest"} & hidden)


def test_self_critique_stops_when_the_review_finds_nothing_to_fix(run_log):
    scripted.SCRIPTS["content"] = lambda m, p: "NO CHANGES" if "If nothing needs fixing" in m[-1]["content"] else "positive"
    wb = lab.workbench(PROMPT, INPUTS, model="scripted:content", log=run_log)
    click(wb, wb.run_button)
    wb.rounds.value = 3
    click(wb, wb.critique_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    assert list(zip(runs["role"], runs["round"])) == [("answer", 0), ("critique", 1)]
    assert "nothing to fix" in wb.critique_view.value


def test_retrying_a_follow_up_turn_logs_it_as_another_attempt_of_that_turn(wb, run_log):
    click(wb, wb.run_button)
    wb.follow_text.value = "Why?"
    click(wb, wb.follow_button)
    click(wb, wb.retry_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    assert list(zip(runs["turn"], runs["attempt"])) == [(0, 0), (1, 0), (1, 1)]
    assert runs.iloc[2]["parent_id"] == runs.iloc[1]["parent_id"] == runs.iloc[0]["id"]
    assert runs.iloc[2]["messages"] == runs.iloc[1]["messages"]


# ---- what a person sees: history, labels, blind, input sets, controls ------------------------------

def test_a_failed_call_adds_an_error_card_and_keeps_the_earlier_cards(wb, run_log):
    click(wb, wb.run_button)
    click(wb, wb.retry_button)
    earlier = [c.record.id for c in wb.cards]
    wb.model.value = "nope:model"  # refused before any call is made
    click(wb, wb.run_button)
    assert [c.record.id for c in wb.cards[:2]] == earlier
    assert len(wb.cards) == 3 and wb.cards[2].record is None
    assert "run failed" in wb.cards[2].html.value and "unknown provider" in wb.cards[2].html.value.replace("&#x27;", "'")
    assert 'data-outcome="error"' in wb.cards[2].html.value
    scripted.SCRIPTS["boom"] = lambda m, p: 1 / 0  # the provider fails: an error row, logged
    wb.model.value = "scripted:boom"
    click(wb, wb.run_button)
    assert len(wb.cards) == 4 and wb.cards[3].record.outcome == "error"
    assert [c.record.id for c in wb.cards[:2]] == earlier


def test_follow_up_turns_and_critique_rounds_are_labelled(wb):
    click(wb, wb.run_button)
    wb.follow_text.value = "Are you sure?"
    click(wb, wb.follow_button)
    wb.rounds.value = 1
    click(wb, wb.critique_button)
    labels = [c.label for c in wb.cards]
    assert labels[0].endswith("sample 1") and "turn" not in labels[0]
    assert labels[1].startswith("turn 2")
    assert labels[2:] == ["round 1 critique", "revision 1"]
    assert "revision 1" in wb.critique_view.value


def test_every_card_says_which_input_it_answered(wb):
    wb.input.value = "recipe"
    click(wb, wb.run_button)
    assert "input recipe" in wb.cards[0].html.value


def test_run_input_set_shows_a_grid_of_outputs_expected_outcomes_and_grades(wb, run_log):
    scripted.SCRIPTS["positive"] = lambda m, p: "Positive"
    wb.model.value = "scripted:positive"
    click(wb, wb.run_set_button)
    view = wb.input_set_view.value
    assert "promptlab-grid" in view and ">input</th>" in view  # the results grid: inputs down, versions across
    assert "8 inputs of prompts/sentiment_inputs.yaml" in view
    assert "love-it" in view and "broke-in-a-week" in view
    assert view.count("<details data-kind='correct'>") == 2  # love-it and korean-positive expect positive
    assert "expected &quot;positive&quot;" in view  # each cell opens on its grade and why
    assert "Positive" in view  # the output as the model wrote it
    labels = [c.label for c in wb.cards]
    assert len(labels) == 8 and labels[0].endswith("love-it") and labels[-1].endswith("injected-instruction")
    assert len(run_log.runs(experiment=wb.experiment_id)) == 8
    click(wb, wb.run_button)  # the table belongs to the input set run; the next action clears it
    assert wb.input_set_view.value == ""


def test_blind_context_holds_no_variant_name_or_prompt_until_the_round_is_revealed(wb):
    wb.blind.value = True
    click(wb, wb.run_button)
    hidden = wb.context.value
    assert "hidden in a blind comparison" in hidden
    for name in ("persona", "honest", "world-class", "online shop"):
        assert name not in hidden
    fig = wb.tried_so_far()
    assert not ({"persona", "honest"} & {str(x) for t in fig.data for x in t.x})
    for card in wb.cards:
        card.score.value = 3
        card.rate_button.click()
    assert "hidden" in wb.context.value  # every sample rated: still hidden until Reveal
    assert not ({"persona", "honest"} & {str(x) for t in wb.tried_so_far().data for x in t.x})
    wb.reveal_button.click()
    assert "variant" in wb.context.value and "hidden" not in wb.context.value
    fig = wb.tried_so_far()
    assert {"persona", "honest"} <= {str(x) for t in fig.data for x in t.x}


def test_answers_keep_their_case_and_one_token_is_singular(wb):
    scripted.SCRIPTS["shout"] = lambda m, p: "UNSURE!" if p["seed"] % 2 else "unsure!"
    wb.model.value = "scripted:shout"
    wb.variant.value = "persona"  # no way out declared, so these are answers
    click(wb, wb.run_button)
    click(wb, wb.retry_button)
    assert "1 token," in wb.cards[0].html.value and "1 tokens" not in wb.cards[0].html.value
    freq = wb.frequencies.value
    assert "2/2" in freq and ("UNSURE!" in freq or "unsure!" in freq)
    outputs = {c.record.output for c in wb.cards}
    shown = "UNSURE!" if "UNSURE!" in freq else "unsure!"
    assert shown in outputs


def test_the_rating_control_says_it_is_a_score(wb):
    click(wb, wb.run_button)
    score = wb.cards[0].score
    assert score.description == "rating" and score.label == "score 1-5"


@pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL
def test_compare_view_lists_experiments_by_task_time_and_size_hiding_empty_ones(run_log):
    exp = lab.experiment(PROMPT, inputs=INPUTS, model="scripted:seeded", repeats=1, seed=1, log=run_log)
    exp.run()
    run_log.add_experiment("empty-one", name="sentiment", prompt_path=PROMPT, inputs_path=None, models=["m"],
                           variants=["persona"], repeats=1, params={})
    view = compare_view(run_log)
    labels = [label for label, _ in view.experiments.options]
    assert len(labels) == 1 and "empty-one" not in {i for _, i in view.experiments.options}
    assert labels[0].startswith("sentiment · ") and "16 calls" in labels[0] and " UTC" in labels[0]
    assert view.experiments.value == (exp.id,)


def test_blind_compare_view_hides_variant_names_in_findings_figure_and_grid(run_log):
    exp = lab.experiment(PROMPT, inputs=INPUTS, model="scripted:seeded", repeats=2, seed=1, log=run_log)
    lab.grade(exp.run(), lab.graders.default_grader(), log=run_log)
    view = compare_view(run_log, experiments=[exp.id])
    assert "persona" in view.findings.value and "8 inputs, 16 pairs" in view.findings.value
    view.blind.value = True
    for name in FIGURE_NAMES:
        view.figure.value = name
        shown = str(view.plot.outputs) + view.findings.value + view.grid.value
        assert "persona" not in shown and "honest" not in shown, name
    assert "variant A" in view.findings.value
    assert {label for label, _ in view.variants.options} == {"variant A", "variant B"}  # the picker too
    view.variants.value = ("persona",)  # choosing one keeps its letter in the figure
    letter = dict((v, label) for label, v in view.variants.options)["persona"]
    assert letter in str(view.plot.outputs) and "persona" not in str(view.plot.outputs)


FIGURE_NAMES = ["outcome rates by tag", "paired difference", "retry spread", "score by prompt version",
                "latency, tokens, cost"]


def test_the_findings_come_before_the_figure_in_the_compare_view(run_log):
    exp = lab.experiment(PROMPT, inputs=INPUTS, model="scripted:seeded", repeats=1, seed=1, log=run_log)
    exp.run()
    view = compare_view(run_log, experiments=[exp.id])
    kids = list(view.children)
    assert kids.index(view.findings) < kids.index(view.plot)
    assert "promptlab-findings" in view.findings.value


def test_each_card_shows_its_grade_and_why_and_names_prompt_file_version_and_input_text(wb):
    scripted.SCRIPTS["positive"] = lambda m, p: "Positive"
    wb.model.value = "scripted:positive"
    wb.variant.value = "honest"
    wb.input.value = "love-it"
    click(wb, wb.run_button)
    card = wb.cards[0].html.value
    assert 'data-kind="correct"' in card and ">correct<" in card
    assert "match:default: expected &quot;positive&quot;, got &quot;Positive&quot;" in card  # the why
    assert "sentiment.yaml" in card and f"version {wb.session.variant.version}" in card
    assert "input love-it" in card and "I love this" in card  # the input's text, not only its id


def test_the_input_set_table_grades_escaped_rows_by_the_input_tags(wb):
    wb.model.value = "scripted:unsure"
    click(wb, wb.run_set_button)
    view = wb.input_set_view.value
    assert view.count("<details data-kind='escaped-right'>") == 2  # empty and recipe are tagged unanswerable
    assert view.count("<details data-kind='over-abstained'>") == 6
    assert "graded: over-abstained 6, escaped where it should 2" in view and not re.search(r"\bnan\b", view)


def test_an_escape_hatch_pass_reads_answered_where_it_should_never_correct():
    import pandas as pd

    from lab.grid import badge
    from lab.store import RunRecord

    rec = RunRecord(experiment_id="e", model="m", messages=[], outcome="answered", id="r1",
                    output="You're an AI assistant for text re-writing...", input_tags=["normal"])
    grades = pd.DataFrame([{"run_id": "r1", "grader": "escape_hatch", "passed": 1.0, "seq": 1}])
    shown = badge(rec, grades)
    assert shown.text == "answered where it should" and "correct" not in shown.text
    both = pd.concat([grades, pd.DataFrame([{"run_id": "r1", "grader": "match:default", "passed": 0.0, "seq": 2}])])
    assert badge(rec, both).text == "wrong"  # correctness comes from the correctness grader


def test_the_first_call_to_a_local_model_says_it_is_loading_the_model(run_log, monkeypatch):
    bench = lab.workbench(PROMPT, INPUTS, model="local:smollm2", log=run_log)
    monkeypatch.setattr(bench.session, "run", lambda row: time.sleep(0.3))
    bench.run_button.click()
    assert "loading the model" in bench.status.value
    bench.wait(5)
    bench.run_button.click()
    assert "loading the model" not in bench.status.value and "calling local:smollm2" in bench.status.value
    bench.wait(5)


def test_the_results_grid_marks_failures_and_disagreements_for_its_filters(run_log):
    from lab.grid import results_grid

    scripted.SCRIPTS["half"] = lambda m, p: "positive" if "shop" in m[-1]["content"] else "UNSURE"
    exp = lab.experiment(PROMPT, INPUTS, model="scripted:half", repeats=1, seed=1, log=run_log, progress="off")
    runs = exp.run()
    lab.grade(runs, lab.graders.default_grader(), log=run_log)
    grid = results_grid(runs.df, run_log.grades(exp.id))
    assert grid.rows == 8 and grid.columns == ["persona", "honest"]
    rows = re.findall(r"<tr class='([^']*)' data-input='([^']*)'>", grid.html)
    # persona escapes everywhere (over-abstention on 6 reviews), honest says positive everywhere (wrong on 4)
    failing = {i for c, i in rows if "failures" in c.split()}
    assert failing == {i for _, i in rows} and len(rows) == 8
    assert {i for c, i in rows if "differ" in c.split()} == failing  # the framings differ on every input
    assert "unanswerable" in grid.html and "tag-" in rows[-1][0]
    assert "appropriate (95% interval over inputs)" in grid.html and "8 inputs" in grid.html
    assert "variant A" in results_grid(runs.df, run_log.grades(exp.id), blind=True).html


def test_switching_the_prompt_file_starts_a_new_group_and_clears_the_input_set(wb):
    click(wb, wb.run_set_button)
    assert "promptlab-grid" in wb.input_set_view.value
    other = next(f for f in wb.prompt_file.options if f != PROMPT and "sentiment" not in f)
    wb.prompt_file.value = other
    assert wb.input_set_view.value == ""
    heading = wb.cards[-1]
    assert isinstance(heading, GroupHeading) and other in heading.value
    assert wb.session.turns == []  # the old conversation does not continue under the new file


def test_reset_can_be_undone_until_the_next_call(wb):
    click(wb, wb.run_button)
    click(wb, wb.retry_button)
    wb.reset_button.click()
    assert wb.cards == [] and wb.undo_button.layout.display is None
    wb.undo_button.click()
    assert len(wb.cards) == 2 and len(wb.session.samples) == 2 and wb.undo_button.layout.display == "none"
    wb.reset_button.click()
    click(wb, wb.run_button)  # the next call ends the chance to undo
    assert wb.undo_button.layout.display == "none" and len(wb.cards) == 1


def test_running_the_cell_again_restores_the_cards_from_the_log_and_blind_stays_blind(run_log):
    first = lab.workbench(PROMPT, INPUTS, model="scripted:seeded", log=run_log)
    click(first, first.run_button)
    first.blind.value = True
    click(first, first.run_button)
    again = lab.workbench(PROMPT, INPUTS, model="scripted:seeded", log=run_log)  # the cell, run again
    assert again.experiment_id == first.experiment_id
    cards = [c for c in again.cards if isinstance(c, SampleCard)]
    assert len(cards) == 3 and "restored" in again.cards[0].value
    blind = [c for c in cards if c.blind]
    assert len(blind) == 2 and all(c.record.variant not in c.html.value for c in blind)
    assert sorted(c.label for c in blind) == ["sample A", "sample B"]


def test_self_critique_uses_the_rubric_field_and_grades_each_revision(wb, run_log):
    wb.input.value = "love-it"
    click(wb, wb.run_button)
    wb.rubric.value = "The answer is one word: positive or negative."
    click(wb, wb.critique_button)
    runs = run_log.runs(experiment=wb.experiment_id)
    critiques = runs[runs["role"] == "critique"]
    assert len(critiques) == 1
    assert "The answer is one word: positive or negative." in str(critiques.iloc[0]["messages"])
    if (runs["role"] == "revision").any():
        assert "graded <b>" in wb.critique_view.value


def test_tried_so_far_redraws_after_each_call_while_open(wb):
    wb.tried_view.selected_index = 0
    click(wb, wb.run_button)
    first = str(wb.tried.outputs)
    assert "application/vnd.plotly.v1+json" in first
    click(wb, wb.retry_button)
    assert str(wb.tried.outputs) != first  # two calls now


def test_the_compare_view_opens_on_the_latest_finished_experiment_not_one_in_progress(run_log):
    done = lab.experiment(PROMPT, inputs=INPUTS, model="scripted:seeded", repeats=1, seed=1, log=run_log)
    done.run()
    bench = lab.workbench(PROMPT, INPUTS, model="scripted:seeded", log=run_log)
    click(bench, bench.run_button)  # a later call, of an experiment that says it started and never finished
    run_log.add_event(bench.experiment_id, "started")
    assert compare_view(run_log).experiments.value == (done.id,)
    run_log.add_event(bench.experiment_id, "finished")
    assert compare_view(run_log).experiments.value == (bench.experiment_id,)
