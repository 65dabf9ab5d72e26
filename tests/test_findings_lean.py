"""The findings `python -m lab run` and `show` print come from the log's rows without pandas, and say
exactly what the notebook API (`lab.findings.findings` over DataFrames) says about the same runs."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lab
from lab.findings import findings, from_log
from lab.holdout import search, with_selection
from lab.selection import annotate, search_of
from lab.store import RunRecord
from tests.conftest import ROOT
from tests.test_findings_properties import experiments

pytestmark = pytest.mark.usefixtures("backend")

EXAMPLES = int(os.environ.get("PROMPTLAB_PROPERTY_EXAMPLES", "12"))
_ids = itertools.count()


def _write(log, runs, grades, *, errors: float, judge: bool, seed: int) -> str:
    """The generated experiment as a user's log holds it: honest in two versions (a choice was made on
    these inputs), some calls ended in an error or at max tokens, some inputs with expected answers,
    and on request a judge's grades with unreadable replies."""
    exp = f"lean-{next(_ids)}"
    rng = np.random.default_rng(seed)
    records = []
    for r in runs.to_dict("records"):
        error = rng.random() < errors
        records.append(RunRecord(
            id=f"{exp}-{r['id']}", experiment_id=exp, model=r["model"], messages=[{"role": "user", "content": "x"}],
            outcome="error" if error else r["outcome"], task="t", variant=r["variant"],
            prompt_version=f"{r['variant']}-v{r['repeat'] % 2 if r['variant'] == 'honest' else 0}",
            input_id=r["input_id"], input_tags=r["input_tags"], repeat=r["repeat"], output=r["output"],
            expected="x" if r["input_id"].endswith("1") else None, role=r["role"],
            finish_reason="length" if rng.random() < 0.1 else "stop", finished_at=f"2026-12-07T20:{len(records):06d}"))
    log.add_runs(records)
    rows = [{"run_id": f"{exp}-{g['run_id']}", "grader": g["grader"], "score": g["score"], "passed": g["passed"],
             "experiment_id": exp} for g in grades.to_dict("records")]
    if judge:
        rows += [{**g, "grader": "judge:m", "label": "unparsed" if rng.random() < 0.3 else None} for g in rows]
    log.add_grades(rows)
    return exp


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(exp=experiments(), errors=st.sampled_from([0.0, 0.1]), judge=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_findings_read_from_the_log_say_exactly_what_the_dataframe_path_says(run_log, exp, errors, judge, seed):
    exp_id = _write(run_log, *exp, errors=errors, judge=judge, seed=seed)
    runs, grades = run_log.runs(experiment=exp_id), run_log.grades(exp_id)
    lean = from_log(run_log, exp_id)
    frames = findings(runs, grades, experiment_id=exp_id)
    assert str(lean) == str(frames) and lean._repr_html_() == frames._repr_html_()
    ids = [str(i) for i in runs["input_id"].dropna().unique()]
    tried = search(run_log, "t", ids, until=str(runs["finished_at"].max()))
    assert str(with_selection(lean, run_log, exp_id)) == str(annotate(frames, runs, grades,
                                                                         search_of(tried, [lean.a, lean.b], len(ids))))


def test_run_and_show_leave_pandas_and_scipy_stats_unloaded(backend, write):
    """The whole `run` command (its calls, the SQL summary, grading, findings and the selection clause)
    and `show` in a fresh process: pandas (with pyarrow) and scipy.stats are never imported."""
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: '{{ text }}'\n  b:\n    user: 'Say: {{ text }}'\n")
    inputs = write("in.yaml", "".join(f"- {{id: i{i}, text: w{i}, expected: w{i}}}\n" for i in range(8)))
    script = (
        "import json, sys, tests.scripted\n"
        "from lab.cli import main\n"
        "log, prompt, inputs = sys.argv[1:]\n"
        "heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'pyarrow') or m == 'scipy.stats')\n"
        "assert main(['--log', log, 'run', prompt, '--inputs', inputs, '-m', 'scripted:echo', '--repeats', '2',"
        " '--id', 'lean']) == 0\n"
        "after_run = heavy()\n"
        "assert main(['--log', log, 'show', 'lean']) == 0\n"
        "print(json.dumps([after_run, heavy()]))\n")
    proc = subprocess.run([sys.executable, "-c", script, backend, str(prompt), str(inputs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PROMPTLAB_PROGRESS": "off"})
    assert proc.returncode == 0, proc.stderr
    assert "Findings for lean (grader match:default)" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[], []]
    assert lab.log(backend).grades("lean")["grader"].eq("match:default").sum() == 32
