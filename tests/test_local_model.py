"""End to end on the real embedded model: SmolLM2-135M-Instruct via llama-cpp-python."""

from __future__ import annotations

import pytest

import lab
from lab.providers.local import LocalProvider, bundled_model_path

pytestmark = pytest.mark.slow

PROMPT = """\
task: capital
escape_hatch: UNSURE
params: {temperature: 0.8, max_tokens: 12}
variants:
  plain:
    user: "What is the capital of {{ country }}? Answer with the city name only."
"""


@pytest.fixture
def prompt(write):
    return write("capital.yaml", PROMPT)


def test_the_bundled_model_is_found_inside_its_wheel():
    path = bundled_model_path("smollm2")
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_the_local_model_answers_a_real_prompt_through_the_runner(prompt, run_log):
    runs = lab.experiment(prompt, [{"id": "fr", "country": "France"}], log=run_log, seed=1).run()
    row = runs.df.iloc[0]
    assert row.model == "local:smollm2" and row.outcome == "answered"
    assert "Paris" in row.output
    assert row.input_tokens > 10 and 0 < row.output_tokens <= 12
    assert row.latency_ms > 0 and row.cost_usd == 0.0
    assert row.messages[-1]["content"].startswith("What is the capital of France?")


def test_a_seeded_call_is_reproducible(prompt, run_log):
    inputs = [{"id": "pe", "country": "Peru"}, {"id": "kr", "country": "South Korea"}]
    params = {"temperature": 1.3, "max_tokens": 16}
    a = lab.experiment(prompt, inputs, log=run_log, seed=42, params=params, repeats=2).run().df
    b = lab.experiment(prompt, inputs, log=run_log, seed=42, params=params, repeats=2).run().df
    assert a.output.tolist() == b.output.tolist()
    assert a.seed.tolist() == b.seed.tolist()


def test_three_repeats_give_three_rows_with_distinct_repeat_indices_and_seeds(prompt, run_log):
    runs = lab.experiment(prompt, [{"id": "jp", "country": "Japan"}], repeats=3, log=run_log,
                          params={"temperature": 1.5, "max_tokens": 16}).run()
    df = runs.df
    assert sorted(df.repeat) == [0, 1, 2]
    assert df.seed.nunique() == 3


def test_the_whole_context_the_model_saw_can_be_shown():
    text, n = LocalProvider("local:smollm2", "smollm2").chat_prompt(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert "Be brief." in text and "Hi" in text and "<|im_start|>" in text
    assert 5 < n < 40


def test_the_bundled_sentiment_experiment_runs_with_its_edge_cases(run_log):
    runs = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml", log=run_log,
                          seed=7, tags=["unanswerable"]).run()
    s = runs.summary()
    assert list(s.index) == ["persona", "honest"]
    assert (s.n == 2).all() and (s.answered + s.escaped + s.errors == s.n).all()
    assert s.errors.sum() == 0


def test_any_gguf_file_runs_by_path(prompt, run_log):
    model = f"local:{bundled_model_path('smollm2')}"
    runs = lab.experiment(prompt, [{"id": "it", "country": "Italy"}], model=model, log=run_log, seed=2).run()
    assert runs.df.model.tolist() == [model] and runs.df.outcome.tolist() == ["answered"]


def test_a_gguf_path_that_does_not_exist_fails_before_any_call(prompt, run_log):
    with pytest.raises(lab.ModelSpecError, match="no such file"):
        lab.experiment(prompt, [{"id": "it", "country": "Italy"}], model="local:/nope/model.gguf", log=run_log)


def test_context_shows_the_templated_text_and_token_count_for_a_variant():
    ctx = lab.context("prompts/sentiment.yaml", "honest", {"text": "Broke after a day."})
    assert ctx.messages[0]["role"] == "system" and "Broke after a day." in ctx.messages[-1]["content"]
    assert "<|im_start|>system" in ctx.text and ctx.tokens > 20
    assert "&lt;|im_start|&gt;" in ctx._repr_html_()
