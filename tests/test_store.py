"""The run log: append-only rows, filters, as_of, migrations, two writers, a killed writer.

Every test runs on both backends (a SQLite file and a fresh PostgreSQL database) but those marked
``sqlite_only``, which read the file themselves."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import lab
from lab.migrations import MIGRATIONS, migrate
from lab.store import RunRecord

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("backend")


def _rec(exp: str, i: int, **kw) -> RunRecord:
    base = dict(experiment_id=exp, model="scripted:echo", messages=[{"role": "user", "content": f"q{i}"}],
                outcome="answered", output=f"a{i}", variant="v", input_id=f"r{i}", input_tags=["normal"], repeat=0)
    base.update(kw)
    return RunRecord(**base)


def test_rows_come_back_as_a_dataframe_with_json_columns_decoded(run_log):
    run_log.add_run(_rec("e1", 1, input_tags=["edge", "unanswerable"], params={"temperature": 0.2}))
    df = run_log.runs(experiment="e1")
    assert isinstance(df, pd.DataFrame) and len(df) == 1
    row = df.iloc[0]
    assert row.messages == [{"role": "user", "content": "q1"}]
    assert row.input_tags == ["edge", "unanswerable"] and row.params == {"temperature": 0.2}
    assert row.lab_version == lab.__version__


def test_filters_by_experiment_variant_model_tag_and_outcome(run_log):
    run_log.add_run(_rec("e1", 1, variant="a", input_tags=["edge"]))
    run_log.add_run(_rec("e1", 2, variant="b", outcome="escaped"))
    run_log.add_run(_rec("e2", 3, variant="a", model="local:smollm2"))
    assert list(run_log.runs(experiment="e1").input_id) == ["r1", "r2"]
    assert list(run_log.runs(variant="a").input_id) == ["r1", "r3"]
    assert list(run_log.runs(model="local:smollm2").input_id) == ["r3"]
    assert list(run_log.runs(tag="edge").input_id) == ["r1"]
    assert list(run_log.runs(outcome="escaped").input_id) == ["r2"]
    assert list(run_log.runs(experiment=["e1", "e2"], variant="a").input_id) == ["r1", "r3"]


def test_as_of_rereads_a_table_exactly_as_it_was(run_log):
    for i in range(3):
        run_log.add_run(_rec("e1", i))
    v = run_log.version()
    before = run_log.runs(experiment="e1")
    run_log.add_run(_rec("e1", 9))
    run_log.add_grade(before.id[0], "human:ann", score=4)
    assert len(run_log.runs(experiment="e1")) == 4
    pd.testing.assert_frame_equal(run_log.runs(experiment="e1", as_of=v), before)
    assert run_log.grades(as_of=v).empty and len(run_log.grades()) == 1
    # a timestamp works too
    ts = before.finished_at.iloc[-1]
    assert len(run_log.runs(experiment="e1", as_of=ts)) == 3


def test_grades_are_rows_that_point_at_runs_and_never_rewrite_them(run_log):
    rid = run_log.add_run(_rec("e1", 1))
    run_log.add_grade(rid, "expected:exact", passed=False, score=0.0, experiment_id="e1")
    run_log.add_grade(rid, "expected:exact", passed=True, score=1.0, experiment_id="e1")  # a regrade
    g = run_log.grades(experiment="e1")
    assert list(g.passed) == [0, 1] and set(g.run_id) == {rid}
    assert run_log.runs(experiment="e1").output.tolist() == ["a1"]


@pytest.mark.sqlite_only
def test_an_old_schema_log_migrates_without_loss(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, upto="m001_initial")  # a log written by the first release
    db.execute(
        "INSERT INTO runs (id, experiment_id, model, messages, output, outcome, finished_at, repeat) "
        "VALUES ('r-old', 'e-old', 'local:smollm2', '[]', 'kept', 'answered', '2026-01-01T00:00:00+00:00', 2)"
    )
    db.close()
    log = lab.log(path)
    applied = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert applied == [m.__name__ for m in MIGRATIONS]
    df = log.runs(experiment="e-old")
    assert df.output.tolist() == ["kept"] and df.repeat.tolist() == [2]
    assert df.role.tolist() == ["answer"] and df.turn.tolist() == [0]  # new columns get their defaults
    log.add_grade("r-old", "human:ann", score=5)  # a table the old schema lacked
    assert len(log.grades()) == 1


def test_new_ids_are_uuid7_in_the_order_made_and_their_short_form_is_random():
    """Ids sort in the order they were made (the log's id and conversation indexes grow at their end),
    and the short form people see (the last 8 characters) differs even for ids of one millisecond."""
    import uuid

    from lab.store import new_id

    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert {uuid.UUID(i).version for i in ids} == {7} and {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}
    assert ids == sorted(ids)
    assert len({i[-8:] for i in ids}) > 19_990  # 32 random bits: a repeat among 20k is possible, rare


def test_export_writes_parquet_that_reads_back(run_log, tmp_path):
    for i in range(3):
        run_log.add_run(_rec("e1", i))
    out = run_log.export("e1", tmp_path / "exp")
    back = pd.read_parquet(out / "runs.parquet")
    assert list(back.input_id) == ["r0", "r1", "r2"]


_WRITER = textwrap.dedent("""
    import sys, time
    import lab
    from lab.store import RunRecord
    log = lab.log(sys.argv[1])
    tag, n, pause = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    for i in range(n):
        log.add_run(RunRecord(experiment_id=tag, model="scripted:echo", messages=[], outcome="answered",
                              output=str(i), input_id=str(i)))
        print(i, flush=True)
        time.sleep(pause)
""")


def _writer(path: Path | str, tag: str, n: int, pause: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, str(n), str(pause)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_one_log_lose_nothing(backend):
    path = backend
    lab.log(path)  # create it first, as a notebook would
    procs = [_writer(path, tag, 400, 0.0) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err
    log = lab.log(path)
    assert len(log.runs(experiment="a")) == 400 and len(log.runs(experiment="b")) == 400


def test_a_killed_writer_keeps_every_finished_row(backend):
    path = backend
    p = _writer(path, "k", 10_000, 0.002)
    printed = []
    while len(printed) < 50:
        printed.append(p.stdout.readline())
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    if not path.startswith("postgresql:"):
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    rows = lab.log(path).runs(experiment="k")
    # every row the writer reported as written is there (it may have written one more before dying)
    assert len(rows) >= 50
    assert rows.output.tolist()[:50] == [str(i) for i in range(50)]


def test_one_run_is_read_back_by_its_id(run_log, write):
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: 'Say {{ text }}'\n")
    runs = lab.experiment(prompt, [{"id": "i1", "text": "hi"}], model="scripted:echo", log=run_log).run()
    first = runs.records[0]
    row = run_log.run(first.id)
    assert row["id"] == first.id and row["input_id"] == "i1" and row["output"] == first.output
    assert run_log.run("no-such-run") is None



def test_many_grades_are_written_in_one_transaction_with_consecutive_versions(run_log):
    ids = run_log.add_runs([_rec("e1", i) for i in range(3)])
    before = run_log.version()
    gids = run_log.add_grades([dict(run_id=r, grader="expected:exact", passed=i != 1, score=float(i != 1),
                                    experiment_id="e1") for i, r in enumerate(ids)])
    g = run_log.grades(experiment="e1")
    assert g["id"].tolist() == gids and g["passed"].tolist() == [1, 0, 1]
    assert g["seq"].tolist() == [before + 1, before + 2, before + 3] and run_log.version() == before + 3
    assert run_log.add_grades([]) == []
