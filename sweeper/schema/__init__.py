"""The YAML spec and what it resolves to, as strict pydantic models; no torch, so `sweeper validate` is instant.

`config.py` is one cell's TrainConfig, `search.py` the Optuna search space, `spec.py` the spec file
(base, rows or grid or search, table, profiles), its loading with file:line errors, and its cells.
"""
