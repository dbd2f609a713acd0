"""sweeper: one YAML spec per ablation table -> MLflow runs -> the report table."""

import os as _os

# cuBLAS reads its workspace setting once, when CUDA starts: a worker whose first cell is not
# deterministic and a later one is would fail on that cell's first matmul without it. Set when
# sweeper is imported, before any of it starts CUDA (a small fixed workspace, nothing measurable).
_os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
