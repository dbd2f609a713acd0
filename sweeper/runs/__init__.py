"""MLflow, and only here: the store, each cell's run and checkpoints, the fast read-only reader, the server.

`tracking.py` wraps MlflowClient, `cellrun.py` is one cell's run from start (or resume) to end,
`checkpoints.py` writes and reads checkpoint files, `process.py` says which process trains a run,
`system.py` samples its system metrics, `model.py` exports the trained network, `artifacts.py`
reads and writes text artifacts in place, `db.py` reads MLflow's tables without importing MLflow,
`server.py` runs `mlflow server`.
"""
