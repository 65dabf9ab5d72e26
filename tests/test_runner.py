"""The runner on the scripted provider: expansion, seeds, repeats, replay, resume, errors, budget.
Every test runs on both run-log backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

import lab
from lab.errors import ProviderError
from lab.providers import Completion, Provider, register_provider
from tests.scripted import SCRIPTS

pytestmark = pytest.mark.usefixtures("backend")

PROMPT = """\
task: t
escape_hatch: UNSURE
variants:
  a:
    user: "A: {{ text }}"
  b:
    user: "B: {{ text }}"
"""
INPUTS = "- {id: r1, text: one}\n- {id: r2, text: two, tags: [edge]}\n- {id: r3, text: three, tags: [unanswerable]}\n"


@pytest.fixture
def files(write):
    return write("p.yaml", PROMPT), write("in.yaml", INPUTS)


def test_every_variant_input_model_and_repeat_becomes_one_logged_row(files, run_log):
    prompt, inputs = files
    exp = lab.experiment(prompt, inputs, model=["scripted:echo", "scripted:seeded"], repeats=2, log=run_log)
    runs = exp.run()
    df = lab.log(run_log.path).runs(experiment=exp.id)
    assert len(runs) == len(df) == 2 * 3 * 2 * 2
    assert set(df.groupby(["variant", "input_id", "model"]).repeat.apply(tuple)) == {(0, 1)}
    echo = df[df.model == "scripted:echo"]
    assert set(echo.output) == {"A: one", "A: two", "A: three", "B: one", "B: two", "B: three"}
    assert df[df.input_id == "r2"].input_tags.iloc[0] == ["edge"]


def test_repeats_get_distinct_seeds_shared_by_variants_and_models(files, run_log):
    prompt, inputs = files
    df = lab.experiment(prompt, inputs, model=["scripted:echo", "scripted:seeded"], repeats=3, seed=11,
                        log=run_log).run().df
    per_call = df.groupby(["input_id", "repeat"]).seed.nunique()
    assert (per_call == 1).all()  # a and b, echo and seeded: same seed for the same (input, repeat)
    assert df.drop_duplicates(["input_id", "repeat"]).seed.nunique() == 9


def test_a_seeded_experiment_reproduces_its_outputs(files, run_log):
    prompt, inputs = files
    first = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=4, seed=3, log=run_log).run().df
    second = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=4, seed=3, log=run_log).run().df
    assert first.output.tolist() == second.output.tolist()


def test_unseeded_repeats_are_fresh_samples_with_recorded_seeds(files, run_log):
    prompt, inputs = files
    df = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=5, variants=["a"], log=run_log).run().df
    assert df.seed.notna().all() and df.seed.nunique() == 15
    # the recorded seed is the one the model got: each sample can be redone from its row
    assert df.output.tolist() == [SCRIPTS["seeded"]([], {"seed": s}) for s in df.seed]


def test_replay_of_an_unseeded_experiment_serves_the_same_repeat_whatever_its_seed(files, run_log, model_calls):
    prompt, inputs = files
    first = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=2, log=run_log).run()
    n_calls = len(model_calls)
    again = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=2, log=run_log, replay=True).run()
    assert len(model_calls) == n_calls
    assert again.df.output.tolist() == first.df.output.tolist()
    assert again.df.seed.tolist() == first.df.seed.tolist()  # the seed that made each output


def test_escape_hatch_outputs_are_counted_as_escaped(files, run_log):
    prompt, inputs = files
    runs = lab.experiment(prompt, inputs, model="scripted:unsure", log=run_log).run()
    assert set(runs.df.outcome) == {"escaped"}
    s = runs.summary()
    assert s.loc["a", "escaped"] == 3 and s.loc["a", "answered"] == 0


def test_replay_serves_identical_calls_from_the_log_without_calling_the_model(files, run_log, model_calls):
    prompt, inputs = files
    first = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=2, seed=5, log=run_log).run()
    n_calls = len(model_calls)
    again = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=2, seed=5, log=run_log, replay=True).run()
    assert len(model_calls) == n_calls  # nothing new reached the model
    assert again.df.output.tolist() == first.df.output.tolist()
    assert again.df.seed.tolist() == first.df.seed.tolist()  # the seed that made each output
    assert again.df.replayed_from.tolist() == first.df.id.tolist()


def test_without_replay_identical_calls_are_made_again(files, run_log, model_calls):
    prompt, inputs = files
    lab.experiment(prompt, inputs, model="scripted:seeded", seed=5, log=run_log).run()
    lab.experiment(prompt, inputs, model="scripted:seeded", seed=5, log=run_log).run()
    assert len(model_calls) == 12


def test_resume_makes_only_the_calls_that_did_not_finish(files, run_log, model_calls, monkeypatch):
    prompt, inputs = files
    monkeypatch.setattr(FlakyOnce, "healthy", False)  # sick again for each backend's run of this test
    SCRIPTS["flaky"] = lambda m, p: (_ for _ in ()).throw(ProviderError("boom", kind="server")) \
        if "two" in m[-1]["content"] else "ok"
    register_provider("flaky", lambda model, rest, o: FlakyOnce(model))
    exp = lab.experiment(prompt, inputs, model="flaky:x", id="exp-resume", log=run_log)
    exp.run()
    df = run_log.runs(experiment="exp-resume")
    assert (df.outcome == "error").sum() == 2  # r2 for a and b
    FlakyOnce.healthy = True
    model_calls.clear()
    runs = lab.experiment(prompt, inputs, model="flaky:x", id="exp-resume", resume=True, log=run_log).run()
    assert runs.skipped == 4 and len(runs) == 2
    df = run_log.runs(experiment="exp-resume")
    assert len(df) == 8 and (df.outcome != "error").sum() == 6


class FlakyOnce(Provider):
    """Fails calls about 'two' until healthy."""

    healthy = False
    supported_params = frozenset({"temperature", "max_tokens", "seed"})

    async def complete(self, messages, params):
        if "two" in messages[-1]["content"] and not FlakyOnce.healthy:
            raise ProviderError("server said 500", kind="server", status=500)
        return Completion(text="ok", input_tokens=1, output_tokens=1)


def test_a_failed_call_is_an_error_row_and_the_batch_goes_on(files, run_log):
    prompt, inputs = files
    FlakyOnce.healthy = False
    register_provider("flaky2", lambda model, rest, o: FlakyOnce(model))
    runs = lab.experiment(prompt, inputs, model="flaky2:x", log=run_log).run()
    df = runs.df
    err = df[df.outcome == "error"]
    assert len(df) == 6 and len(err) == 2
    assert err.error.str.startswith("server: server said 500").all()
    assert err.output.isna().all()
    assert runs.summary().loc["a", "errors"] == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(repeats=0), "repeats must be >= 1"),
    (dict(repeats=-2), "repeats must be >= 1"),
    (dict(repeats=1.5), "repeats must be an integer"),
    (dict(concurrency=0), "concurrency must be >= 1"),
    (dict(model="gpt-4o"), "not a model string"),
    (dict(model="nosuch:thing"), "unknown provider 'nosuch'"),
    (dict(model="anthropic:claude-sonnet-4-5"), "needs ANTHROPIC_API_KEY"),
    (dict(model="openai-compatible:localhost:8080#m"), "not an http"),
    (dict(variants=["c"]), "no variant 'c'"),
    (dict(params={"temprature": 1}), "does not support parameter"),
    (dict(budget_usd=float("nan")), "budget_usd must be"),
    (dict(params={"api_key": "sk-abcdefabcdefabcdefabcdef"}), "looks like a secret"),
], ids=lambda v: str(v)[:40])
def test_bad_parameters_fail_before_any_model_call(files, run_log, model_calls, kwargs, match):
    prompt, inputs = files
    kwargs = {"model": "scripted:echo", **kwargs}
    with pytest.raises(lab.LabError, match=match):
        lab.experiment(prompt, inputs, log=run_log, **kwargs).run()
    assert model_calls == []
    assert run_log.runs().empty


def test_an_input_missing_a_variable_fails_before_any_model_call(write, run_log, model_calls):
    prompt = write("p.yaml", PROMPT)
    inputs = write("in.yaml", "- {id: r1, text: one}\n- {id: r2, body: two}\n")
    with pytest.raises(lab.InputSetError, match=r"row 'r2' lacks \['text'\]"):
        lab.experiment(prompt, inputs, model="scripted:echo", log=run_log)
    assert model_calls == []


def test_budget_stops_the_run_before_it_overspends(files, run_log, capsys, monkeypatch):
    prompt, inputs = files
    # $0.10 a token; a call costs about $0.40 but reserves its worst case (~$3.30) before it starts
    monkeypatch.setitem(lab.pricing._PRICES, "scripted:", lab.pricing.Price(1e5, 1e5))
    runs = lab.experiment(prompt, inputs, model="scripted:echo", repeats=10, budget_usd=20.0,
                          params={"max_tokens": 5}, concurrency=1, log=run_log).run()
    assert runs.stopped == "budget"
    assert 10 < len(runs) < 60
    assert runs.df.cost_usd.sum() <= 20.0
    events = run_log.events(runs.experiment_id)
    assert "stopped" in events.kind.tolist()
    assert "stopped by budget" in capsys.readouterr().out


def test_a_budget_on_a_model_with_unknown_price_is_refused(files, run_log):
    prompt, inputs = files
    with pytest.raises(lab.ParameterError, match="known prices"):
        lab.experiment(prompt, inputs, model="scripted:echo", budget_usd=1.0, log=run_log)


def test_experiment_runs_inside_a_running_event_loop(files, run_log):
    """Jupyter's kernel has a running loop; exp.run() must still work there."""
    import asyncio

    prompt, inputs = files

    async def in_notebook():
        return lab.experiment(prompt, inputs, model="scripted:echo", log=run_log).run()

    runs = asyncio.run(in_notebook())
    assert len(runs) == 6


