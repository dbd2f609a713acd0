"""Helpers several test modules share: specs, runs, ports and CIFAR-shaped files (fixtures live in conftest.py)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
from conftest import TINY_SPEC, free_port  # noqa: F401 - free_port: shared from here too
from mlflow import MlflowClient

from sweeper.training.splits import CLASSES

SMALL_DATA = {
    "augment": "none",
    "batch_size": 32,
    "eval_batch_size": 100,
    "val_size": 50,
    "train_size": 200,
    "test_size": 100,
}


def grid_spec(epochs: int = 1, **grid) -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec.pop("rows")
    spec["base"] = {**spec["base"], "epochs": epochs, "data": SMALL_DATA}
    spec["grid"] = grid or {"activation": ["relu", "gelu", "elu"], "optimizer.lr": [1e-3, 3e-3]}
    return spec


def cell_runs(store_uri: str) -> list:
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "cell"]


def write_batches(folder: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    """torchvision's cifar-10-batches-py layout: pickled dicts of 'data' [N,3072] and 'labels'."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        (folder / name).write_bytes(pickle.dumps({"data": batch, "labels": labels, "batch_label": name}))
        written[name] = (batch, labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}))
    return written
