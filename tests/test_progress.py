"""Progress as shared reports show it: batch notebooks print one plain stdout line per batch (a
stderr stream is drawn as a pink box in JupyterLab and in the HTML report, and reads like an error)."""

from __future__ import annotations

import lab
from lab.progress import Progress


def test_quiet_progress_writes_one_plain_stdout_line_when_the_batch_is_done(capsys):
    p = Progress(3, "exp-1", "quiet")
    for outcome in ("answered", "escaped", "answered"):
        p.update(outcome)
    assert capsys.readouterr() == ("", "")  # nothing while it runs
    p.close()
    p.close()
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count("\n") == 1 and out.startswith("exp-1: 3/3 calls (answered 2, escaped 1, error 0) in ")


def test_an_experiment_in_a_report_kernel_prints_its_progress_to_stdout_only(monkeypatch, capsys, run_log):
    monkeypatch.setenv("PROMPTLAB_PROGRESS", "quiet")  # what run_notebook gives the kernel
    lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml", model="scripted:seeded",
                   seed=1, log=run_log, id="quiet-exp").run()
    out, err = capsys.readouterr()
    assert err == "" and out.strip().startswith("quiet-exp: 16/16 calls")


def test_text_progress_still_writes_lines_to_stderr_for_terminals(capsys):
    p = Progress(2, "exp-2", "text")
    p.update("answered")
    p.update("answered")
    p.close()
    out, err = capsys.readouterr()
    assert out == "" and "exp-2: 2/2 calls" in err
