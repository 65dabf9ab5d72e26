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
# # Iterating on a prompt without fooling yourself
#
# The everyday loop is: edit a variant, run it on the same inputs, look, edit again. After a few
# edits, the version that looks best is partly the one that fit those inputs' noise, so its
# advantage over the baseline *on those inputs* is optimistic (the winner's curse; adaptive reuse
# of a test set, Dwork et al. 2015). We split the input set once into `dev` (where we iterate) and
# `held_out` (where we confirm the choice, once), try a few versions on dev, read the dev comparison
# with its selection caveat, and confirm the chosen version on the held-out inputs.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/sentiment.yaml"
inputs = "prompts/sentiment_iteration_inputs.yaml"
variant = "honest"  # the variant we edit
baseline = "persona"  # what each version is compared with
held_out = None  # rows held out (or a fraction); None: half the set
repeats = 3
seed = 7
max_tokens = 24
experiment_id = None  # set by `python -m lab run-notebook`: the confirmation's id

# %% [markdown]
# ## Split once, before the first edit
#
# Seeded and stratified by tag; the log keeps the split, so every later run (and every machine
# reading this log) sees the same one. From now on `lab.experiment`, the techniques and the
# workbench run on the dev part unless told otherwise, and say so.

# %%
split = lab.split_inputs(inputs, held_out=held_out, seed=0)
print(f"dev: {len(split.dev)} inputs, held out: {len(split.held_out)} inputs")

# %% [markdown]
# ## A few edits, each run against the baseline on dev
#
# Each edit is a new prompt version of `honest`, paired with `persona` on the same inputs, repeats and seeds.

# %%
edits = [
    "Label this review positive or negative. If it is not a review, answer UNSURE.\nReview: {{ text }}",
    "Is this review positive or negative? Answer with one word, or UNSURE if it is not a review.\n{{ text }}",
    "I reply to unhappy customers first. Review: \"{{ text }}\"\nAnswer positive, negative, or UNSURE:",
]
config = lab.config.RunConfig.of(model=model, repeats=repeats, seed=seed, params={"max_tokens": max_tokens})
tries = [lab.techniques.try_version(prompt, inputs, variant, baseline, user=text, config=config) for text in edits]

# %% [markdown]
# ## The dev comparison of the best version, with its selection caveat
#
# We pick the version whose appropriate-behaviour rate on dev is highest. Its findings carry the
# clause the log makes possible: how many versions were tried on these inputs, and what the
# comparison says once the search is allowed for.

# %%
scores = [t.findings().per_framing.loc[variant, "appropriate"] for t in tries]
best = tries[scores.index(max(scores))]
best.findings()

# %% [markdown]
# ## Confirm once, on the held-out inputs
#
# The chosen version and the baseline run on inputs that took no part in the choice. This is the
# result to report. The log records the use: a second confirmation on the same held-out inputs
# says how many choices they have been used for.

# %%
chosen = best.runs[best.runs["variant"] == variant]["prompt_version"].iloc[0]
confirmed = lab.confirm(prompt, inputs, candidate=chosen, baseline=baseline, id=experiment_id, config=config)
confirmed.findings()

# %% [markdown]
# ## Every version's dev score beside the confirmed result
#
# Dev rates (circles) are what we chose on; the held-out rates (diamonds) are the confirmed ones.
# A chosen version that falls back toward the baseline on held-out inputs was fitting dev's noise.

# %%
confirmed.figure("appropriate")
