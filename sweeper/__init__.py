"""sweeper: one YAML spec per ablation table -> MLflow runs -> the report table."""

import os as _os

# cuBLAS reads its workspace setting once, when CUDA starts: a worker whose first cell is not
# deterministic and a later one is would fail on that cell's first matmul without it. Set when
# sweeper is imported, before any of it starts CUDA (a small fixed workspace, nothing measurable).
_os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# The notebook API (sweeper/api.py), loaded on first use: `import sweeper` and `sweeper validate` stay torch-free.
__all__ = ["Results", "cell_runs", "find_store", "project_root", "run", "table"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from sweeper import api

        return getattr(api, name)
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
