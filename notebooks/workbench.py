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
# # Workbench
#
# Try one prompt on one input, then look harder: **Retry** draws another sample of the same call
# (all samples stay side by side with their frequencies: one sample is noise), **Reset** starts a
# clean context, the follow-up box asks again in the same thread, **Self-critique** lets the model
# review and revise its answer. Edit the template in place to make a new version (the old one stays
# in the version list). Outputs are shown as text, never as live HTML. Every call is logged.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/sentiment_inputs.yaml"
max_tokens = 48
experiment_id = None  # None: workbench-<time>-<hex>

# %%
wb = lab.workbench(prompt, inputs, model=model, params={"max_tokens": max_tokens}, experiment_id=experiment_id)
wb

# %% [markdown]
# ## What you have tried so far
#
# The outcome of every call made from the workbench above, read back from the run log, with the
# number of calls on each bar (two calls are not a rate). The workbench's own "what you have tried
# so far" panel redraws it after each call; this cell draws it once. Until a blind round is
# revealed, the variant names are hidden here too.

# %%
wb.tried_so_far()
