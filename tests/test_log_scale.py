"""The run log under load: a log locked by another process loses no finished call, rows are committed
in groups off the event loop, plans are lazy and bounded, and reading a big experiment stays in SQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab
from lab.providers.base import Completion
from lab.store import RunRecord
from tests import scripted

ROOT = Path(__file__).resolve().parents[1]

PROMPT = "task: t\nvariants:\n  a:\n    user: 'Say {{ n }}'\n  b:\n    user: 'Tell me {{ n }}'\n"

# Holds a write transaction on a log for a while, as another notebook or a sqlite3 shell might.
_LOCKER = ("import sqlite3, sys, time\n"
           "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
           "db.execute('BEGIN IMMEDIATE')\n"
           "print('locked', flush=True)\n"
           "time.sleep(float(sys.argv[2]))\n"
           "db.execute('COMMIT')\n")


def _lock_when_called(path: Path, hold_s: float, at_call: int) -> list[subprocess.Popen]:
    """A script for the scripted provider that, on its ``at_call``-th call, has another process take the
    log's write lock for ``hold_s`` seconds (so the lock arrives in the middle of the batch)."""
    lockers: list[subprocess.Popen] = []
    counter = itertools.count(1)

    def answer(messages, params):
        if next(counter) == at_call:
            p = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path), str(hold_s)], stdout=subprocess.PIPE,
                                 text=True)
            assert p.stdout.readline().strip() == "locked"
            lockers.append(p)
        return "ok " + messages[-1]["content"]

    scripted.SCRIPTS["lock-midway"] = answer
    return lockers


def test_a_log_locked_longer_than_the_busy_timeout_gets_every_finished_call_once_it_frees(write, tmp_path, capfd):
    path = tmp_path / "locked.db"
    lockers = _lock_when_called(path, hold_s=1.5, at_call=5)
    log = lab.store.RunLog(path, busy_timeout_s=0.2, lock_wait_s=60)
    exp = lab.experiment(write("p.yaml", PROMPT), [{"id": f"i{i}", "n": i} for i in range(15)],
                         model="scripted:lock-midway", concurrency=3, log=log)
    runs = exp.run()
    lockers[0].wait(timeout=30)

    assert len(runs) == 30
    df = lab.log(path).runs(experiment=exp.id)
    assert len(df) == 30 and df["id"].is_unique and set(df["id"]) == {r.id for r in runs.records}
    assert not log.recovery_path.exists()
    err = capfd.readouterr().err
    assert "is locked by another process" in err and "written when it frees" in err
    assert "Traceback" not in err and "OperationalError" not in err


def test_calls_finished_while_the_log_stays_locked_go_to_a_recovery_file_that_the_next_open_ingests_once(
        write, tmp_path, capfd):
    path = tmp_path / "locked.db"
    lockers = _lock_when_called(path, hold_s=3, at_call=3)
    log = lab.store.RunLog(path, busy_timeout_s=0.1, lock_wait_s=0.5)
    exp = lab.experiment(write("p.yaml", PROMPT), [{"id": f"i{i}", "n": i} for i in range(10)],
                         model="scripted:lock-midway", concurrency=2, log=log)
    runs = exp.run()  # ends normally: nothing raised, every call accounted for
    assert len(runs) == 20
    assert log.recovery_path.exists()
    assert "kept in" in capfd.readouterr().err
    kept = log.recovery_path.read_text()
    lockers[0].wait(timeout=30)
    log.close()

    again = lab.log(path)  # the next open ingests the file and removes it
    df = again.runs(experiment=exp.id)
    assert len(df) == 20 and df["id"].is_unique and set(df["id"]) == {r.id for r in runs.records}
    assert not again.recovery_path.exists()
    assert "ingested" in capfd.readouterr().err
    # a crash between ingesting and removing the file leaves it behind: ingesting again adds nothing
    again.recovery_path.write_text(kept)
    assert again.ingest_recovery() == 0
    assert len(lab.log(path).runs(experiment=exp.id)) == 20


def test_an_event_kept_in_the_recovery_file_is_ingested_once(backend):
    # events have no id of their own: a file ingested twice (a crash before it was removed) must not
    # leave the "finished" event of a run twice in the log
    log = lab.log(backend)
    log.add_event("e1", "started", calls=3)
    row = {"experiment_id": "e1", "at": "2026-11-29T01:00:00.000001+00:00", "kind": "finished", "detail": '{"made": 3}'}
    line = ('{"table": "events", "columns": %s, "values": %s, "ignore": false}\n'
            % (json.dumps(list(row)), json.dumps(list(row.values()))))
    log.recovery_path.write_text(line)
    assert log.ingest_recovery() == 1
    log.recovery_path.write_text(line)
    assert log.ingest_recovery() == 0
    assert list(log.events("e1")["kind"]) == ["started", "finished"]


