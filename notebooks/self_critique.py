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
# # Self-critique: does reviewing its own answer help?
#
# The model answers a checkable word problem, critiques its answer against a rubric, then revises
# it; up to `rounds` times (a chain stops early when the critique finds nothing to fix). Every
# round's answer is graded by the prompt file's grader. Round 0 is the first answer. We learn
# whether revisions get more answers right, or whether the model talks itself out of right ones
# (small models often do).

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/arithmetic.yaml"
inputs = "prompts/arithmetic_inputs.yaml"
rubric = "The last line is 'ANSWER: <number>' and the number correctly solves the word problem."
repeats = 1
rounds = 2
concurrency = None
budget_usd = None
seed = 7
max_tokens = 64
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up

# %%
critique = lab.techniques.self_critique(prompt, inputs, rubric=rubric, rounds=rounds, model=model,
                                       repeats=repeats, seed=seed, params={"max_tokens": max_tokens},
                                       concurrency=concurrency, budget_usd=budget_usd, id=experiment_id)
lab.report.answer(critique)

# %% [markdown]
# ## Score by round, per variant (95% intervals over inputs)

# %%
lab.plots.critique_rounds(critique.runs, lab.log().grades(critique.experiment_id))

# %% [markdown]
# ## Pass rate by round, per variant, and what each revision did

# %%
lab.tables.readable(critique.by_round())

# %% [markdown]
# ## Each chain's answers across rounds: inputs down, rounds across (click a cell for the answer and why)

# %%
lab.grid.results_grid(critique.runs, lab.log().grades(critique.experiment_id), columns="round")
