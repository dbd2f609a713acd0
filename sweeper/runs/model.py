"""A trained cell's network as an MLflow model of its run (torch.export's pt2 format)."""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.pytorch
import torch
from mlflow.models import infer_signature

from sweeper.runs import tracking
from sweeper.vocab import Tag


def log_model(store: tracking.Store, run_id: str, model: Any, example: Any) -> str:
    """A torch model as an MLflow model of the run (torch.export's pt2: loads without sweeper's code); its URI."""
    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    mlflow.set_tracking_uri(store.uri)  # log_model resolves the store globally
    # Without a fluent active run MLflow would file the model under the Default experiment:
    # create it in the run's experiment and hand log_model its id and the run id.
    run = store.client.get_run(run_id)
    logged = store.client.create_logged_model(run.info.experiment_id, "model", run_id, params=run.data.params)
    # Explicit requirements skip MLflow's inference, which re-imports the model in a subprocess;
    # serving-input validation would reload the model just saved (a second per cell): the
    # signature comes from running this very model on the example.
    info = mlflow.pytorch.log_model(
        model,
        name="model",
        run_id=run_id,
        model_id=logged.model_id,
        signature=signature,
        input_example=example,
        serialization_format="pt2",
        validate_serving_input=False,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
    )
    tracking.set_tags(store, run_id, {Tag.MODEL_URI: info.model_uri})
    return info.model_uri
