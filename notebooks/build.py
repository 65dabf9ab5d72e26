"""Write the lab's notebooks from the cells below: ``python notebooks/build.py``.

The notebooks are committed with outputs stripped and kernelspec ``python3``. Edit a notebook
here (or in JupyterLab, then port the change back) and re-run this script; tests check that
every notebook in this folder executes headless with papermill.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = "import lab\n\nroot = lab.project_root(chdir=True)  # paths below are relative to the project root"

BATCH_PARAMETERS = '''model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/sentiment_inputs.yaml"
repeats = {repeats}
rounds = {rounds}
concurrency = None
budget_usd = None
seed = 7
max_tokens = {max_tokens}
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up'''

RUN = '''exp = lab.experiment(prompt, inputs, model=model, repeats=repeats, seed=seed, concurrency=concurrency,
                     budget_usd=budget_usd, params={{"max_tokens": max_tokens}}, id=experiment_id{extra})
runs = exp.run()
runs.summary()'''


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def parameters(text: str) -> nbformat.NotebookNode:
    return code(text, "parameters")


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def batch(repeats: int = 3, rounds: int = 1, max_tokens: int = 24, extra_params: str = "") -> nbformat.NotebookNode:
    return parameters(BATCH_PARAMETERS.format(repeats=repeats, rounds=rounds, max_tokens=max_tokens) + extra_params)


NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {
    "workbench.ipynb": [
        md("""
# Workbench

Try one prompt on one input, then look harder: **Retry** draws another sample of the same call
(all samples stay side by side with their frequencies: one sample is noise), **Reset** starts a
clean context, the follow-up box asks again in the same thread, **Self-critique** lets the model
review and revise its answer. Edit the template in place to make a new version (the old one stays
in the version list). Outputs are shown as text, never as live HTML. Every call is logged.
"""),
        code(SETUP),
        parameters('''model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/sentiment_inputs.yaml"
max_tokens = 48
experiment_id = None  # None: workbench-<time>-<hex>'''),
        code("wb = lab.workbench(prompt, inputs, model=model, params={\"max_tokens\": max_tokens}, "
             "experiment_id=experiment_id)\nwb"),
        md("""
## What you have tried so far

Re-run this cell after a few calls: the outcome of every call made from the workbench above,
read back from the run log, with the number of calls on each bar (two calls are not a rate).
While a blind comparison has unrated samples, the variant names are hidden here too.
"""),
        code("wb.tried_so_far()"),
    ],
    "persona_vs_honest.ipynb": [
        md("""
# Persona or honest context?

The same task framed two ways on the same inputs, repeats and seeds: a persona ("You are a
world-class sentiment analyst") against honest context (who is asking, why, what a good answer
looks like, and a declared way out). We learn which framing answers correctly more often, which
one takes the way out on inputs that are not reviews at all, and whether the difference is larger
than the noise between samples.
"""),
        code(SETUP),
        batch(),
        code(RUN.format(extra="")),
        md("""
## Findings

Every answer is graded against the input's `expected` answer (no grader is named, so the default:
normalized match at the start of the output). Reviews are answerable; the recipe and the empty
text are `unanswerable`, where the way out is the right answer. The block below says which framing
behaves appropriately more often (the right label where there is one, the way out where there is
none), with 95% intervals over inputs and n = inputs x repeats, or that there is no winner.
"""),
        code("""lab.grade(runs, lab.grading.default_grader())
findings = lab.findings.from_log(exp.log, exp.id, a="honest", b="persona")
findings"""),
        md("""
## Outcomes per framing

Correct, wrong, escaped and failed calls per variant, with 95% intervals over inputs, one panel per
input tag. An escape on an `unanswerable` input is the right call; on a `normal` one it is a missed answer.
"""),
        code("grades = exp.log.grades(exp.id)\nlab.plots.outcome_rates(runs.df, grades)"),
        md("""
## Is the difference real?

Calls are paired on input, repeat and seed; the interval is over inputs (repeats of one input are
not independent evidence). Each point is honest - persona; an interval that crosses zero is not a finding.
"""),
        code('lab.plots.paired_difference(runs.df, "honest", "persona", grades)'),
        code('lab.stats.paired_difference(lab.with_grades(runs.df, grades), "honest", "persona", split_by_tag=True)'),
        md("## What it cost"),
        code("lab.plots.cost_latency(runs.df)"),
    ],
    "escape_hatch.ipynb": [
        md("""
