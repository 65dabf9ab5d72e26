"""``python -m lab``: run, runs, show, export, and errors that exit cleanly with a message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import lab

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_run_then_runs_show_and_export_on_the_local_model(tmp_path):
    log = tmp_path / "cli.db"
    out = cli("--log", str(log), "run", "prompts/sentiment.yaml", "--inputs", "prompts/sentiment_inputs.yaml",
              "--tag", "unanswerable", "--repeats", "2", "--seed", "1", "--param", "max_tokens=8", "--id", "cli-exp",
              "--progress", "text")
    # the summary table: one line per variant with n, answered, escaped, errors, mean latency
    assert "mean_latency_ms" in out.stdout and "escaped" in out.stdout
    assert "persona" in out.stdout and "honest" in out.stdout
    assert f"Log: {log}" in out.stdout
    assert "8/8 calls" in out.stderr  # plain-text progress
    df = lab.log(log).runs(experiment="cli-exp")
    assert len(df) == 8 and set(df.variant) == {"persona", "honest"}

    listed = cli("--log", str(log), "runs")
    assert "cli-exp" in listed.stdout
    shown = cli("--log", str(log), "show", "cli-exp", "--outputs")
    assert "recipe" in shown.stdout and "empty" in shown.stdout
    cli("--log", str(log), "export", "cli-exp", str(tmp_path / "exp"))
    assert len(pd.read_parquet(tmp_path / "exp" / "runs.parquet")) == 8

    # resume: nothing left to do, no call made
    again = cli("--log", str(log), "run", "prompts/sentiment.yaml", "--inputs", "prompts/sentiment_inputs.yaml",
                "--tag", "unanswerable", "--repeats", "2", "--seed", "1", "--param", "max_tokens=8",
                "--id", "cli-exp", "--resume", "--progress", "off")
    assert "8 already done" in again.stdout
    assert len(lab.log(log).runs(experiment="cli-exp")) == 8


def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, write):
    bad = write("bad.yaml", "task: x\nvariants:\n  a:\n    user: hi\n    colour: red\n")
    proc = cli("--log", str(tmp_path / "l.db"), "run", str(bad), check=False)
    assert proc.returncode == 2
    assert "variants.a.colour" in proc.stderr and "line 5" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("--log", str(tmp_path / "l.db"), "run", "prompts/sentiment.yaml", "--inputs",
               "prompts/sentiment_inputs.yaml", "--model", "nope:x", check=False)
    assert proc.returncode == 2 and "unknown provider 'nope'" in proc.stderr


def test_show_of_an_unknown_experiment_says_how_to_list_them(tmp_path):
    proc = cli("--log", str(tmp_path / "l.db"), "show", "missing", check=False)
    assert proc.returncode == 2 and "python -m lab runs" in proc.stderr


PROMPT = "task: t\nvariants:\n  a:\n    user: 'Say {{ text }}'\n"


def test_run_runs_show_export_and_resume_work_on_both_backends(backend, write, tmp_path, capsys):
    from lab.cli import main

    prompt, inputs = write("p.yaml", PROMPT), write("in.yaml", "- {id: a, text: one}\n- {id: b, text: two}\n")
    run = ["--log", backend, "run", str(prompt), "--inputs", str(inputs), "-m", "scripted:echo", "--repeats", "2",
           "--id", "both", "--progress", "off"]
    assert main(run) == 0
    assert f"Log: {backend}" in capsys.readouterr().out
    assert main(["--log", backend, "runs"]) == 0 and "both" in capsys.readouterr().out
    assert main(["--log", backend, "show", "both"]) == 0 and "Findings for both" in capsys.readouterr().out
    assert main(["--log", backend, "export", "both", str(tmp_path / "exp")]) == 0
    assert len(pd.read_parquet(tmp_path / "exp" / "runs.parquet")) == 4
    assert main(run + ["--resume"]) == 0 and "4 already done" in capsys.readouterr().out
    assert len(lab.log(backend).runs(experiment="both")) == 4


def test_a_postgresql_url_is_never_taken_as_a_file_path(write, tmp_path, monkeypatch, capsys):
    from lab.cli import main

    monkeypatch.chdir(tmp_path)
    url = f"postgresql://nobody@/lab?host={tmp_path / 'no-server-here'}"
    code = main(["--log", url, "run", str(write("p.yaml", PROMPT)), "-m", "scripted:echo", "--inputs",
                 str(write("in.yaml", "- {id: a, text: one}\n"))])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open the run log" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "postgresql:").exists()


def test_a_password_in_the_log_url_is_refused_without_being_shown(capsys, monkeypatch):
    from lab.cli import main

    monkeypatch.setenv("PROMPTLAB_LOG", "postgresql://ann:hunter2-secret@db.example/lab")
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert "PGPASSWORD" in err and "hunter2-secret" not in err and "db.example/lab" in err


@pytest.mark.parametrize("argv, named", [
    (["run", "p.yaml", "--split", "nope"], "'--split': 'nope' is not one of 'dev', 'held_out', 'all'"),
    (["run", "p.yaml", "-p", "max_tokens"], "'--param' / '-p': --param wants NAME=VALUE, got 'max_tokens'"),
    (["run", "p.yaml", "--repeats", "three"], "'--repeats' / '-n': 'three' is not a valid integer"),
    (["show"], "Missing argument 'EXPERIMENT'"),
    (["show", "x", "--colour"], "No such option '--colour'"),
    (["batch", "submit", "p.yaml"], "Missing option '--model'"),
    (["log", "merge", "a.db"], "Missing option '--into'"),
])
def test_a_usage_error_exits_2_naming_the_option_before_anything_runs(argv, named, capsys, model_calls):
    from lab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Usage: python -m lab" in err and "Traceback" not in err
    assert model_calls == []


def test_log_may_come_before_or_after_the_command_and_the_later_one_wins(tmp_path, capsys):
    from lab.cli import main

    before, after = str(tmp_path / "before.db"), str(tmp_path / "after.db")
    assert main(["show", "x", "--log", after]) == 2  # as `run` prints it: show <id> --log <path>
    assert f"{after}: no run log there" in capsys.readouterr().err
    assert main(["--log", before, "runs", "--log", after]) == 2
    assert f"{after}: no run log there" in capsys.readouterr().err
    assert main(["--log", before, "runs"]) == 2
    assert f"{before}: no run log there" in capsys.readouterr().err


def test_run_notebook_grid_takes_every_value_up_to_the_next_option(monkeypatch, capsys):
    import lab.notebooks
    from lab.cli import main

    seen = {}

    def fake_grid(notebook, grid, base=None, **kwargs):
        seen.update(notebook=notebook, grid=grid, base=base, log=kwargs["log"])
        return lab.notebooks.GridRun()

    monkeypatch.setattr(lab.notebooks, "run_grid", fake_grid)
    assert main(["run-notebook", "nb.ipynb", "-g", "repeats", "2", "5", "-g", "model", "local:smollm2", "scripted:echo",
                 "-p", "temperature", "-0.5", "--no-html", "--log", "l.db"]) == 0
    assert seen == {"notebook": "nb.ipynb", "grid": {"repeats": [2, 5], "model": ["local:smollm2", "scripted:echo"]},
                    "base": {"temperature": -0.5}, "log": "l.db"}
    assert "0 of 0 parameter sets ran" in capsys.readouterr().out


def test_help_lists_the_commands_in_order_and_h_is_help(capsys):
    from lab.cli import main

    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    commands = ["run", "runs", "show", "export", "run-notebook", "export-html", "index", "batch", "log"]
    assert [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line[2:3].strip()] == commands
    assert main(["show", "--help"]) == 0 and "--summary-only" in capsys.readouterr().out


def test_run_notebook_prints_the_notebooks_summary_from_the_log_then_its_findings(write, run_log, monkeypatch,
                                                                                  capsys):
    import lab.notebooks
    from lab.cli import main

    inputs = write("in.yaml", "- {id: a, text: one}\n- {id: b, text: two}\n")
    exp = lab.experiment(write("p.yaml", PROMPT), inputs, model="scripted:echo", log=run_log, progress="off")
    exp.run()
    ran = lab.notebooks.NotebookRun(source=Path("nb.ipynb"), experiment_id=exp.id, parameters={},
                                    notebook=Path("out/nb.ipynb"), html=None, log_path=run_log.path, wall_s=1.0)
    monkeypatch.setattr(lab.notebooks, "run_notebook", lambda *args, **kwargs: ran)
    assert main(["run-notebook", "nb.ipynb", "--log", str(run_log.path)]) == 0
    out = capsys.readouterr().out
    summary = out.index("mean_latency_ms")
    assert out.splitlines()[out[:summary].count("\n") + 2].split()[:2] == ["a", "2"]  # variant a: 2 calls
    assert summary < out.index(f"Findings for {exp.id}") < out.index(f"experiment {exp.id}: 2 calls")
    assert ran.summary().loc["a", "n"] == 2  # the same table, as a DataFrame
