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
# # Give the model a way out, then read the outs
#
# The prompt declares a way out (`UNSURE`). Here we run it on edge cases and look at where the model
# took it: escapes on `unanswerable` inputs mean the way out works; escapes on answerable ones tell
# us where the prompt or the data is strange. The escaped outputs themselves are the report.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/sentiment_inputs.yaml"
repeats = 2
rounds = 1
concurrency = None
budget_usd = None
seed = 7
max_tokens = 24
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up
tags = None  # e.g. ["edge", "unanswerable"]: only inputs with these tags

# %%
exp = lab.experiment(prompt, inputs, model=model, repeats=repeats, seed=seed, concurrency=concurrency,
                     budget_usd=budget_usd, params={"max_tokens": max_tokens}, id=experiment_id, tags=tags)
runs = exp.run()
lab.grade(runs, lab.graders.default_grader())
lab.report.answer(lab.findings.from_log(exp.log, exp.id))

# %% [markdown]
# ## Where the way out was taken
#
# Correct, wrong, escaped and failed calls per variant and input tag, with 95% intervals over inputs.
# An escape on an `unanswerable` input is right; on an answerable one it is over-abstention. Answers
# are graded against the inputs' `expected` answers (the default grader: normalized match at the
# start of the output).

# %%
lab.plots.outcome_rates(runs.df, exp.log.grades(exp.id))

# %% [markdown]
# ## Every output, graded: inputs down, variants across (click a cell for the output and why)

# %%
lab.grid.results_grid(runs.df, exp.log.grades(exp.id))

# %% [markdown]
# ## How the way out was used
#
# Escapes on `unanswerable` inputs (right) against over-abstention on answerable ones (wrong), and
# coverage, per variant, with 95% intervals.

# %%
lab.tables.readable(lab.techniques.escape_report(runs.df))

# %% [markdown]
# ## The outs themselves: where did the model say it cannot tell?

# %%
lab.tables.readable(lab.tables.escaped(runs.df))

# %% [markdown]
# ## Calls, outcomes, latency and cost per variant

# %%
lab.tables.readable(runs.summary())
