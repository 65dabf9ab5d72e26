"""The loopback servers, driven by the official anthropic and openai SDKs over real HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from tests.loopback import AnthropicServer, FaultPlan, OpenAIServer

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-never-logged"
USER = [{"role": "user", "content": "What colour is the sky on a clear day?"}]


def claude(srv: AnthropicServer, **kw: object) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=srv.base_url, api_key=KEY, **kw)  # type: ignore[arg-type]


def gpt(srv: OpenAIServer, **kw: object) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=srv.base_url, api_key=KEY, **kw)  # type: ignore[arg-type]


def ask_claude(client: anthropic.Anthropic, **kw: object) -> anthropic.types.Message:
    return client.messages.create(model="claude-loopback-1", max_tokens=64, messages=USER, **kw)  # type: ignore[arg-type]


def ask_gpt(client: openai.OpenAI, **kw: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="gpt-loopback", messages=USER, **kw)  # type: ignore[arg-type]


# -- normal answers ------------------------------------------------------------------


def test_anthropic_sdk_gets_an_echo_answer_with_usage_tokens() -> None:
    with AnthropicServer() as srv:
        msg = ask_claude(claude(srv))
        assert msg.content[0].text == "echo: What colour is the sky on a clear day?"
        assert msg.stop_reason == "end_turn"
        assert msg.model == "claude-loopback-1"
        assert msg.id.startswith("msg_")
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (9, 10)
        assert srv.stats()["by_status"] == {200: 1}


def test_openai_sdk_gets_an_echo_answer_with_usage_tokens() -> None:
    with OpenAIServer() as srv:
        done = ask_gpt(gpt(srv))
        assert done.choices[0].message.content == "echo: What colour is the sky on a clear day?"
        assert done.choices[0].finish_reason == "stop"
        assert done.id.startswith("chatcmpl-")
        assert done.usage is not None
        assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (9, 10, 19)


def test_custom_responder_and_max_tokens_truncation() -> None:
    with AnthropicServer(responder=lambda req: "one two three four five") as srv:
        msg = claude(srv).messages.create(model="m", max_tokens=3, messages=USER)
        assert msg.content[0].text == "one two three"
        assert msg.stop_reason == "max_tokens"
    with OpenAIServer(responder=lambda req: "one two three four five") as srv:
        done = ask_gpt(gpt(srv), max_tokens=2)
        assert done.choices[0].message.content == "one two"
        assert done.choices[0].finish_reason == "length"


def test_streaming_answers_reassemble_to_the_same_text() -> None:
    with AnthropicServer() as srv:
        with claude(srv).messages.stream(model="m", max_tokens=64, messages=USER) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "echo: What colour is the sky on a clear day?"
        assert final.usage.output_tokens == 10
    with OpenAIServer() as srv:
        chunks = list(ask_gpt(gpt(srv), stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10


def test_models_endpoints_list_the_configured_models() -> None:
    with AnthropicServer(models=["claude-a"]) as a, OpenAIServer(models=["gpt-a", "gpt-b"]) as o:
        assert [m.id for m in claude(a).models.list().data] == ["claude-a"]
        assert [m.id for m in gpt(o).models.list().data] == ["gpt-a", "gpt-b"]


def test_request_log_records_path_model_and_auth_presence_but_never_the_key() -> None:
    with AnthropicServer() as srv:
        client = claude(srv)
        ask_claude(client)
        ask_claude(client)
        log = srv.request_log()
        assert [(r.path, r.model, r.has_auth, r.status) for r in log] == [("/v1/messages", "claude-loopback-1", True, 200)] * 2
        assert KEY not in repr(log)
        assert srv.stats()["connections"] == 1  # the SDK reused one keep-alive connection


def test_anthropic_server_rejects_requests_missing_headers_or_fields_in_anthropic_shape() -> None:
    with AnthropicServer() as srv:

        def post(headers: dict[str, str], body: dict[str, object]) -> tuple[int, dict[str, object]]:
            req = urllib.request.Request(srv.base_url + "/v1/messages", json.dumps(body).encode(), headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        good = {"model": "m", "max_tokens": 5, "messages": USER}
        auth = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        assert post(auth, good)[0] == 200
        status, body = post({"anthropic-version": "2023-06-01"}, good)
        assert (status, body["error"]["type"]) == (401, "authentication_error")  # type: ignore[index]
        status, body = post({"x-api-key": KEY}, good)
        assert (status, body["type"], body["error"]["type"]) == (400, "error", "invalid_request_error")  # type: ignore[index]
        for missing in ("max_tokens", "messages"):
            partial = {k: v for k, v in good.items() if k != missing}
            status, body = post(auth, partial)
            assert status == 400 and missing in body["error"]["message"]  # type: ignore[index]
        assert not any(r.has_auth for r in srv.request_log() if r.status == 401)


# -- faults --------------------------------------------------------------------------


def test_anthropic_sdk_retries_a_429_with_retry_after_and_succeeds() -> None:
    with AnthropicServer(faults=FaultPlan(script=["429"], retry_after="0.05")) as srv:
        started = time.monotonic()
        msg = ask_claude(claude(srv, max_retries=1))
        elapsed = time.monotonic() - started
        assert msg.content[0].text.startswith("echo: ")
        stats = srv.stats()
        assert stats["requests"] == 2
        assert stats["by_status"] == {429: 1, 200: 1}
        assert stats["faults"] == {"429": 1}
        assert [r.retry_count for r in srv.request_log()] == [0, 1]
        assert elapsed < 0.35  # honoured retry-after 0.05 s, not its own 0.375-0.5 s backoff


def test_openai_sdk_retries_a_429_with_retry_after_and_succeeds() -> None:
    with OpenAIServer(faults=FaultPlan(script=["429"], retry_after="0.05")) as srv:
        done = ask_gpt(gpt(srv, max_retries=1))
        assert done.choices[0].message.content.startswith("echo: ")  # type: ignore[union-attr]
        assert srv.stats()["requests"] == 2
        assert srv.stats()["by_status"] == {429: 1, 200: 1}


def test_status_faults_map_to_the_sdks_error_classes() -> None:
    plan = ["429", "500", "503", "529"]
    with AnthropicServer(faults=FaultPlan(script=plan)) as srv:
        client = claude(srv)
        expected = [
            anthropic.RateLimitError,
            anthropic.InternalServerError,
            anthropic.ServiceUnavailableError,
            anthropic.OverloadedError,
        ]
        for cls in expected:
            with pytest.raises(anthropic.APIStatusError) as err:
                ask_claude(client)
            assert type(err.value) is cls
        assert issubclass(anthropic.OverloadedError, anthropic.InternalServerError)
        assert srv.stats()["by_status"] == {429: 1, 500: 1, 503: 1, 529: 1}
    with OpenAIServer(faults=FaultPlan(script=plan)) as srv:
        client = gpt(srv)
        for status in (429, 500, 503, 529):
            with pytest.raises(openai.APIStatusError) as oerr:
                ask_gpt(client)
            assert oerr.value.status_code == status
            assert type(oerr.value) is (openai.RateLimitError if status == 429 else openai.InternalServerError)
            assert isinstance(oerr.value.body, dict) and {"message", "type", "code"} <= set(oerr.value.body)


def test_timeout_fault_raises_api_timeout_error_for_a_short_client_timeout() -> None:
    with AnthropicServer(faults=FaultPlan(script=["timeout"], slow_seconds=5)) as srv:
        started = time.monotonic()
        with pytest.raises(anthropic.APITimeoutError):
            ask_claude(claude(srv, timeout=0.3))
        assert time.monotonic() - started < 2
    with OpenAIServer(faults=FaultPlan(script=["timeout"], slow_seconds=5)) as srv:
        with pytest.raises(openai.APITimeoutError):
            ask_gpt(gpt(srv, timeout=0.3))
        assert srv.stats()["faults"] == {"timeout": 1}


def test_malformed_body_surfaces_as_a_json_decode_error_not_an_sdk_class() -> None:
    # Both SDKs call response.json() on a 200 application/json body without wrapping it.
    with AnthropicServer(faults=FaultPlan(script=["malformed"])) as srv:
        with pytest.raises(json.JSONDecodeError):
            ask_claude(claude(srv, max_retries=2))
        assert srv.stats()["requests"] == 1  # and it is not retried
    with OpenAIServer(faults=FaultPlan(script=["malformed"])) as srv:
        with pytest.raises(json.JSONDecodeError):
            ask_gpt(gpt(srv))


def test_reset_fault_raises_api_connection_error_and_is_retried() -> None:
    with OpenAIServer(faults=FaultPlan(script=["reset"])) as srv:
        with pytest.raises(openai.APIConnectionError) as err:
            ask_gpt(gpt(srv))
        assert not isinstance(err.value, openai.APITimeoutError)
        assert srv.stats()["faults"] == {"reset": 1}
    with AnthropicServer(faults=FaultPlan(script=["reset", "reset"])) as srv:
        with pytest.raises(anthropic.APIConnectionError):
            ask_claude(claude(srv))
        ask_claude(claude(srv, max_retries=1))  # second reset, then a clean answer
        assert srv.stats()["requests"] == 3


def test_seeded_rates_give_the_same_fault_sequence_every_time() -> None:
    def sequence() -> list[str]:
        plan = FaultPlan(rates={"500": 0.3, "429": 0.2}, seed=7)
        return [plan.next_fault(in_flight=1) for _ in range(50)]

    first = sequence()
    assert first == sequence()
    assert {"ok", "500", "429"} == set(first)
    with pytest.raises(ValueError):
        FaultPlan(script=["418"])


def test_in_flight_limit_answers_429_and_set_faults_lifts_it() -> None:
    async def main() -> None:
        with OpenAIServer(latency=0.4, faults=FaultPlan(max_in_flight=2)) as srv:
            client = openai.AsyncOpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
            results = await asyncio.gather(*(ask_async(client) for _ in range(5)), return_exceptions=True)
            limited = [r for r in results if isinstance(r, openai.RateLimitError)]
            assert len(limited) == 3 and srv.stats()["by_status"] == {200: 2, 429: 3}
            srv.set_faults(None)
            srv.reset_stats()
            await asyncio.gather(*(ask_async(client) for _ in range(5)))
            assert srv.stats()["by_status"] == {200: 5}
            await client.close()

    async def ask_async(client: openai.AsyncOpenAI) -> object:
        return await client.chat.completions.create(model="gpt-loopback", messages=USER)  # type: ignore[arg-type]

    asyncio.run(main())


# -- concurrency and subprocess use ---------------------------------------------------


def test_concurrency_counter_reports_max_in_flight_of_parallel_async_requests() -> None:
    n = 8

    async def main(srv: AnthropicServer) -> None:
        client = anthropic.AsyncAnthropic(base_url=srv.base_url, api_key=KEY, max_retries=0)
        replies = await asyncio.gather(
            *(client.messages.create(model="m", max_tokens=16, messages=USER) for _ in range(n))
        )
        assert len(replies) == n
        await client.close()

    with AnthropicServer(latency=0.3) as srv:
        started = time.monotonic()
        asyncio.run(main(srv))
        assert time.monotonic() - started < 0.3 * n / 2  # they really overlapped
        stats = srv.stats()
        assert (stats["requests"], stats["max_in_flight"], stats["in_flight"]) == (n, n, 0)


@pytest.mark.parametrize("module", ["openai_server", "anthropic_server"])
def test_runs_as_a_subprocess_and_prints_its_base_url(module: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tests.loopback.{module}", "--port", "0", "--latency", "0.01", "--script", "500"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        if module == "openai_server":
            client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=1)
            assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content
        else:
            client2 = anthropic.Anthropic(base_url=base_url, api_key=KEY, max_retries=1)
            assert client2.messages.create(model="m", max_tokens=8, messages=USER).content
        port = base_url.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/__loopback__/stats", timeout=5) as resp:
            stats = json.loads(resp.read())
        assert stats["requests"] == 2 and stats["faults"] == {"500": 1}
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
