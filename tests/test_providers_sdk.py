"""The Anthropic and OpenAI paths, through the official SDKs, against real servers on loopback.

Anthropic: the in-repo loopback server that speaks the Messages API (tests/loopback/), including
its error shapes. OpenAI-compatible: a real ``python -m llama_cpp.server`` with the bundled model.
"""

from __future__ import annotations

import pytest

import lab
from tests.loopback import AnthropicServer, FaultPlan

PROMPT = """\
task: t
escape_hatch: UNSURE
params: {temperature: 0, max_tokens: 32}
variants:
  a:
    system: Be brief.
    user: "Say {{ word }}"
"""


@pytest.fixture
def prompt(write):
    return write("p.yaml", PROMPT)


@pytest.fixture
def anthropic_env(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-0123456789")

    def point_at(srv):
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)

    return point_at


def test_anthropic_model_answers_through_the_official_sdk(prompt, run_log, anthropic_env):
    with AnthropicServer() as srv:
        anthropic_env(srv)
        runs = lab.experiment(prompt, [{"id": "r1", "word": "hello"}, {"id": "r2", "word": "UNSURE"}],
                              model="anthropic:claude-loopback-1", log=run_log).run()
        seen = srv.request_log()
    df = runs.df.set_index("input_id")
    assert df.loc["r1", "output"] == "echo: Say hello" and df.loc["r1", "outcome"] == "answered"
    assert df.loc["r2", "outcome"] == "escaped"
    assert df.loc["r1", "input_tokens"] > 0 and df.loc["r1", "output_tokens"] > 0
    assert all(r.has_auth and r.path == "/v1/messages" for r in seen)
    assert pd_isnull(df.loc["r1", "cost_usd"])  # an unknown model's price is unknown, never guessed