BAD_FILES = {
    "malformed YAML": ("task: t\nvariants:\n  a:\n    user: [oops\n", INPUTS, "YAML syntax error"),
    "sandbox escape": ("task: t\nvariants:\n  a:\n    user: \"{{ text.__class__.__mro__ }}\"\n", INPUTS, "sandbox"),
    "duplicate ids": (PROMPT, "- {id: r1, text: a}\n- {id: r1, text: b}\n", "duplicate input id 'r1'"),
    "missing variable": (PROMPT, "- {id: r1, txt: a}\n", r"lacks \['text'\]"),
    "empty input set": (PROMPT, "[]\n", "empty"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_fail_before_any_model_call_and_leave_the_log_as_it_was(write, run_log, model_calls, case):
    lab.experiment(write("ok.yaml", PROMPT), write("ok_in.yaml", INPUTS), model="scripted:echo", log=run_log).run()
    before = run_log.runs()
    prompt_text, inputs_text, match = BAD_FILES[case]
    model_calls.clear()
    with pytest.raises(lab.LabError, match=match):
        lab.experiment(write("p.yaml", prompt_text), write("in.yaml", inputs_text), model="scripted:echo",
                       log=run_log).run()
    assert model_calls == []
    assert run_log.runs().equals(before)


def test_a_missing_input_file_fails_before_any_model_call(write, run_log, model_calls, tmp_path):
    with pytest.raises(lab.InputSetError, match="input set not found"):
        lab.experiment(write("p.yaml", PROMPT), tmp_path / "nope.csv", model="scripted:echo", log=run_log)
    assert model_calls == []


def test_a_seed_given_as_a_parameter_is_the_experiments_seed(files, run_log):
    prompt, inputs = files
    a = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=2, params={"seed": 9}, log=run_log).run().df
    b = lab.experiment(prompt, inputs, model="scripted:seeded", repeats=2, seed=9, log=run_log).run().df
    assert a.seed.tolist() == b.seed.tolist() and a.output.tolist() == b.output.tolist()
    with pytest.raises(lab.ParameterError, match="two seeds"):
        lab.experiment(prompt, inputs, model="scripted:seeded", seed=1, params={"seed": 2}, log=run_log)
