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
# # Which part of the honest context does the work?
#
# The honest variant of `prompts/factual_parts.yaml` is written in named parts (who is asking, why,
# what a good answer looks like, vocabulary, the way out, the question). `lab.ablate` leaves each part
# out in turn, and adds each to the persona, on the same inputs, repeats and seeds as the full
# variant. We learn which parts change the correct-answer, escape and over-abstention rates beyond
# the noise. The plan and its cost are printed before any call.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
model = "local:smollm2"
prompt = "prompts/factual_parts.yaml"
inputs = "prompts/factual_parts_inputs.yaml"
variant = "honest"
base = "persona"  # None: no add-one-part variants
repeats = 2
seed = 7
max_tokens = 12
concurrency = None
budget_usd = None
experiment_id = None  # set by `python -m lab run-notebook`; None makes one up

# %%
ablation = lab.ablate(prompt, inputs, variant=variant, base=base, model=model, repeats=repeats, seed=seed,
                      params={"max_tokens": max_tokens}, concurrency=concurrency, budget_usd=budget_usd,
                      id=experiment_id)
lab.report.answer(ablation)

# %% [markdown]
# ## Effect of removing each part
#
# One row per part: the paired change in the correct-answer rate when it is left out, with its 95%
# interval over inputs. Red points are beyond the noise; an interval across zero is not a finding.

# %%
ablation.figure()

# %% [markdown]
# ## Detail
#
# Everything below backs the summary above: the same effects on the appropriate-escape rate, the
# numbers per part, measure and input tag, the parts added to the persona, and the outputs that
# changed.

# %%
ablation.figure("appropriate_escape")

# %% [markdown]
# ## The numbers, per part, measure and input tag (from `lab.stats.paired_difference`)
#
# A change is beyond the noise only where its interval excludes 0.

# %%
detail = ["part", "measure", "tag", "pairs", "rate_full", "rate_changed", "change", "low", "high"]
lab.tables.readable(ablation.effects()[detail])

# %% [markdown]
# ## A part added to the persona: does persona + one part do as well?

# %%
lab.tables.readable(ablation.effects(added=True)[["rate_base" if c == "rate_full" else c for c in detail]]) if base else None

# %% [markdown]
# ## Outputs that changed when the way out was removed

# %%
lab.tables.readable(ablation.changed("way_out"))
