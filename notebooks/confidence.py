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
# # Does the model know when it does not know?
#
# Factual questions, some with no true answer, run with `confidence=True`: the log keeps, per call,
# the model's probability for its answer and for the escape string. We read calibration (does 70%
# confidence mean right 70% of the time?), selective answering (abstain below a threshold, with the
# escape hatch as a point on the same axes) and confident hallucinations on unanswerable inputs.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/factual_parts.yaml"
inputs = "prompts/factual_parts_inputs.yaml"
repeats = 3
seed = 7
max_tokens = 12
concurrency = None
budget_usd = None
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up

# %%
report = lab.confidence(prompt, inputs, model=model, repeats=repeats, seed=seed, params={"max_tokens": max_tokens},
                        concurrency=concurrency, budget_usd=budget_usd, id=experiment_id)
lab.report.answer(report)

# %% [markdown]
# ## Reliability: stated confidence against observed correctness (answers per bin as labels)

# %%
report.reliability_figure()

# %% [markdown]
# ## Calibration per variant and tag: Brier score and ECE with 95% intervals over inputs

# %%
lab.tables.readable(report.calibration())

# %% [markdown]
# ## Where a confidence could be read

# %%
lab.tables.readable(report.availability())

# %% [markdown]
# ## Selective answering
#
# Each line abstains below a confidence threshold; the diamond is the declared escape hatch. A
# diamond above its variant's line abstains on better inputs than a threshold would.

# %%
report.selective_figure()

# %% [markdown]
# ## Confident hallucinations: answers given on unanswerable inputs, and how sure they were

# %%
lab.tables.readable(report.hallucinations())

# %% [markdown]
# ## The sampled outcome next to the probability of being right

# %%
lab.tables.readable(report.scores())
