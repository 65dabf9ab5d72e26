"""Batches survive faults: failing calls, sustained rate limits, a killed process, two writers, a budget.

Every test talks to the in-repo loopback servers (tests/loopback/) through the official openai and
anthropic SDKs; counts are checked against the server's own request log and counters.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import lab
import lab.pricing
from lab.runner import Runner
from tests.loopback import AnthropicServer, FaultPlan, OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "task: faults\nparams: {temperature: 0, max_tokens: 32}\nvariants:\n  plain:\n    user: 'Say {{ text }}'\n"
ERROR_KINDS = {"429": "rate_limit", "500": "server", "503": "server", "529": "overloaded", "timeout": "timeout",
               "malformed": "malformed", "reset": "connection"}


@pytest.fixture
def prompt(write):
    return write("faults.yaml", PROMPT)


@pytest.fixture
def fast_backoff(monkeypatch):
    """The runner's own rate-limit retries, with waits short enough for tests."""
    monkeypatch.setattr(Runner, "backoff_s", 0.01)
    monkeypatch.setattr(Runner, "max_backoff_s", 0.1)


def rows(n: int) -> list[dict]:
    return [{"id": f"in{i:04d}", "text": f"item {i}"} for i in range(n)]


def target(kind: str, srv, monkeypatch, **options) -> tuple[str, dict]:
    """The model string and provider options that point one SDK at ``srv``."""
    if kind == "openai":
        model = f"openai-compatible:{srv.base_url}#gpt-loopback"
    else:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-fault-key-0123456789")
        model = "anthropic:claude-loopback-1"
        options["base_url"] = srv.base_url
    return model, {model: options}


SERVERS = {"openai": OpenAIServer, "anthropic": AnthropicServer}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_calls_that_keep_failing_become_error_rows_naming_the_reason(kind, prompt, run_log, monkeypatch):
    script = ["429", "500", "503", "529", "timeout", "malformed", "reset", "ok"]
    monkeypatch.setattr(Runner, "rate_limit_retries", 0)
    with SERVERS[kind](faults=FaultPlan(script=script, retry_after="0.01", slow_seconds=1.0)) as srv:
        model, options = target(kind, srv, monkeypatch, max_retries=0, timeout=0.3)
        runs = lab.experiment(prompt, rows(len(script)), model=model, concurrency=1, provider_options=options,
                              log=run_log).run()
    df = runs.df.set_index("input_id").sort_index()
    assert len(df) == len(script)
    for (input_id, row), fault in zip(df.iterrows(), script):
        if fault == "ok":
            assert row.outcome == "answered" and row.output == f"echo: Say item {input_id[2:].lstrip('0') or 0}"
        else:
            assert row.outcome == "error" and pd.isna(row.output)
            assert row.error.startswith(ERROR_KINDS[fault] + ": "), (fault, row.error)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_batch_with_a_share_of_failing_calls_finishes_and_logs_each_call_once(kind, prompt, run_log, monkeypatch,
                                                                             fast_backoff):
    plan = FaultPlan(rates={"429": 0.12, "500": 0.06, "529": 0.06, "timeout": 0.04, "malformed": 0.05, "reset": 0.05},
                     seed=7, retry_after="0.01", slow_seconds=0.8)
    n = 80
    with SERVERS[kind](faults=plan, log_size=5000) as srv:
        model, options = target(kind, srv, monkeypatch, max_retries=1, timeout=0.4)
        runs = lab.experiment(prompt, rows(n), model=model, concurrency=8, provider_options=options,
                              log=run_log).run()
        served = srv.request_log()
        stats = srv.stats()
    df = runs.df
    # every planned call is exactly one row: answered, or an error with its reason
    assert len(df) == n and df["input_id"].is_unique and len(runs) == n
    answered = df[df.outcome == "answered"]
    errors = df[df.outcome == "error"]
    assert len(answered) + len(errors) == n
    assert (answered["output"] == "echo: Say " + answered["input_vars"].map(lambda v: v["text"])).all()
    assert errors["error"].str.match(r"^(rate_limit|server|overloaded|timeout|malformed|connection): .+").all()
    # the server answered cleanly exactly as often as the log says "answered": nothing lost, nothing twice
    clean = sum(1 for r in served if r.path.endswith(("/chat/completions", "/messages")) and r.status == 200
                and r.fault is None)
    assert clean == len(answered)
    assert sum(stats["faults"].values()) > 10  # the faults really happened
    # and the summaries agree with the rows
    s = runs.summary()
    assert int(s["n"].sum()) == n and int(s["answered"].sum()) == len(answered)
    assert int(s["errors"].sum()) == len(errors)
    listed = run_log.experiments().set_index("id").loc[runs.experiment_id]
    assert (listed["calls"], listed["answered"], listed["errors"]) == (n, len(answered), len(errors))
    finished = run_log.events(runs.experiment_id).query("kind == 'finished'")["detail"].iloc[0]
    assert finished["made"] == n