# Give the model a way out, then read the outs

The prompt declares a way out (`UNSURE`). Here we run it on edge cases and look at where the model
took it: escapes on `unanswerable` inputs mean the way out works; escapes on answerable ones tell
us where the prompt or the data is strange. The escaped outputs themselves are the report.
"""),
        code(SETUP),
        batch(repeats=2, extra_params='\ntags = None  # e.g. ["edge", "unanswerable"]: only inputs with these tags'),
        code(RUN.format(extra=", tags=tags")),
        md("""
## How the way out was used

Escapes on `unanswerable` inputs (right) against over-abstention on answerable ones (wrong), and
coverage, per variant, with 95% intervals.
"""),
        code("lab.techniques.escape_report(runs.df)"),
        code("lab.plots.outcome_rates(runs.df)"),
        md("## The outs themselves: where did the model say it cannot tell?"),
        code('runs.df.query("outcome == \'escaped\'")[["variant", "input_id", "input_tags", "output"]]'),
    ],
    "retry_spread.ipynb": [
        md("""
# One sample is noise: retry spread

Each input is answered several times in fresh contexts with different seeds. When a model knows
something, its answers agree across samples; when it guesses, they scatter. We learn which inputs
are stable, which are coin flips, and how many distinct answers each produced.
"""),
        code(SETUP),
        batch(repeats=5, extra_params="\ntemperature = 0.7"),
        code(RUN.format(extra="").replace('{"max_tokens": max_tokens}',
                                          '{"max_tokens": max_tokens, "temperature": temperature}')),
        md("## Agreement across samples per input (the label is the number of distinct answers)"),
        code("lab.plots.retry_spread(runs.df)"),
        md("## The answers per input: distinct answers, the majority, agreement"),
        code('lab.techniques.spread(runs.df)[["samples", "distinct", "majority", "agreement", "answers"]]'),
    ],
    "self_critique.ipynb": [
        md("""
# Self-critique: does reviewing its own answer help?

The model answers a checkable word problem, critiques its answer against a rubric, then revises
it; up to `rounds` times (a chain stops early when the critique finds nothing to fix). Every
round's answer is graded by the prompt file's grader. Round 0 is the first answer. We learn
whether revisions get more answers right, or whether the model talks itself out of right ones
(small models often do).
"""),
        code(SETUP),
        parameters('''model = "local:smollm2"
prompt = "prompts/arithmetic.yaml"
inputs = "prompts/arithmetic_inputs.yaml"
rubric = "The last line is 'ANSWER: <number>' and the number correctly solves the word problem."
repeats = 1
rounds = 2
concurrency = None
budget_usd = None
seed = 7
max_tokens = 64
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up'''),
        code('''critique = lab.techniques.self_critique(prompt, inputs, rubric=rubric, rounds=rounds, model=model,
                                       repeats=repeats, seed=seed, params={"max_tokens": max_tokens},
                                       concurrency=concurrency, budget_usd=budget_usd, id=experiment_id)
critique.by_round()'''),
        md("## Score by round, per variant (95% intervals)"),
        code("lab.plots.critique_rounds(critique.runs, lab.log().grades(critique.experiment_id))"),
        md("## Each chain's answers across rounds"),
        code("critique.side_by_side()"),
    ],
    "ablation.ipynb": [
        md("""
# Which part of the honest context does the work?

The honest variant of `prompts/factual_parts.yaml` is written in named parts (who is asking, why,
what a good answer looks like, vocabulary, the way out, the question). `lab.ablate` leaves each part
out in turn, and adds each to the persona, on the same inputs, repeats and seeds as the full
variant. We learn which parts change the correct-answer, escape and over-abstention rates beyond
the noise. The plan and its cost are printed before any call.
"""),
        code(SETUP),
        parameters('''model = "local:smollm2"
prompt = "prompts/factual_parts.yaml"
inputs = "prompts/factual_parts_inputs.yaml"
variant = "honest"
base = "persona"  # None: no add-one-part variants
repeats = 2
seed = 7
max_tokens = 12
concurrency = None
budget_usd = None
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up'''),
        code('''ablation = lab.ablate(prompt, inputs, variant=variant, base=base, model=model, repeats=repeats, seed=seed,
                      params={"max_tokens": max_tokens}, concurrency=concurrency, budget_usd=budget_usd,
                      id=experiment_id)
print(ablation.verdict())'''),
        md("""
