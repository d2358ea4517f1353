# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: the explorer in three cells
#
# Pick a material, a model and a temperature in the **LiFlow** tab, press **Run**, and
# watch the trajectory, the mean squared displacement (MSD), the radial distribution
# function (RDF) and the Li potential of mean force build up as frames arrive. Where
# the repository bundles reference molecular dynamics for the material and
# temperature, it is drawn dashed next to the model.
#
# The model list holds the bundled LiFlow checkpoints (`make train` builds them),
# one per training material plus a multi-material one, each with a one-line summary
# of its model card; the explorer picks the one trained on the chosen material.

# %%
from widgets import Explorer

# %%
explorer = Explorer()
explorer

# %% [markdown]
# The explorer is also a Python object: every control can be set from code. The
# cell below runs a short rollout without touching the mouse (this is also how the
# notebook is checked in CI; set `QUICK = False` for a longer run).

# %%
import os

QUICK = os.environ.get("QUICK", "1") == "1"
tab = explorer.liflow
tab.n_steps.value = 5 if QUICK else 50
tab.flow_steps.value = 2 if QUICK else 10
tab.run_button.click()
assert tab.wait(timeout=300), "the rollout did not finish"
print(tab.progress_info.value)
print(tab.summary.value)
assert tab.rollout.status == "done", tab.message.value
assert tab.rollout.n_frames == tab.n_steps.value + 1
