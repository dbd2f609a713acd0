"""Helpers several test modules share: specs, runs, ports and CIFAR-shaped files (fixtures live in conftest.py)."""

from __future__ import annotations

import copy
import html.parser
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from conftest import TINY_SPEC, free_port  # noqa: F401 - free_port: shared from here too
from mlflow import MlflowClient

from sweeper.schema.config import TrainConfig
from sweeper.schema.dotted import merge, unflatten
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


# A small network and training set for tests of the loop's pieces (seconds a run).
BASE = {
    "model": {"name": "plain_cnn", "stem": 8, "widths": [16, 32], "hidden": 32},
    "data": {"augment": "weak", "batch_size": 32, "val_size": 50, "train_size": 200, "test_size": 100},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "epochs": 2,
    "precision": "fp32",
}


def cfg(base: dict = BASE, **changes: object) -> TrainConfig:
    """A config from `base` with dotted changes."""
    return TrainConfig.model_validate(merge(base, unflatten(changes)))


def noise(n: int, seed: int = 0) -> torch.Tensor:
    """n random uint8 CIFAR-shaped images."""
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def running_trial_past(storage: object, epochs: int, timeout: float) -> object | None:
    """The first trial of study tiny/default that is RUNNING and has logged `epochs` epochs, polled for
    up to `timeout` seconds (None if none got there): a worker to signal or kill mid-cell."""
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="tiny/default", storage=storage)
        except KeyError:
            continue
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        found = next((t for t in running if t.user_attrs.get("sweeper.epoch", 0) >= epochs), None)
        if found is not None:
            return found
    return None


class TableText(html.parser.HTMLParser):
    """Each <tr>'s cells as their visible text (<br> as a newline)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    @classmethod
    def of(cls, page: str) -> list[list[str]]:
        parser = cls()
        parser.feed(page)
        return parser.rows

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
