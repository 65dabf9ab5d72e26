"""API keys never leave the environment: not into the log file, an export, printed output or an error.

The batch runs through the real openai SDK against the loopback server, with a "model" that leaks the
key into its answers and errors; then every byte the lab wrote is scanned for the key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lab
from lab.cli import main as cli_main
from tests.loopback import FaultPlan, OpenAIServer

KEY = "sk-proj-FAKEtestKEY0123456789abcdefXYZ"
TOKEN = "tok_9f8e7d6c5b4a3f2e1d0c"  # not key-shaped: only known because it is in the environment
PROMPT = "task: t\nparams: {temperature: 0, max_tokens: 64}\nvariants:\n  a:\n    user: 'Say {{ text }}'\n"


def leaky(request: dict) -> str:
    text = request["messages"][-1]["content"]
    if "crash" in text:
        raise RuntimeError(f"upstream failed with key {KEY} and token {TOKEN}")
    return f"{text}; by the way, your key is {KEY} and the token is {TOKEN}"


def every_file_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_no_secret(blobs: dict, where: str) -> None:
    for name, blob in blobs.items():
        data = blob if isinstance(blob, bytes) else str(blob).encode()
        for secret in (KEY, TOKEN):
            assert secret.encode() not in data, f"{secret[:8]}... found in {name} ({where})"


@pytest.fixture
def env_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", TOKEN)


def test_a_batch_writes_no_key_anywhere(env_key, write, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    prompt = write("p.yaml", PROMPT)
    inputs = [{"id": "ok", "text": "hello"}, {"id": "crash", "text": "crash now"},
              {"id": "pasted", "text": f"my key is {KEY}"}]  # a key pasted into an input by mistake
    log = lab.log(out / "log.db")
    with OpenAIServer(responder=leaky, faults=FaultPlan(script=["ok", "ok", "ok"])) as srv:
        model = "openai:gpt-loopback"
        runs = lab.experiment(prompt, inputs, model=model, log=log, concurrency=1,
                              provider_options={model: {"base_url": srv.base_url, "max_retries": 0}}).run()
        assert all(r.has_auth for r in srv.request_log())  # the key did reach the server
    df = runs.df.set_index("input_id")
    assert df.loc["ok", "outcome"] == "answered" and "[REDACTED:OPENAI_API_KEY]" in df.loc["ok", "output"]
    assert df.loc["crash", "outcome"] == "error" and "[REDACTED" in df.loc["crash", "error"]
    texts = {"repr": repr(runs), "str": str(runs), "html": runs._repr_html_(), "df": df.to_csv(),
             "events": log.events().to_csv(), "experiments": log.experiments().to_csv()}
    log.export(runs.experiment_id, out / "export")
    assert cli_main(["--log", str(out / "log.db"), "show", runs.experiment_id, "--outputs"]) == 0
    assert cli_main(["--log", str(out / "log.db"), "runs"]) == 0
    printed = capsys.readouterr()
    log.close()
    files = every_file_under(out)
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "log.db" for p in files)
    assert_no_secret(files, "files written")
    assert_no_secret(texts, "views")
    assert_no_secret({"stdout": printed.out, "stderr": printed.err}, "printed")


@pytest.mark.parametrize("params", [{"api_key": KEY}, {"api_key": "whatever-it-is"}, {"user": KEY},
                                    {"stop": [TOKEN]}])
def test_a_key_passed_as_a_parameter_is_refused_without_echoing_it(params, env_key, write, run_log, model_calls):
    with pytest.raises(lab.ParameterError, match="looks like a secret; keys come from the environment only") as info:
        lab.experiment(write("p.yaml", PROMPT), [{"id": "r1", "text": "hi"}], model="scripted:echo", params=params,
                       log=run_log).run()
    assert KEY not in str(info.value) and TOKEN not in str(info.value)
    assert model_calls == [] and run_log.runs().empty and run_log.experiments().empty


def test_a_key_passed_on_the_command_line_is_refused_without_echoing_it(env_key, write, tmp_path, capsys,
                                                                       model_calls):
    code = cli_main(["--log", str(tmp_path / "cli.db"), "run", str(write("p.yaml", PROMPT)), "--inputs",
                     str(write("in.yaml", "- {id: r1, text: hi}\n")), "--model", "scripted:echo",
                     "-p", f"api_key={KEY}"])
    printed = capsys.readouterr()
    assert code == 2 and "looks like a secret" in printed.err
    assert_no_secret({"stdout": printed.out, "stderr": printed.err}, "printed")
    assert model_calls == []
    if (tmp_path / "cli.db").exists():
        assert_no_secret(every_file_under(tmp_path), "files written")
