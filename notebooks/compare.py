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
# # Compare experiments from the log
#
# Everything here is drawn from the run log, so it can be re-drawn exactly as it was (`as_of`).
# Pick experiments (default: the latest), then read outcomes per variant and tag, cost, and the
# outputs in a results grid. The interactive view at the end does the same with widgets. With
# `blind=True` the report names the variants A, B, ... (`-p blind True`), for readers who should judge
# the outputs before they know which framing wrote them.

# %%
import lab

root = lab.notebooks.project_root(chdir=True)  # paths below are relative to the project root

# %% tags=["parameters"]
experiments = None  # a list of experiment ids; None: the latest one in the log
as_of = None  # a log version (int) or a UTC timestamp: redraw the log as it was then
blind = False  # True: a blind report, variants named A, B, ... (the order shuffled by the experiment)

# %%
log = lab.log()
chosen = experiments or list(log.experiments()["id"].tail(1))
runs = log.runs(experiment=chosen, as_of=as_of)
names = lab.widgets.blind_names(runs) if blind else {}  # variant -> "variant A", ...
runs = lab.widgets.blinded(runs, names) if blind else runs
grades = log.grades(as_of=as_of)
lab.widgets.findings_block(runs, grades)

# %% [markdown]
# ## Per variant: calls, outcomes, latency and cost

# %%
lab.tables.readable(log.summary(chosen, as_of=as_of).rename(index=names, level="variant"))

# %% [markdown]
# ## Outcomes per variant and input tag

# %%
lab.plots.outcome_rates(runs, grades)

# %% [markdown]
# ## Score by prompt version: did the edits help?

# %%
lab.plots.score_by_version(runs, grades)

# %% [markdown]
# ## Latency, tokens and cost

# %%
lab.plots.cost_latency(runs)

# %% [markdown]
# ## Every output, graded: inputs down, variants across
#
# Click a cell for the whole output, its grade and why; filter to failures, disagreements or a tag.

# %%
lab.grid.results_grid(runs, grades)

# %% [markdown]
# ## Interactive: choose experiments, variants and tags

# %%
None if blind else lab.compare_view(experiments=chosen)