def test_sustained_rate_limits_lower_concurrency_at_the_server_and_it_recovers(prompt, run_log, monkeypatch,
                                                                              fast_backoff):
    monkeypatch.setattr(Runner, "rate_limit_retries", 40)
    n = 900
    limited = FaultPlan(max_in_flight=3, retry_after="0.01")
    samples: list[tuple[str, int]] = []
    phase = ["before"]
    with OpenAIServer(latency=0.04) as srv:
        model, options = target("openai", srv, monkeypatch, max_retries=0, timeout=10)
        exp = lab.experiment(prompt, rows(n), model=model, concurrency=16, provider_options=options, log=run_log)
        out: dict = {}
        worker = threading.Thread(target=lambda: out.setdefault("runs", exp.run()))
        worker.start()
        t_limit = None
        while worker.is_alive():
            st = srv.stats()
            if phase[0] == "before" and st["requests"] >= 200:
                srv.set_faults(limited)
                phase[0], t_limit = "limited", time.monotonic()
            elif phase[0] == "limited" and time.monotonic() - t_limit > 1.5:
                srv.set_faults(None)
                phase[0] = "after"
            samples.append((phase[0], st["in_flight"]))
            time.sleep(0.005)
        worker.join()
    runs = out["runs"]
    by_phase = collections.defaultdict(list)
    for p, v in samples:
        by_phase[p].append(v)
    limited_tail = by_phase["limited"][len(by_phase["limited"]) // 2:]  # once the runner has reacted
    assert max(by_phase["before"]) >= 12
    assert sorted(limited_tail)[int(len(limited_tail) * 0.9)] <= 5, collections.Counter(limited_tail)
    assert max(by_phase["after"]) >= 12, collections.Counter(by_phase["after"])
    # every call got through in the end: the runner retried the 429s it saw
    assert len(runs.df) == n and (runs.df.outcome == "answered").all()


def test_a_budget_stops_the_batch_before_it_is_exceeded_and_says_so(prompt, run_log, monkeypatch, capsys):
    with OpenAIServer() as srv:
        model, options = target("openai", srv, monkeypatch)
        monkeypatch.setitem(lab.pricing._PRICES, model, lab.pricing.Price(1000.0, 2000.0))
        # a call reserves ~0.09 USD (its prompt at 2 characters a token, max_tokens in full) and costs ~0.01
        runs = lab.experiment(prompt, rows(40), model=model, concurrency=4, budget_usd=0.2, provider_options=options,
                              log=run_log).run()
        requests = srv.stats()["requests"]
    said = capsys.readouterr().out
    df = runs.df
    assert runs.stopped == "budget" and "stopped by budget" in said
    assert 0 < len(df) < 40 and len(df) == requests == len(runs)  # every call made is logged, none beyond
    assert df["cost_usd"].sum() <= 0.2 and runs.spent_usd == pytest.approx(df["cost_usd"].sum())
    stopped = run_log.events(runs.experiment_id).query("kind == 'stopped'")["detail"].iloc[0]
    assert stopped["reason"] == "budget" and stopped["spent_usd"] <= 0.2


# ---- processes --------------------------------------------------------------------------------


def lab_cli(*args: str, log: Path) -> list[str]:
    return [sys.executable, "-m", "lab", "--log", str(log), *args]


def count_rows(db: Path, experiment: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM runs WHERE experiment_id = ?", (experiment,)).fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


@pytest.mark.slow
def test_killed_batch_resumes_without_repeating_finished_calls(write, tmp_path):
    n = 160
    inputs = write("in.jsonl", "\n".join(f'{{"id": "k{i}", "text": "item {i}"}}' for i in range(n)))
    prompt = write("faults.yaml", PROMPT)
    db = tmp_path / "killed.db"
    with OpenAIServer(latency=0.03, log_size=5000) as srv:
        model = f"openai-compatible:{srv.base_url}#gpt-loopback"
        cmd = lab_cli("run", str(prompt), "--inputs", str(inputs), "--model", model, "--id", "X", "--concurrency", "4",
                      "--progress", "off", log=db)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while count_rows(db, "X") < 30 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        while srv.stats()["in_flight"]:  # requests of the dead process the server still holds
            time.sleep(0.01)
        answered_before = sum(1 for r in srv.request_log() if r.status == 200)

        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            done = {r[0] for r in con.execute("SELECT input_id FROM runs WHERE experiment_id = 'X'")}
        assert 30 <= len(done) < n
        # every call the server answered is in the log, but for the few in flight at the kill (concurrency
        # 4) and the rows handed to the log's writer thread whose commit had not ended (a few ms' worth)
        assert 0 <= answered_before - len(done) <= 4 + 4

        srv.reset_stats()
        res = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        asked = [r for r in srv.request_log() if r.path.endswith("/chat/completions")]
    assert len(asked) == n - len(done)  # zero calls for the finished ones
    assert f"{len(done)} already done (resumed)" in res.stdout
    final = lab.log(db).runs(experiment="X")
    assert len(final) == n and final["input_id"].is_unique and (final.outcome == "answered").all()


@pytest.mark.slow
def test_two_batch_processes_share_one_log_without_locking_errors(write, tmp_path):
    n = 300
    inputs = write("in.jsonl", "\n".join(f'{{"id": "w{i}", "text": "item {i}"}}' for i in range(n)))
    prompt = write("faults.yaml", PROMPT)
    db = tmp_path / "shared.db"
    lab.log(db).close()  # both writers find the schema in place
    with OpenAIServer() as srv:
        model = f"openai-compatible:{srv.base_url}#gpt-loopback"
        procs = [subprocess.Popen(lab_cli("run", str(prompt), "--inputs", str(inputs), "--model", model, "--id", eid,
                                          "--concurrency", "8", "--progress", "off", log=db),
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for eid in ("A", "B")]
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "locked" not in (out + err).lower()
    log = lab.log(db)
    a, b = log.runs(experiment="A"), log.runs(experiment="B")
    assert len(a) == n and len(b) == n and len(log.runs()) == 2 * n
    assert a.finished_at.min() < b.finished_at.max() and b.finished_at.min() < a.finished_at.max()  # they overlapped
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