def pd_isnull(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def test_anthropic_429_with_retry_after_is_retried_by_the_sdk_and_logged_once(prompt, run_log, anthropic_env):
    with AnthropicServer(faults=FaultPlan(script=["429", "529", "ok"], retry_after="0.05")) as srv:
        anthropic_env(srv)
        runs = lab.experiment(prompt, [{"id": "r1", "word": "hi"}], model="anthropic:claude-loopback-1",
                              log=run_log).run()
        stats = srv.stats()
    assert stats["requests"] == 3 and stats["by_status"].get(429) == 1 and stats["by_status"].get(529) == 1
    df = runs.df
    assert len(df) == 1 and df.outcome.tolist() == ["answered"]


# The SDK retries 5xx (max_retries=1: two tries): three faults make r1 fail twice and r2 fail once,
# then succeed on its retry. A malformed body is not retried: one fault fails r1 only. (429 and 529
# are retried by the runner as well, with backoff: see test_faults.py.)
@pytest.mark.parametrize("fault, kind, faults", [("500", "server", 3), ("503", "server", 3),
                                                 ("malformed", "malformed", 1)])
def test_anthropic_errors_after_retries_become_error_rows_with_the_reason(prompt, run_log, anthropic_env, fault,
                                                                          kind, faults):
    with AnthropicServer(faults=FaultPlan(script=[fault] * faults, retry_after="0.01")) as srv:
        anthropic_env(srv)
        runs = lab.experiment(prompt, [{"id": "r1", "word": "hi"}, {"id": "r2", "word": "yo"}],
                              model="anthropic:claude-loopback-1", log=run_log, concurrency=1,
                              provider_options={"anthropic:claude-loopback-1": {"max_retries": 1}}).run()
    df = runs.df.set_index("input_id")
    assert df.loc["r1", "outcome"] == "error"
    assert df.loc["r1", "error"].startswith(f"{kind}:")
    assert "sk-ant-test-key" not in df.loc["r1", "error"]
    assert df.loc["r2", "outcome"] == "answered"


def test_anthropic_without_a_key_fails_before_any_call(prompt, run_log):
    with pytest.raises(lab.ModelSpecError, match="ANTHROPIC_API_KEY"):
        lab.experiment(prompt, [{"id": "r1", "word": "hi"}], model="anthropic:claude-x", log=run_log)


@pytest.mark.slow
def test_openai_compatible_server_answers_through_the_official_sdk(prompt, run_log, llama_server_url):
    model = f"openai-compatible:{llama_server_url}#smollm2"
    runs = lab.experiment(prompt, [{"id": "r1", "word": "hello"}, {"id": "r2", "word": "goodbye"}],
                          model=model, repeats=2, seed=3, log=run_log, concurrency=2).run()
    df = runs.df
    assert len(df) == 4 and (df.outcome != "error").all(), df.error.tolist()
    assert (df.output.str.len() > 0).all()
    assert (df.input_tokens > 0).all() and (df.output_tokens > 0).all()
    assert df.model.unique().tolist() == [model]


@pytest.mark.slow
def test_openai_compatible_and_local_run_side_by_side_on_one_input_set(prompt, run_log, llama_server_url):
    models = ["local:smollm2", f"openai-compatible:{llama_server_url}#smollm2"]
    runs = lab.experiment(prompt, [{"id": "r1", "word": "hello"}], model=models, seed=1, log=run_log).run()
    s = runs.summary()
    assert set(s.index.get_level_values("model")) == set(models)
    assert (s.errors == 0).all()


def test_openai_compatible_unreachable_server_is_an_error_row_not_a_crash(prompt, run_log):
    from tests.servers import free_port

    model = f"openai-compatible:http://127.0.0.1:{free_port()}/v1#m"
    runs = lab.experiment(prompt, [{"id": "r1", "word": "hi"}], model=model, log=run_log,
                          provider_options={model: {"max_retries": 0, "timeout": 2}}).run()
    row = runs.df.iloc[0]
    assert row.outcome == "error" and row.error.startswith("connection:")


def _recording(server: type) -> tuple[type, list[tuple[dict, dict]]]:
    """A loopback server class that keeps each request's (body, headers with lower-case names), and that list."""
    seen: list[tuple[dict, dict]] = []

    class Recording(server):
        def _validate(self, headers, body):
            seen.append((body, {k.lower(): v for k, v in headers.items()}))
            return super()._validate(headers, body)

    return Recording, seen


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
def test_the_openai_request_on_the_wire_carries_every_parameter_as_the_lab_planned_it(prompt, run_log, kind,
                                                                                      monkeypatch):
    """The provider sends its body through the SDK's client (``client.post``): OpenAI gets
    ``max_completion_tokens``, a compatible server ``max_tokens`` and the llama.cpp extras; the
    SDK's own headers and key go with it; the answer, its usage and finish reason are read back."""
    import json as _json

    from tests.loopback import OpenAIServer

    Recording, seen = _recording(OpenAIServer)
    with Recording() as srv:
        if kind == "openai":
            monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
            monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
            model, params = "openai:gpt-x", {"top_p": 0.5}
        else:
            model, params = f"openai-compatible:{srv.base_url}#m", {"top_k": 20, "repeat_penalty": 1.1}
        runs = lab.experiment(prompt, [{"id": "r1", "word": "hi"}], model=model, seed=4, params=params,
                              log=run_log).run()
    row = runs.df.iloc[0]
    assert row.outcome == "answered" and row.output and row.input_tokens > 0 and row.finish_reason in ("stop", "length")
    (body, headers), = seen
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    assert body["temperature"] == 0 and body["seed"] == row.seed
    if kind == "openai":
        assert body["model"] == "gpt-x" and body["max_completion_tokens"] == 32 and "max_tokens" not in body
        assert body["top_p"] == 0.5 and headers.get("authorization") == "Bearer sk-test-0123456789abcdef"
    else:
        assert body["model"] == "m" and body["max_tokens"] == 32 and (body["top_k"], body["repeat_penalty"]) == (20, 1.1)
    assert any(k.startswith("x-stainless") for k in headers)  # the SDK's client sent it
    assert "sk-test" not in _json.dumps(runs.df.astype(str).to_dict())


def test_the_anthropic_request_on_the_wire_carries_system_sampling_and_stop_as_planned(prompt, run_log, anthropic_env):
    """The body the lab builds goes out as it is through the SDK's client (its key and version
    headers with it): system messages joined into ``system``, the sampling parameters in the body,
    ``stop`` as ``stop_sequences``, no seed; the answer's text, usage and stop reason come back."""
    Recording, seen = _recording(AnthropicServer)
    with Recording() as srv:
        anthropic_env(srv)
        runs = lab.experiment(prompt, [{"id": "r1", "word": "hi"}], model="anthropic:claude-loopback-1", seed=2,
                              params={"top_p": 0.9, "top_k": 5, "stop": "END"}, log=run_log).run()
    row = runs.df.iloc[0]
    assert row.outcome == "answered" and row.output == "echo: Say hi" and row.output_tokens > 0
    assert row.finish_reason == "stop"
    (body, headers), = seen
    assert body["system"] == "Be brief." and body["messages"] == [{"role": "user", "content": "Say hi"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (32, 0, 0.9, 5)
    assert body["stop_sequences"] == ["END"] and "seed" not in body
    key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")  # as this SDK sends it
    assert key == "sk-ant-test-key-0123456789" and headers.get("anthropic-version")
