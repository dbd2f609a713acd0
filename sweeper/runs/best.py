"""A search's answer on its parent run: the best value as metrics, the best parameters as params.

Names are `best.value`, `best.trial` (and `best.<metric>` per objective) and `best.<param>`, apart
from the table's own summary metrics. MLflow params are write-once: when a later, better trial
changes a parameter, the param keeps the first best and the `best.<param>` tag (always current) and
the metrics carry the new one.
"""

from __future__ import annotations

import time

from mlflow.entities import Metric, Param, RunTag

from sweeper.runs.tracking import Store
from sweeper.vocab import Tag, profile_tag

PREFIX = "best."


def parent_run(store: Store, exp_id: str, profile: str | None) -> str | None:
    """The sweep's parent run of a profile, None before any ran."""
    from sweeper.runs.tracking import sweep_runs

    found = [r for r in sweep_runs(store, exp_id) if r.data.tags.get(Tag.PROFILE) == profile_tag(profile)]
    return found[0].info.run_id if found else None


def log_best(store: Store, run_id: str, values: dict[str, float], params: dict[str, object]) -> None:
    """Metrics best.<name> of `values`, params and tags best.<param> of `params`, on the parent run."""
    now = int(time.time() * 1000)
    logged = store.client.get_run(run_id).data.params
    new = {PREFIX + k: str(v) for k, v in params.items() if PREFIX + k not in logged}
    store.client.log_batch(
        run_id,
        metrics=[Metric(PREFIX + k, float(v), now, 0) for k, v in values.items()],
        params=[Param(k, v) for k, v in new.items()],
        tags=[RunTag(PREFIX + k, str(v)) for k, v in params.items()],
    )
