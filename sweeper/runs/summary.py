"""The sweep's parent run as its summary page in the MLflow UI: Description, metrics, parameters.

tables/summary.py decides what the page says (the table, its numbers, the spec's common settings);
here they are written, in as few requests as MLflow allows. The experiment is marked as model
training and described by the spec's title and source, so the UI opens on its runs, not on traces.
"""

from __future__ import annotations

import time

from mlflow.entities import Metric, Param, RunTag

from sweeper.runs.tracking import Store
from sweeper.vocab import MODEL_TRAINING, Tag

# MLflow's limits (mlflow.utils.validation): a run tag's value, a parameter's value, entries per request.
MAX_TAG = 8000
MAX_PARAM = 6000
PARAMS_PER_BATCH = 100


def write(
    store: Store,
    run_id: str,
    description: str,
    metrics: dict[str, float],
    params: dict[str, str],
    experiment: str,
    tags: dict[str, str] | None = None,
) -> None:
    """Write the parent run's Description (and other tags), metrics (step 0, newest wins) and new parameters,
    and describe its experiment. Parameters cannot change in MLflow: a setting already logged keeps its first value."""
    run = store.client.get_run(run_id)
    client, now = store.client, int(time.time() * 1000)
    client.set_experiment_tag(run.info.experiment_id, Tag.EXPERIMENT_KIND, MODEL_TRAINING)
    client.set_experiment_tag(run.info.experiment_id, Tag.NOTE, experiment)
    values = [Metric(k, v, now, 0) for k, v in metrics.items() if v == v]
    notes = [RunTag(Tag.NOTE, description[:MAX_TAG]), *(RunTag(k, v[:MAX_TAG]) for k, v in (tags or {}).items())]
    client.log_batch(run_id, metrics=values, tags=notes)
    new = [Param(k, v[:MAX_PARAM]) for k, v in params.items() if k not in run.data.params]
    for start in range(0, len(new), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=new[start : start + PARAMS_PER_BATCH])
