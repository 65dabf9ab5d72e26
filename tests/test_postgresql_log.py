"""The run log on a PostgreSQL server: what only a server log does (its connection can drop, the
server can go away, several machines write one experiment). Everything both backends do is tested
on both in test_store, test_runner, test_log_scale and test_cli."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import lab
from lab.store import RunRecord
from lab.store.backend import PostgreSQL
from tests.postgres import fresh_database

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def url(postgres_server) -> str:
    return fresh_database(postgres_server)


def _rec(exp: str, i: int) -> RunRecord:
    return RunRecord(experiment_id=exp, model="scripted:echo", messages=[{"role": "user", "content": f"q{i}"}],
                     outcome="answered", output=f"a{i}", variant="v", input_id=f"r{i}")


def test_a_server_log_that_goes_away_keeps_finished_calls_in_the_recovery_file_and_ingests_them_once(
        url, write, monkeypatch, capfd, tmp_path):
    monkeypatch.setenv("PROMPTLAB_RECOVERY_DIR", str(tmp_path / "not-yet-made"))
    log = lab.store.RunLog(url, busy_timeout_s=1)
    assert log.recovery_path.parent == tmp_path / "not-yet-made"
    real_begin = PostgreSQL.begin_write

    def server_gone(self):
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(PostgreSQL, "begin_write", server_gone)
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: 'Say {{ text }}'\n")
    runs = lab.experiment(prompt, [{"id": f"i{i}", "text": str(i)} for i in range(6)], model="scripted:echo",
                          log=log).run()  # ends normally: every call accounted for
    assert len(runs) == 6 and log.recovery_path.exists()
    assert "kept in" in capfd.readouterr().err
    kept = log.recovery_path.read_text()
    log.close()

    monkeypatch.setattr(PostgreSQL, "begin_write", real_begin)
    again = lab.log(url)  # the next open on this machine ingests the file and removes it
    df = again.runs()
    assert len(df) == 6 and set(df["id"]) == {r.id for r in runs.records}
    assert not again.recovery_path.exists()
    again.recovery_path.write_text(kept)  # a crash before the file was removed: nothing twice
    assert again.ingest_recovery() == 0 and len(lab.log(url).runs()) == 6


def test_a_dropped_server_connection_is_reopened_without_losing_a_row(url):
    log = lab.log(url)
    log.add_run(_rec("e", 0))
    with psycopg.connect(url, autocommit=True) as admin:  # as a server restart would
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'promptlab'")
    log.add_run(_rec("e", 1))
    assert not log.recovery_path.exists()
    with pytest.raises(lab.StoreError, match="cannot read the runs table"):  # the read that finds it dropped
        log.runs(experiment="e")
    assert log.runs(experiment="e").input_id.tolist() == ["r0", "r1"]  # and the next read reconnects


_PART = """
import sys
import lab
from lab.providers import register_provider
from tests.scripted import ScriptedProvider

# the scripted echo, a few ms a call, so that a process can be killed in the middle of its part
register_provider("scripted", lambda model, rest, options: ScriptedProvider(model, rest, delay=0.01))
url, prompt, inputs, resume = sys.argv[1:5]
runs = lab.experiment(prompt, inputs, model="scripted:echo", id="shared", log=url, concurrency=4,
                      resume=resume == "resume").run()
print(len(runs), runs.skipped)
"""


def _part(url: str, prompt, inputs, resume: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _PART, url, str(prompt), str(inputs),
                             "resume" if resume else "fresh"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows_of(url: str, prefix: str) -> int:
    with psycopg.connect(url) as conn:
        try:
            return conn.execute("SELECT count(*) FROM runs WHERE input_id LIKE %s", (prefix + "-%",)).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def test_three_processes_write_one_experiment_and_a_killed_one_is_resumed_from_another(url, write):
    # three "machines" (processes with their own connections) each take 500 calls of one experiment;
    # the third is killed (SIGKILL) in the middle of its part and another process resumes it
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: 'Say {{ text }}'\n")
    parts = {p: write(f"{p}.jsonl", "\n".join(f'{{"id": "{p}-{i}", "text": "{p} {i}"}}' for i in range(500)))
             for p in ("a", "b", "c")}
    lab.log(url).close()  # the schema exists before they start, as on a team's server
    procs = {p: _part(url, prompt, parts[p]) for p in parts}
    deadline = time.monotonic() + 60
    while _rows_of(url, "c") < 100 and procs["c"].poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(procs["c"].pid, signal.SIGKILL)
    procs["c"].wait(timeout=30)
    assert procs["c"].returncode == -signal.SIGKILL
    done_before = _rows_of(url, "c")
    assert 100 <= done_before < 500
    for p in ("a", "b"):
        out, err = procs[p].communicate(timeout=120)
        assert procs[p].returncode == 0, err
        assert out.split() == ["500", "0"]

    resumed = _part(url, prompt, parts["c"], resume=True)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    made, skipped = map(int, out.split())
    assert skipped == done_before and made == 500 - done_before

    df = lab.log(url).runs(experiment="shared", columns=["input_id", "outcome", "seq"])
    assert len(df) == 1500 and df["input_id"].is_unique  # every call exactly once
    assert set(df["input_id"]) == {f"{p}-{i}" for p in "abc" for i in range(500)}
    assert (df.outcome == "answered").all() and df["seq"].is_unique


def test_a_server_log_locked_longer_than_the_busy_timeout_gets_every_row_once_it_frees(url, write, capfd):
    import threading

    from lab.store.backend import _WRITE_LOCK_KEY

    log = lab.store.RunLog(url, busy_timeout_s=0.2, lock_wait_s=60)
    holder = psycopg.connect(url, autocommit=True)  # another machine in the middle of a long write
    holder.execute("SELECT pg_advisory_lock(%s)", (_WRITE_LOCK_KEY,))
    release = threading.Timer(1.5, lambda: holder.execute("SELECT pg_advisory_unlock(%s)", (_WRITE_LOCK_KEY,)))
    release.start()
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: 'Say {{ text }}'\n")
    runs = lab.experiment(prompt, [{"id": f"i{i}", "text": str(i)} for i in range(5)], model="scripted:echo",
                          log=log).run()
    release.join()
    holder.close()
    df = lab.log(url).runs(experiment=runs.experiment_id)
    assert len(df) == 5 and df["id"].is_unique and not log.recovery_path.exists()
    err = capfd.readouterr().err
    assert "is locked by another process" in err and "Traceback" not in err