def test_a_worker_starts_its_next_call_while_the_last_row_is_still_being_committed(write, run_log, monkeypatch):
    # a commit slower than a call must not leave concurrency slots idle: with 4 slots and every commit
    # held for 1 s, all 12 calls are made during the first commit, and each is reported only once its
    # row is in the log (a worker that waited for its commit would make calls 5-12 after it)
    in_flight, peak, call_ends, commit_ends = [0], [0], [], []

    async def answer_later(self, messages, params):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.02)
        in_flight[0] -= 1
        call_ends.append(time.monotonic())
        return Completion(text="ok")

    slow_commit = lab.store._Writer._commit

    def held(self, items):
        if not any(table == "runs" for table, *_ in items):
            return slow_commit(self, items)
        time.sleep(1.0)
        try:
            return slow_commit(self, items)
        finally:
            commit_ends.append(time.monotonic())

    monkeypatch.setattr(scripted.ScriptedProvider, "complete", answer_later)
    monkeypatch.setattr(lab.store._Writer, "_commit", held)
    exp = lab.experiment(write("p.yaml", PROMPT), [{"id": f"i{i}", "n": i} for i in range(6)],
                         model="scripted:echo", concurrency=4, log=run_log)
    runs = exp.run()
    assert len(runs) == 12 and peak[0] == 4
    assert max(call_ends) < min(commit_ends)
    committed = set(run_log.runs(experiment=exp.id, columns=["id"])["id"])
    assert {r.id for r in runs.records} == committed


@pytest.mark.usefixtures("backend")
def test_rows_appended_concurrently_share_commits_and_one_sequence_with_grades(run_log):
    async def many() -> list[str]:
        return await asyncio.gather(*(run_log.append_run(RunRecord(
            experiment_id="e", model="m", messages=[{"role": "user", "content": str(i)}], outcome="answered",
            output=str(i))) for i in range(200)))

    ids = asyncio.run(many())
    run_log.add_grade(ids[0], "human:ana", passed=True)
    # another connection sees every row: each was committed before append_run returned
    other = lab.log(run_log.path)
    assert len(other.runs(columns=["id"])) == 200
    seqs = sorted(other.runs(columns=["seq"])["seq"].tolist() + other.grades()["seq"].tolist())
    assert seqs == list(range(1, 202))
    assert run_log.version() == 201


def test_a_plan_beyond_the_bound_is_refused_at_once_with_its_size_and_cost(write, run_log):
    prompt = write("p.yaml", PROMPT)
    t0 = time.perf_counter()
    with pytest.raises(lab.ParameterError) as err:
        lab.experiment(prompt, [{"id": "x", "n": 1}], model="openai:gpt-4o-mini", repeats=10**9, log=run_log)
    assert time.perf_counter() - t0 < 5  # building the plan took minutes and gigabytes
    msg = str(err.value)
    assert "2,000,000,000 calls" in msg and "max_calls=1,000,000" in msg and "--max-calls" in msg
    assert "estimated cost up to $" in msg and "\n" not in msg


def test_an_allowed_huge_plan_is_built_lazily_as_calls_are_taken(write, run_log):
    exp = lab.experiment(write("p.yaml", PROMPT), [{"id": "x", "n": 1}], model="scripted:echo", repeats=10**9,
                         max_calls=10**10, log=run_log)
    assert exp.size == 2 * 10**9
    first = list(itertools.islice(exp.iter_plan(), 4))
    assert [(c.variant.name, c.repeat) for c in first] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


