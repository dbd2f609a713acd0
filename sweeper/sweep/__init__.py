"""Run a spec's cells as trials of one Optuna study per (spec, profile), on one worker or many.

`study.py` opens the study (storage, sampler, pruner), `ledger.py` reads cell states off its
trials, `loop.py` is the worker loop with its entry points (`worker`, `status`), `runner.py` trains
one claimed cell in its MLflow run; `launchers.py` is the launcher interface, `local.py` (with
`run`) and `slurm.py` its implementations, `workers.py` starts local worker processes. Only this
package imports optuna.
"""

from sweeper.sweep.ledger import Snapshot, SweepReport
from sweeper.sweep.local import run
from sweeper.sweep.loop import status, worker
from sweeper.sweep.study import MAX_RETRY, open_storage, open_sweep, storage_url, study_name

__all__ = [
    "MAX_RETRY",
    "Snapshot",
    "SweepReport",
    "open_storage",
    "open_sweep",
    "run",
    "status",
    "storage_url",
    "study_name",
    "worker",
]
