# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Persona or honest context?
#
# The same task framed two ways on the same inputs, repeats and seeds: a persona ("You are a
# world-class sentiment analyst") against honest context (who is asking, why, what a good answer
# looks like, and a declared way out). We learn which framing answers correctly more often, which
# one takes the way out on inputs that are not reviews at all, and whether the difference is larger
# than the noise between samples.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/persona_vs_honest_inputs.yaml"
repeats = 3
rounds = 1
concurrency = None
budget_usd = None
seed = 7
max_tokens = 24
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up

# %%
exp = lab.experiment(prompt, inputs, model=model, repeats=repeats, seed=seed, concurrency=concurrency,
                     budget_usd=budget_usd, params={"max_tokens": max_tokens}, id=experiment_id)
runs = exp.run()
lab.grade(runs, lab.graders.default_grader())
findings = lab.findings.from_log(exp.log, exp.id, a="honest", b="persona")
lab.report.answer(findings)

# %% [markdown]
# ## Is the difference real?

# %%
grades = exp.log.grades(exp.id)
lab.plots.paired_difference(runs.df, "honest", "persona", grades)

# %% [markdown]
# Calls are paired on input, repeat and seed; the interval is over inputs (repeats of one input are
# not independent evidence). Each point is honest - persona; an interval that crosses zero is not a finding.

# %% [markdown]
# ## How the answers were graded
#
# Every answer is graded against the input's `expected` answer (no grader is named, so the default:
# normalized match at the start of the output). The 48 inputs: 24 plain reviews, 12 odd but
# answerable ones (sarcasm, other languages, injected instructions), and 12 texts that are not reviews
# at all (`unanswerable`: a recipe, a shipping notice, code, an empty text), where the way out is the
# right answer. The answer at the top says which framing behaves appropriately more often (the right label
# where there is one, the way out where there is none), with 95% intervals over inputs and
# n = inputs x repeats, or that there is no winner. Tag readings are adjusted together (Holm).
#
# ## Outcomes per framing
#
# Correct, wrong, escaped and failed calls per variant, with 95% intervals over inputs, one panel per
# input tag. An escape on an `unanswerable` input is the right call; on a `normal` one it is a missed answer.

# %%
lab.plots.outcome_rates(runs.df, grades)

# %% [markdown]
# ## Every output, graded: inputs down, framings across
#
# Click a cell for the whole output, its grade and why; filter to failures, disagreements or a tag.
# The totals under each column are the share of outputs that behaved appropriately, with an interval
# over inputs.

# %%
lab.grid.results_grid(runs.df, grades)

# %% [markdown]
# ## The difference per input tag (from `lab.stats.paired_difference`)

# %%
difference = lab.stats.paired_difference(lab.tables.with_grades(runs.df, grades), "honest", "persona", split_by_tag=True)
lab.tables.readable(difference[["difference", "low", "high", "inputs", "pairs", "p_value", "verdict"]])

# %% [markdown]
# ## Calls, outcomes, latency and cost per framing

# %%
lab.tables.readable(runs.summary())

# %%
lab.plots.cost_latency(runs.df)