def test_the_bound_comes_from_the_environment(write, run_log, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_MAX_CALLS", "10")
    with pytest.raises(lab.ParameterError, match="max_calls=10"):
        lab.experiment(write("p.yaml", PROMPT), [{"id": "x", "n": 1}], model="scripted:echo", repeats=6,
                       log=run_log)


def test_the_cli_prints_the_plan_size_and_refuses_without_the_override(write, tmp_path):
    prompt = write("p.yaml", PROMPT)
    inputs = write("in.yaml", "- {id: x, n: 1}\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lab", "--log", str(tmp_path / "l.db"), "run", str(prompt),
                           "--inputs", str(inputs), "-n", "1000000000"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert time.perf_counter() - t0 < 10
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2,000,000,000 calls" in proc.stderr and "--max-calls 2000000000" in proc.stderr


def test_a_run_pulls_calls_from_the_plan_as_workers_free_up(write, run_log):
    in_flight_tasks: list[int] = []

    def answer(messages, params):
        in_flight_tasks.append(len(asyncio.all_tasks()))
        return "ok"

    scripted.SCRIPTS["count-tasks"] = answer
    exp = lab.experiment(write("p.yaml", PROMPT), [{"id": f"i{i}", "n": i} for i in range(500)],
                         model="scripted:count-tasks", concurrency=8, log=run_log)
    runs = exp.run()
    assert len(runs) == 1000 and len(run_log.runs(experiment=exp.id, columns=["id"])) == 1000
    assert max(in_flight_tasks) <= 8 + 2  # the workers and the run itself, not one task per call


def _rows(exp: str, n: int) -> list[RunRecord]:
    out = []
    for i in range(n):
        outcome = ("answered", "escaped", "error")[i % 3]
        out.append(RunRecord(
            experiment_id=exp, model=("openai:gpt-4o-mini", "local:smollm2")[i % 2], variant=("a", "b", "c")[i % 5 % 3],
            messages=[{"role": "user", "content": f"q{i}"}], outcome=outcome, input_id=f"in{i}",
            input_vars={"n": i}, output=None if outcome == "error" else f"out{i}",
            latency_ms=10.0 + i, output_tokens=None if outcome == "error" else i % 7,
            cost_usd=None if i % 11 == 0 else 0.001 * i))
    return out


def _call(exp: str, variant: str, outcome: str, latency_ms: float, tokens: int | None, cost: float | None,
          model: str = "openai:gpt-4o-mini") -> RunRecord:
    return RunRecord(experiment_id=exp, model=model, variant=variant, messages=[{"role": "user", "content": "q"}],
                     outcome=outcome, input_id="in", output=None if outcome == "error" else "out",
                     latency_ms=latency_ms, output_tokens=tokens, cost_usd=cost)


@pytest.mark.usefixtures("backend")
def test_the_summary_counts_outcomes_and_sums_cost_only_when_every_price_is_known(run_log):
    run_log.add_runs([_call("e", "a", "answered", 10, 3, 0.001), _call("e", "b", "answered", 40, 5, None),
                      _call("e", "a", "escaped", 20, 2, 0.002), _call("e", "a", "error", 31, None, None),
                      _call("e", "b", "error", 50, None, 0.0), _call("other", "a", "answered", 99, 9, 9.0)])
    s = run_log.summary("e")
    assert s.index.name == "variant" and list(s.index) == ["a", "b"]  # one model: per variant, as first seen
    assert s.loc["a", ["n", "answered", "escaped", "errors", "output_tokens"]].tolist() == [3, 1, 1, 1, 5]
    assert s.loc["a", "mean_latency_ms"] == 20.3
    assert math.isnan(s.loc["a", "cost_usd"])  # the error's price is unknown: no partial sum
    assert s.loc["b", ["n", "answered", "errors"]].tolist() == [2, 1, 1] and math.isnan(s.loc["b", "cost_usd"])
    run_log.add_runs([_call("known", "a", "answered", 10, 1, 0.25), _call("known", "a", "error", 10, None, 0.0)])
    assert run_log.summary("known").loc["a", "cost_usd"] == 0.25


@pytest.mark.usefixtures("backend")
def test_the_summary_is_per_variant_and_model_when_an_experiment_has_several_models(run_log):
    run_log.add_runs([_call("e", "b", "answered", 10, 1, 0.5, model="local:smollm2"),
                      _call("e", "a", "answered", 10, 1, 0.5), _call("e", "b", "escaped", 30, 2, 0.25),
                      _call("e", "a", "answered", 20, 1, 0.5)])
    s = run_log.summary("e")
    assert s.index.names == ["variant", "model"]
    assert list(s.index) == [("b", "local:smollm2"), ("a", "openai:gpt-4o-mini"), ("b", "openai:gpt-4o-mini")]
    assert s["n"].tolist() == [1, 2, 1] and s["mean_latency_ms"].tolist() == [10.0, 15.0, 30.0]
    assert s["cost_usd"].tolist() == [0.5, 1.0, 0.25]
    assert run_log.summary("e", model="local:smollm2").index.tolist() == ["b"]  # filters as log.runs


@pytest.mark.usefixtures("backend")
def test_the_summary_of_an_experiment_without_runs_is_an_empty_table(run_log):
    s = run_log.summary("nothing")
    assert s.empty and list(s.columns) == ["n", "answered", "escaped", "errors", "mean_latency_ms", "output_tokens",
                                           "cost_usd"]


@pytest.mark.usefixtures("backend")
def test_runs_reads_and_decodes_only_the_columns_asked_for(run_log):
    run_log.add_runs(_rows("e", 5))
    df = run_log.runs(experiment="e", columns=["input_id", "input_vars", "outcome"])
    assert list(df.columns) == ["input_id", "input_vars", "outcome"]
    assert df["input_vars"].tolist() == [{"n": i} for i in range(5)]
    with pytest.raises(lab.StoreError, match="'colour'.*not columns of the runs table"):
        run_log.runs(columns=["colour"])


def test_import_lab_and_cli_help_do_not_import_pandas():
    code = ("import sys, lab, lab.cli\n"
            "try:\n    lab.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('pandas' in sys.modules, callable(lab.context), lab.whole_context.Context.__name__, callable(lab.context))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False True Context True"


def test_show_summary_only_prints_the_summary_from_sql_without_pandas(backend):
    log = lab.log(backend)
    log.add_runs(_rows("shown", 60))
    code = ("import sys, lab.cli\n"
            f"code = lab.cli.main(['--log', {str(log.path)!r}, 'show', 'shown', '--summary-only'])\n"
            "print('pandas' in sys.modules, code)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False 0"
    assert lines[0].split() == ["n", "answered", "escaped", "errors", "mean_latency_ms", "output_tokens", "cost_usd"]
    assert lines[1].split() == ["variant", "model"]
    expected = log.summary("shown").reset_index()
    first = lines[2].split()
    assert first[:2] == [expected.variant[0], expected.model[0]] and int(first[2]) == expected.n[0]
    assert len(lines) == 2 + len(expected) + 1


def test_show_prints_the_summary_then_the_findings(backend, capsys):
    from lab.cli import main

    log = lab.log(backend)
    log.add_runs(_rows("shown", 60))
    assert main(["--log", str(log.path), "show", "shown"]) == 0
    out = capsys.readouterr().out
    assert out.index("answered") < out.index("Findings for shown")


def test_the_findings_read_a_big_experiment_from_an_index_not_from_the_rows(tmp_path):
    """`show` on 100k rows: what the findings and the summary read is in one index (m010), so SQLite
    never touches the rows that carry messages; with a column added to the findings' list or to the
    summary the index must follow."""
    import sqlite3

    from lab.findings import RUN_FIELDS, from_log

    log = lab.log(tmp_path / "log.db")
    log.add_runs(_rows("e", 3))
    sql = log._select("runs", RUN_FIELDS)
    db = sqlite3.connect(tmp_path / "log.db")
    plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql, ["e"]))
    assert "COVERING INDEX runs_by_experiment" in plan, plan
    said: list[str] = []  # the summary's statements, as SQLite ran them (parameters filled in)
    log._db.raw.set_trace_callback(said.append)
    by, _, groups = log.summary_rows("e")
    assert by == ["variant", "model"] and [(g[0], g[2]) for g in groups] == [("a", 1), ("b", 1), ("c", 1)]
    log._db.raw.set_trace_callback(None)
    for statement in [s for s in said if s.lstrip().upper().startswith("SELECT")]:
        plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + statement))
        assert "COVERING INDEX runs_by_experiment" in plan, (statement, plan)
    assert log.run_columns("e", ["input_id"]) == [["in0", "in1", "in2"]]  # in log order, as the findings number them
    issued, execute = [], log._db.execute
    log._db.execute = lambda sql, args=(): issued.append((sql, list(args))) or execute(sql, args)
    from_log(log, "e")  # its distinct values, then each run's codes (RunLog.run_codes)
    reads = [(sql, args) for sql, args in issued if "FROM runs" in sql and "expected" not in sql]
    assert len(reads) == 2, issued
    for sql, args in reads:
        plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "COVERING INDEX runs_by_experiment" in plan, plan


