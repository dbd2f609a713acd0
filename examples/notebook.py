# %% [markdown]
# # sweeper from a notebook
#
# A percent-format script: VS Code, PyCharm and Jupytext open each `# %%` block as a cell
# (`jupytext --to ipynb examples/notebook.py` makes a .ipynb of it). Run from anywhere inside the
# project, e.g. a `notebooks/` folder: the store is found from the spec's project, not the working
# directory, and the first call prints which one it found.
#
# SWEEPER_EXAMPLE_SPEC and SWEEPER_EXAMPLE_PROFILE choose another spec (the test suite runs this
# file on a tiny synthetic spec).

# %%
import os
from pathlib import Path

import sweeper

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
spec = Path(os.environ.get("SWEEPER_EXAMPLE_SPEC", here.parent / "experiments" / "activations.yaml"))
profile = os.environ.get("SWEEPER_EXAMPLE_PROFILE", "quick")

# %% [markdown]
# Train what is not finished yet (a finished cell is never trained again, so re-running this cell
# after a crash resumes the sweep).

# %%
report = sweeper.run(spec, profile=profile, device="auto")
print(f"finished {len(report.finished)}, failed {len(report.failed)}, pruned {len(report.pruned)}")

# %% [markdown]
# The table as data: one row per spec row; per metric its mean, std and n over seeds, the values
# of each seed, the report's value and our delta to it, Welch's p against the best row, and
# whether the row ties with the best. Numbers are in logged units (0.93, not 93 %).

# %%
results = sweeper.table(spec, profile=profile)
frame = results.to_pandas()
metric = results.data.metrics[0].key
print(frame[[f"{metric}.mean", f"{metric}.std", f"{metric}.n", f"{metric}.values", f"{metric}.best"]])

# %% [markdown]
# Every cell run as a DataFrame (params, last metrics, tags and state), e.g. to plot accuracy
# against a param or to find a run id to open in the MLflow UI.

# %%
runs = sweeper.cell_runs(spec, profile=profile)
print(runs[["label", "seed", "state", f"metrics.{metric}"]].sort_values(f"metrics.{metric}", ascending=False))
