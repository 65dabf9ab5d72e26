"""Iteration that cannot fool you: held-out inputs, the search in the findings, confirm once."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

import lab
import lab.cli
from tests import scripted
from tests.conftest import ROOT

# answers right on about 60% of seeds, whatever the prompt: no version is truly better
scripted.SCRIPTS["coin"] = lambda m, p: random.Random(p.get("seed")).choice(["yes", "yes", "yes", "no", "no"])

PROMPT = """task: iterate
variants:
  base:
    user: "Answer yes. {{{{ q }}}}"
  edit:
    user: "{user}"
"""


def _inputs(write, n: int = 24):
    rows = "".join(f"- id: q{i}\n  tags: [{'edge' if i % 3 == 0 else 'normal'}]\n  q: question {i}\n  expected: 'yes'\n"
                   for i in range(n))
    return write("iter_inputs.yaml", rows)


def _prompt(write, user: str):
    return write("iter.yaml", PROMPT.format(user=user + " {{ q }}"))


def test_a_split_is_stratified_recorded_and_the_same_in_another_process(write, run_log):
    inputs = _inputs(write)
    s = lab.split_inputs(inputs, held_out=12, seed=3, log=run_log)
    assert len(s.dev) == 12 and len(s.held_out) == 12 and not set(s.dev) & set(s.held_out)
    edge = {f"q{i}" for i in range(0, 24, 3)}
    assert len(edge & set(s.held_out)) == 4  # 8 edge rows, half held out
    code = ("import lab, sys\n"
            f"s = lab.split_inputs({str(inputs)!r}, held_out=12, seed=3, log=lab.log(sys.argv[1] + '/other.db'))\n"
            "print(','.join(s.held_out))\n")
    other = subprocess.run([sys.executable, "-c", code, str(run_log.path.parent)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip().splitlines()[-1] == ",".join(s.held_out)  # a fresh log draws the same split
    assert lab.split_inputs(inputs, log=run_log) == s  # asking again reads the recorded one
    with pytest.raises(lab.ParameterError, match="never redrawn"):
        lab.split_inputs(inputs, held_out=6, seed=3, log=run_log)


def test_run_uses_the_dev_part_by_default_and_says_so(write, run_log, capsys):
    inputs = _inputs(write)
    s = lab.split_inputs(inputs, held_out=10, log=run_log)
    exp = lab.experiment(_prompt(write, "Say yes."), inputs, model="scripted:coin", seed=1, log=run_log)
    runs = exp.run()
    assert "using the dev part" in capsys.readouterr().out
    assert set(runs.df["input_id"]) == set(s.dev) and exp.split == "dev"
    held = lab.experiment(_prompt(write, "Say yes."), inputs, model="scripted:coin", split="held_out", log=run_log)
    assert {r.id for r in held.inputs} == set(s.held_out)
    with pytest.raises(lab.ParameterError, match="split it|lab.split_inputs"):
        lab.experiment(_prompt(write, "Say yes."), inputs, model="scripted:coin", split="held_out",
                       log=lab.log(run_log.path.with_name("fresh.db")))


def _iterate(write, run_log, inputs, edits):
    cmp = None
    for user in edits:
        cmp = lab.compare_framings(_prompt(write, user), inputs, variants=["edit", "base"], repeats=2, seed=0,
                                   model="scripted:coin", grader=lab.graders.match(), log=run_log)
    return cmp


def test_a_finding_on_dev_after_three_versions_carries_the_selection_clause(write, run_log):
    inputs = _inputs(write)
    lab.split_inputs(inputs, held_out=12, log=run_log)
    first = _iterate(write, run_log, inputs, ["Say yes."])
    assert not any("versions tried" in c for c in first.findings().caveats)
    third = _iterate(write, run_log, inputs, ["Please say yes.", "Reply yes."])
    caveat = third.findings().caveats[0]
    assert "edit was tried in 3 versions on these 12 inputs: read as the best of 3, its advantage here is optimistic" \
        in caveat
    assert "allowing for the search (best of 3" in caveat and "lab.confirm" in caveat
    tried = lab.holdout.search(run_log, "iterate", lab.split_inputs(inputs, log=run_log).dev)
    assert tried.groupby("variant")["prompt_version"].nunique().to_dict() == {"base": 1, "edit": 3}


def test_the_selection_clause_on_too_few_inputs_says_so_without_numbers_it_cannot_have(write, run_log):
    inputs = _inputs(write, n=8)
    lab.split_inputs(inputs, held_out=4, log=run_log)  # 4 dev inputs: below the 6 an interval needs
    third = _iterate(write, run_log, inputs, ["Say yes.", "Please say yes.", "Reply yes."])
    caveat = third.findings().caveats[0]
    assert "read as the best of 3" in caveat and "only held-out inputs can confirm" in caveat, caveat
    assert "nan" not in caveat.lower(), caveat

def test_confirm_writes_its_own_experiment_and_a_second_confirm_reports_the_reuse(write, run_log):
    inputs = _inputs(write)
    s = lab.split_inputs(inputs, held_out=12, log=run_log)
    _iterate(write, run_log, inputs, ["Say yes.", "Reply yes."])
    conf = lab.confirm(_prompt(write, "Reply yes."), inputs, candidate="edit", baseline="base",
                       model="scripted:coin", grader=lab.graders.match(), log=run_log)
    runs = run_log.runs(experiment=conf.experiment_id)
    assert set(runs["input_id"]) == set(s.held_out) and len(runs) == 12 * 2 * 3
    f = conf.findings()
    assert f.experiment_id == conf.experiment_id and f.verdict is not None
    assert "took no part in the choice" in f.caveats[0]
    again = lab.confirm(_prompt(write, "Answer: yes."), inputs, candidate="edit", baseline="base",
                        model="scripted:coin", grader=lab.graders.match(), log=run_log)
    assert again.uses == 2 and again.experiment_id != conf.experiment_id
    assert "have now been used for 2 choices" in str(again.findings())
    used = lab.holdout.uses(run_log, "iter_inputs")
    assert list(used["detail"].map(lambda d: d["experiment"])) == [conf.experiment_id, again.experiment_id]


def test_try_version_steps_the_loop_on_dev_and_the_figure_shows_every_version_beside_the_confirmation(write, run_log):
    inputs = _inputs(write)
    s = lab.split_inputs(inputs, held_out=12, log=run_log)
    prompt = _prompt(write, "Say yes.")
    steps = [lab.techniques.try_version(prompt, inputs, "edit", "base", user=text + " {{ q }}", model="scripted:coin",
                                        grader=lab.graders.match(), log=run_log, repeats=2)
             for text in ("Reply yes.", "Answer: yes.", "Yes?")]
    assert all(set(c.runs["input_id"]) == set(s.dev) for c in steps)
    assert "tried in 3 versions" in steps[-1].findings().caveats[0]
    conf = lab.confirm(prompt, inputs, candidate=steps[1].runs["prompt_version"].iloc[0], baseline="base",
                       model="scripted:coin", grader=lab.graders.match(), log=run_log, repeats=1)
    assert conf.candidate == "edit" and conf.uses == 1
    fig = conf.figure()
    dev, held = fig.data
    assert len(dev.x) == 4 and list(held.x) == ["held-out: edit", "held-out: base"]  # 3 edits + the baseline


def test_confirm_needs_a_split_made_before_iterating(write, run_log):
    with pytest.raises(lab.ParameterError, match="no held-out part"):
        lab.confirm(_prompt(write, "Say yes."), _inputs(write), candidate="edit", baseline="base",
                    model="scripted:coin", log=run_log)


@pytest.mark.slow
def test_the_loop_on_the_local_model(write, run_log):
    inputs = write("tiny.yaml", "".join(f"- id: t{i}\n  q: 'Is {i} + 1 = {i + 1}? Answer yes or no.'\n  expected: 'yes'\n"
                                        for i in range(6)))
    lab.split_inputs(inputs, held_out=3, log=run_log)
    for user in ("Answer yes or no.", "Reply with one word."):
        lab.compare_framings(_prompt(write, user), inputs, variants=["edit", "base"], repeats=1, seed=0,
                             grader=lab.graders.match(), log=run_log, params={"max_tokens": 4})
    conf = lab.confirm(_prompt(write, "Reply with one word."), inputs, candidate="edit", baseline="base",
                       repeats=1, grader=lab.graders.match(), log=run_log, params={"max_tokens": 4})
    assert len(run_log.runs(experiment=conf.experiment_id)) == 3 * 2 and conf.uses == 1
    assert "took no part in the choice" in str(conf.findings())


def test_the_workbench_offers_the_dev_part_and_confirms_an_edit_on_the_held_out_part(write, run_log):
    inputs = _inputs(write)
    s = lab.split_inputs(inputs, held_out=12, log=run_log)
    wb = lab.workbench(_prompt(write, "Say yes."), inputs, variant="edit", model="scripted:coin", log=run_log)
    assert set(wb.input.options) - {"(typed input)"} == set(s.dev)
    assert "using the dev part" in wb.status.value
    wb.user.value = "Reply yes. {{ q }}"
    wb.confirm_button.click()
    wb.wait(60)
    assert "Findings for" in wb.input_set_view.value and "took no part in the choice" in wb.input_set_view.value
    used = lab.holdout.uses(run_log, "iter_inputs")
    assert len(used) == 1 and set(run_log.runs(experiment=used["detail"][0]["experiment"])["input_id"]) == set(s.held_out)


def test_the_cli_runs_the_dev_part_by_default_and_held_out_when_asked(write, run_log, capsys):
    inputs = _inputs(write)
    s = lab.split_inputs(inputs, held_out=12, log=run_log)
    prompt = str(_prompt(write, "Say yes."))
    assert lab.cli.main(["--log", str(run_log.path), "run", prompt, "-i", str(inputs), "-m", "scripted:coin"]) == 0
    assert "using the dev part" in capsys.readouterr().out
    assert lab.cli.main(["--log", str(run_log.path), "run", prompt, "-i", str(inputs), "-m", "scripted:coin",
                         "--split", "held_out"]) == 0
    assert "using the held_out part" in capsys.readouterr().out
    last = run_log.experiments()["id"].iloc[-1]
    assert set(run_log.runs(experiment=last)["input_id"]) == set(s.held_out)


def test_a_plan_from_a_pilot_sizes_the_held_out_part(write, run_log, capsys):
    inputs = _inputs(write)
    pilot = lab.compare_framings(_prompt(write, "Say yes."), inputs, variants=["edit", "base"], repeats=2,
                                 model="scripted:coin", grader=lab.graders.match(), log=run_log).runs
    plan = lab.stats.plan(pilot, "edit", "base", difference=0.3)
    s = lab.split_inputs(inputs, held_out=plan, log=lab.log(run_log.path.with_name("split.db")))
    assert len(s.held_out) == min(plan.recommended.inputs, 24 - 6)


def test_the_iteration_bench_ends_with_its_summary_line():
    out = subprocess.run([sys.executable, "bench/iteration.py", "--trials", "10", "--no-write"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"false improvements: naive \d+%, selection-aware \d+%, confirmed \d+%", last), last