def test_coded_columns_decode_to_exactly_what_the_rows_hold(backend):
    """The findings read a big experiment's few-valued columns as codes the database packs into one
    integer per run, and columns with many values as codes made here: decoded, every run gets its own
    value back, NULLs and awkward texts included."""
    names = ["plain", "it's \"quoted\"", "ünï cødé ✓", "", "NULL", "a,b;c", "nul\x00byte"]
    log = lab.log(backend)
    log.add_runs([RunRecord(
        experiment_id="e", model=f"m{i % 40}", messages=[{"role": "user", "content": "q"}], outcome="answered",
        variant=None if i % 7 == 0 else names[i % len(names)], input_id=None if i % 9 == 0 else f"in{i // 2}",
        input_tags=None if i % 4 == 0 else [["normal"], ["unanswerable", "hard"], []][i % 3], repeat=i % 3,
        finish_reason=[None, "stop", "length"][i % 3], role="answer") for i in range(120)])
    few = ["variant", "repeat", "model", "input_tags", "outcome", "role", "finish_reason"]  # model: 40 values, coded here
    coded, many, plain = log.run_codes("e", few, many=["input_id"], plain=["id"])
    assert [[values[c] for c in codes] for codes, values in coded + many] + plain == \
        log.run_columns("e", [*few, "input_id", "id"])
    coded, many, plain = log.run_codes("nothing", few, many=["input_id"], plain=["id"])
    assert [(len(codes), values) for codes, values in coded + many] == [(0, [])] * 8 and plain == [[]]
