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
# # One sample is noise: retry spread
#
# Each input is answered several times in fresh contexts with different seeds. When a model knows
# something, its answers agree across samples; when it guesses, they scatter. We learn which inputs
# are stable, which are coin flips, and how many distinct answers each produced.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/sentiment_inputs.yaml"
repeats = 5
rounds = 1
concurrency = None
budget_usd = None
seed = 7
max_tokens = 24
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up
temperature = 0.7

# %%
exp = lab.experiment(prompt, inputs, model=model, repeats=repeats, seed=seed, concurrency=concurrency,
                     budget_usd=budget_usd, params={"max_tokens": max_tokens, "temperature": temperature}, id=experiment_id)
runs = exp.run()
lab.grade(runs, lab.graders.default_grader())
lab.report.answer(lab.findings.from_log(exp.log, exp.id))

# %% [markdown]
# ## Agreement across samples per input (the label is the number of distinct answers)

# %%
lab.plots.retry_spread(runs.df)

# %% [markdown]
# ## Every sample, graded: inputs down, variants across (one chip per sample; click for the output)

# %%
lab.grid.results_grid(runs.df, exp.log.grades(exp.id))

# %% [markdown]
# ## The answers per input: distinct answers, the majority, agreement
#
# Answers are graded against the inputs' `expected` answers (the default grader: normalized match
# at the start of the output); the findings above give per framing rates with 95% intervals over
# inputs and n = inputs x repeats.

# %%
lab.tables.readable(lab.techniques.spread(runs.df)[["samples", "distinct", "majority", "agreement", "answers"]])

# %% [markdown]
# ## Calls, outcomes, latency and cost per variant

# %%
lab.tables.readable(runs.summary())