## Effect of removing each part

One row per part: the paired change in the correct-answer rate when it is left out, with its 95%
interval over inputs. Red rows are beyond the noise; an interval across zero is not a finding.
"""),
        code("ablation.figure()"),
        code('ablation.figure("appropriate_escape")'),
        md("## The numbers, per part, measure and input tag (from `lab.stats.paired_difference`)"),
        code("ablation.effects()"),
        md("## A part added to the persona: does persona + one part do as well?"),
        code("ablation.effects(added=True) if base else None"),
        md("## Outputs that changed when the way out was removed"),
        code('ablation.changed("way_out")'),
    ],
    "confidence.ipynb": [
        md("""
# Does the model know when it does not know?

Factual questions, some with no true answer, run with `confidence=True`: the log keeps, per call,
the model's probability for its answer and for the escape string. We read calibration (does 70%
confidence mean right 70% of the time?), selective answering (abstain below a threshold, with the
escape hatch as a point on the same axes) and confident hallucinations on unanswerable inputs.
"""),
        code(SETUP),
        parameters('''model = "local:smollm2"
prompt = "prompts/factual_parts.yaml"
inputs = "prompts/factual_parts_inputs.yaml"
repeats = 3
seed = 7
max_tokens = 12
concurrency = None
budget_usd = None
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up'''),
        code('''report = lab.confidence(prompt, inputs, model=model, repeats=repeats, seed=seed, params={"max_tokens": max_tokens},
                        concurrency=concurrency, budget_usd=budget_usd, id=experiment_id)
report.availability()'''),
        md("## Calibration per variant and tag: Brier score and ECE with 95% intervals over inputs"),
        code("report.calibration()"),
        md("## Reliability: stated confidence against observed correctness (answers per bin as labels)"),
        code("report.reliability_figure()"),
        md("""
## Selective answering

Each line abstains below a confidence threshold; the diamond is the declared escape hatch. A
diamond above its variant's line abstains on better inputs than a threshold would.
"""),
        code("report.selective_figure()"),
        md("## Confident hallucinations: answers given on unanswerable inputs, and how sure they were"),
        code("report.hallucinations()"),
        md("## The sampled outcome next to the probability of being right"),
        code("report.scores()"),
    ],
    "compare.ipynb": [
        md("""
# Compare experiments from the log

Everything here is drawn from the run log, so it can be re-drawn exactly as it was (`as_of`).
Pick experiments (default: the latest), then read outcomes per variant and tag, cost, and the
outputs side by side. The interactive view at the end does the same with widgets.
"""),
        code(SETUP),
        parameters('''experiments = None  # a list of experiment ids; None: the latest one in the log
as_of = None  # a log version (int) or a UTC timestamp: redraw the log as it was then'''),
        code('''log = lab.log()
chosen = experiments or list(log.experiments()["id"].tail(1))
runs = log.runs(experiment=chosen, as_of=as_of)
grades = log.grades(as_of=as_of)
lab.widgets.findings_block(runs, grades)'''),
        md("## Per variant: calls, outcomes, latency and cost"),
        code("lab.summary(runs)"),
        md("## Outcomes per variant and input tag"),
        code("lab.plots.outcome_rates(runs, grades)"),
        md("## Score by prompt version: did the edits help?"),
        code("lab.plots.score_by_version(runs, grades)"),
        md("## Latency, tokens and cost"),
        code("lab.plots.cost_latency(runs)"),
        md("## Outputs side by side, per input"),
        code("lab.side_by_side(runs, grades)"),
        md("## Interactive: choose experiments, variants and tags"),
        code("lab.compare_view(experiments=chosen)"),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), HERE / name)
        print(f"wrote notebooks/{name}")


if __name__ == "__main__":
    main()
