"""``python -m lab log merge``: SQLite logs from other machines into one log (SQLite or PostgreSQL),
each row exactly once; a conflicting row is refused with a one-line reason."""

from __future__ import annotations

import sqlite3

import pytest

import lab
from lab.cli import main

pytestmark = pytest.mark.usefixtures("backend")

PROMPT = "task: t\nescape_hatch: UNSURE\nvariants:\n  a:\n    user: 'Say {{ text }}'\n  b:\n    user: 'Tell {{ text }}'\n"


def _machine(tmp_path, write, name: str, exp: str, inputs: list[str], resume: bool = False) -> str:
    """A SQLite log as another machine would have made it: an experiment, its grades and events."""
    path = str(tmp_path / f"{name}.db")
    log = lab.log(path)
    rows = [{"id": i, "text": i, "expected": i} for i in inputs]
    runs = lab.experiment(write("p.yaml", PROMPT), rows, model="scripted:echo", id=exp, log=log, resume=resume).run()
    lab.grade(runs, lab.graders.match())
    log.close()
    return path


def test_logs_from_two_machines_merge_into_one_exactly_once(backend, tmp_path, write, capsys):
    laptop = _machine(tmp_path, write, "laptop", "exp-laptop", ["x", "y"])
    runner = _machine(tmp_path, write, "ci", "exp-ci", ["z"])
    assert main(["log", "merge", laptop, runner, "--into", backend]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "2 runs" in out and "into " in out

    team = lab.log(backend)
    assert set(team.experiments()["id"]) == {"exp-laptop", "exp-ci"}  # the compare view lists both
    for path in (laptop, runner):
        mine = lab.log(path)
        for exp in mine.experiments()["id"]:
            assert sorted(team.runs(experiment=exp)["id"]) == sorted(mine.runs(experiment=exp)["id"])
            assert sorted(team.grades(experiment=exp)["id"]) == sorted(mine.grades(experiment=exp)["id"])
            assert len(team.events(exp)) == len(mine.events(exp)) > 0
    before = {t: len(getattr(team, t)()) for t in ("runs", "grades", "events", "experiments", "prompt_versions")}

    assert main(["log", "merge", laptop, runner, "--into", backend]) == 0  # again: nothing added
    assert "nothing new" in capsys.readouterr().out
    again = lab.log(backend)
    assert {t: len(getattr(again, t)()) for t in before} == before
    assert again.runs()["seq"].is_unique


def test_an_experiment_resumed_on_another_machine_merges_into_one(backend, tmp_path, write, capsys):
    first = _machine(tmp_path, write, "first", "shared", ["x", "y"])
    # the second machine resumed it from a copy of the first log and finished it
    second = str(tmp_path / "second.db")
    sqlite3.connect(first).backup(dst := sqlite3.connect(second))
    dst.close()
    _machine(tmp_path, write, "second", "shared", ["x", "y", "z"], resume=True)
    assert main(["log", "merge", first, second, "--into", backend]) == 0
    df = lab.log(backend).runs(experiment="shared")
    assert len(df) == 6 and df["id"].is_unique  # 2 variants x 3 inputs, each call once


def test_a_conflicting_row_is_refused_with_a_one_line_reason_and_the_rest_is_merged(backend, tmp_path, write,
                                                                                       capsys):
    good = _machine(tmp_path, write, "good", "exp-a", ["x"])
    assert main(["log", "merge", good, "--into", backend]) == 0
    forged = str(tmp_path / "forged.db")
    sqlite3.connect(good).backup(dst := sqlite3.connect(forged))
    changed = dst.execute("SELECT id FROM runs ORDER BY seq LIMIT 1").fetchone()[0]
    dst.execute("UPDATE runs SET output = 'something else' WHERE id = ?", (changed,))
    dst.commit()
    dst.close()
    other = _machine(tmp_path, write, "other", "exp-b", ["y"])
    capsys.readouterr()

    assert main(["log", "merge", forged, other, "--into", backend]) == 1
    captured = capsys.readouterr()
    refused = [line for line in captured.err.splitlines() if line.startswith("refused:")]
    assert len(refused) == 1 and changed in refused[0] and "output" in refused[0] and "not merged" in refused[0]
    team = lab.log(backend)
    assert team.run(changed)["output"] != "something else"  # the log keeps what it had
    assert len(team.runs(experiment="exp-b")) == 2  # the rest went in


def test_a_missing_source_file_is_one_line(backend, tmp_path, capsys):
    assert main(["log", "merge", str(tmp_path / "nope.db"), "--into", backend]) == 2
    err = capsys.readouterr().err
    assert "no such run log file" in err and "Traceback" not in err
